"""milterkit: a pure-Python, signal-driven toolkit for writing milters.

The milter is the *client* of the MTA (milter-manager's naming): :class:`ClientContext` is one
MTA connection on the milter side; the MTA side, used by the test tools, is
:class:`milterkit.testing.ServerContext`.
"""

from typing import TYPE_CHECKING, Any

from .context import (
    SIGNAL_NAMES,
    ActionError,
    ClientContext,
    MilterError,
    StateError,
    StatusError,
)
from .macros import MacrosRequests, MacroTable
from .protocol import ActionFlag, MacroStage, Option, ProtocolError, ProtocolFlag, SocketAddress
from .reply import ReplyError, format_reply
from .responses import Queued, Reply
from .result import MessageResult
from .signals import SignalTable
from .status import State, Status

__version__ = "0.1.0"

DEFAULT = Status.DEFAULT
NOT_CHANGE = Status.NOT_CHANGE
CONTINUE = Status.CONTINUE
REJECT = Status.REJECT
DISCARD = Status.DISCARD
ACCEPT = Status.ACCEPT
TEMPORARY_FAILURE = Status.TEMPORARY_FAILURE
TEMPFAIL = Status.TEMPORARY_FAILURE
NO_REPLY = Status.NO_REPLY
SKIP = Status.SKIP
ALL_OPTIONS = Status.ALL_OPTIONS
PROGRESS = Status.PROGRESS

__all__ = [
    "ACCEPT", "ALL_OPTIONS", "CONTINUE", "DEFAULT", "DISCARD", "NOT_CHANGE", "NO_REPLY",
    "PROGRESS", "REJECT", "SKIP", "TEMPFAIL", "TEMPORARY_FAILURE", "SIGNAL_NAMES", "ActionError",
    "ActionFlag", "ClientContext", "MacroStage", "MacroTable", "MacrosRequests", "MessageResult",
    "MilterError", "Option", "ProtocolError", "ProtocolFlag", "Queued", "Reply", "ReplyError",
    "SignalTable",
    "SocketAddress", "State", "StateError", "Status", "StatusError", "__version__",
    "format_reply",
]

if TYPE_CHECKING:
    from .server.client import Client as Client


def __getattr__(name: str) -> Any:
    # The asyncio runtime loads on first use: ``import milterkit`` must not import asyncio.
    if name == "Client":
        from .server.client import Client

        return Client
    raise AttributeError(f"module 'milterkit' has no attribute {name!r}")
