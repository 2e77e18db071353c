"""A milter manager: external child milters and in-process Python filters as one milter.

- :class:`Manager`: per MTA connection, one connection to each child milter
  (:class:`ChildSpec`), negotiated with the MTA's offer; the children and the filters are
  members of one :class:`~milterkit.compose.Composer`, whose rules combine them;
- :mod:`~milterkit.manager.link`: one child on one connection (bounded, logged connection
  attempts; failures close it and its fallback answers);
- :mod:`~milterkit.manager.process`: auto-start of a child's command;
- :mod:`~milterkit.manager.config`: the ``[[milter]]`` tables of the configuration file.

See ``docs/manager.rst``.
"""

from .child import ChildHealth as ChildHealth
from .child import ChildMilter
from .config import parse_milters
from .link import ChildFailure as ChildFailure
from .link import ChildLink as ChildLink
from .manager import ManagedConnection as ManagedConnection
from .manager import Manager
from .process import ChildProcess as ChildProcess
from .process import ChildStartError
from .spec import (
    DEFAULT_CONNECT_ATTEMPTS,
    DEFAULT_CONNECT_TIMEOUT,
    DEFAULT_RECONNECT_DELAY,
    ChildSpec,
)

__all__ = [
    "DEFAULT_CONNECT_ATTEMPTS", "DEFAULT_CONNECT_TIMEOUT", "DEFAULT_RECONNECT_DELAY",
    "ChildMilter", "ChildSpec", "ChildStartError", "Manager", "parse_milters",
]
