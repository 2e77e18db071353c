"""milterkit: a pure-Python, signal-driven toolkit for writing milters.

The milter is the *client* of the MTA (milter-manager's naming): :class:`ClientContext` is one
MTA connection on the milter side; the MTA side, used by the test tools, is
:class:`milterkit.testing.ServerContext`.
"""

from typing import TYPE_CHECKING, Any

from .blocking import blocking, on_loop
from .context import SIGNAL_NAMES, ClientContext
from .errors import (
    ActionError,
    InvalidValue,
    LocalError,
    MilterError,
    MilterkitError,
    NegotiationError,
    RemoteProtocolError,
    ReplyError,
    SignalError,
    StateError,
    StatusError,
)
from .macros import MacrosRequests, MacroTable
from .protocol import ActionFlag, MacroStage, Option, ProtocolError, ProtocolFlag, SocketAddress
from .reply import format_reply
from .responses import Queued, Reply
from .result import MessageResult
from .signals import SignalTable
from .status import State, Status
from .transaction import Transaction

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
    "ACCEPT", "ALL_OPTIONS", "ActionError", "ActionFlag", "CONTINUE", "ClientContext", "DEFAULT",
    "DISCARD", "InvalidValue", "LocalError", "MacroStage", "MacroTable", "MacrosRequests",
    "MessageResult", "MilterError", "MilterkitError", "NOT_CHANGE", "NO_REPLY", "NegotiationError",
    "Option", "PROGRESS", "ProtocolError", "ProtocolFlag", "Queued", "REJECT",
    "RemoteProtocolError", "Reply", "ReplyError", "SIGNAL_NAMES", "SKIP", "SignalError",
    "SignalTable", "SocketAddress", "State", "StateError", "Status", "StatusError", "TEMPFAIL",
    "TEMPORARY_FAILURE", "Transaction", "__version__", "blocking", "format_reply", "on_loop",
]

if TYPE_CHECKING:
    from .server.client import Client as Client


def __getattr__(name: str) -> Any:
    # The asyncio runtime loads on first use: ``import milterkit`` must not import asyncio.
    if name == "Client":
        from .server.client import Client

        return Client
    raise AttributeError(f"module 'milterkit' has no attribute {name!r}")
