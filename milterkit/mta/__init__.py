"""The MTA's side of the milter protocol over real sockets, for production use.

The milter manager (:mod:`milterkit.manager`) talks to its child milters through it; the test
tools (:mod:`milterkit.testing`) build their MTA simulator on the same pieces.

- :func:`~milterkit.mta.opening.open_spec`: connect to a connection spec;
- :class:`~milterkit.mta.channel.MilterChannel`: one milter connection: negotiate, send each
  command as the negotiation says, read its answer (:class:`~milterkit.mta.channel.Answer`)
  within a timeout.
"""

from .channel import MTA as MTA
from .channel import Answer, MilterChannel, MTAError, ReplyTimeoutError
from .channel import Outcome as Outcome
from .channel import braced as braced
from .opening import READ_SIZE as READ_SIZE
from .opening import open_spec

__all__ = ["Answer", "MTAError", "MilterChannel", "ReplyTimeoutError", "open_spec"]
