"""The MTA's side of the milter protocol over real sockets, for production use.

The milter manager (:mod:`milterkit.manager`) talks to its child milters through it; the test
tools (:mod:`milterkit.testing`) build their MTA simulator on the same pieces.

- :func:`~milterkit.mta.opening.open_spec`: connect to a connection spec;
- :class:`~milterkit.mta.channel.MilterChannel`: one milter connection: negotiate, send each
  command as the negotiation says, read its answer (:class:`~milterkit.mta.channel.Answer`)
  within a timeout.
"""

from .channel import (
    MTA,
    Answer,
    MilterChannel,
    MTAError,
    Outcome,
    ReplyTimeoutError,
    braced,
)
from .opening import READ_SIZE, open_spec

__all__ = [
    "MTA", "READ_SIZE", "Answer", "MTAError", "MilterChannel", "Outcome", "ReplyTimeoutError",
    "braced", "open_spec",
]
