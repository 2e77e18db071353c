"""A composed filter's view of one connection: :class:`FilterView`.

Every filter's handlers get their own view as ``context``. It offers the
:class:`~milterkit.ClientContext` API (macros, ``hostname``, ``message_result``, ``progress``...
are the connection's), but what is the filter's own stays its own: the reply text it sets,
``private``, ``shelf``, ``connection_data``, per-connection handlers, and the message changes it
asks for at end-of-message. Those changes are recorded, checked at the call (stage and
negotiated action, as the context checks them), and applied by the composer in filter order
once every filter has answered end-of-message (or only logged, in evaluation mode).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

from ..context import SIGNAL_NAMES, ClientContext
from ..errors import ActionError, StateError
from ..macros import MacrosRequests
from ..protocol.constants import ActionFlag, MacroStage
from ..reply import format_reply
from ..signals import SignalTable
from ..status import Status

if TYPE_CHECKING:
    from .host import FilterHost

F = TypeVar("F", bound=Callable[..., Any])


@dataclass(frozen=True)
class Change:
    """One message change a filter asked for: the ClientContext method and its arguments."""

    action: str
    args: tuple[Any, ...]

    def __str__(self) -> str:
        return f"{self.action}({', '.join(repr(arg) for arg in self.args)})"


class FilterView:
    """What one composed filter sees as ``context`` on one connection."""

    def __init__(self, context: ClientContext, host: FilterHost) -> None:
        self._context = context
        #: The filter's name.
        self.filter_name = host.name
        #: The filter's options (declared defaults updated with the configured values).
        self.options = host.options
        #: The filter's handlers for this connection (its setup's handlers are the parent's).
        self.signals = SignalTable(SIGNAL_NAMES, parent=host.signals)
        #: Per-connection storage of this filter, cleared when a new SMTP client starts.
        self.connection_data: dict[str, Any] = {}
        #: Macros this filter asked for with :meth:`request_macros`.
        self.requested_macros = MacrosRequests()
        #: The changes this filter asked for in the current end-of-message, in call order.
        self.changes: list[Change] = []
        #: Changes the filters before this one asked for in the current end-of-message
        #: (filter name, change); they are applied before this filter's.
        self.earlier_changes: tuple[tuple[str, Change], ...] = ()
        self._reply: str | None = None
        self._reply_args: tuple[Any, ...] | None = None
        self._private: Any = None
        self._shelf: dict[str, Any] = {}
        # Set by the composer while this filter owes an answer it gave PROGRESS for.
        self._responder: Callable[[str | None, Status | None], None] | None = None

    def __repr__(self) -> str:
        return f"<FilterView {self.filter_name!r} of connection {self._context.tag}>"

    @property
    def context(self) -> ClientContext:
        """The connection's real context (shared by every filter: read, don't answer)."""
        return self._context

    def __getattr__(self, name: str) -> Any:
        context = self.__dict__.get("_context")
        if name.startswith("__") or context is None:
            raise AttributeError(name)
        return getattr(context, name)

    def __getitem__(self, name: str) -> str | None:
        return self._context.get_macro(name)

    # -------------------------------------------------------------- handlers

    def connect(self, name: str, handler: F, *, weak: bool = False) -> F:
        """Connect a handler for this filter on this connection only."""
        return self.signals.connect(name, handler, weak=weak)

    def disconnect(self, name: str, handler: Callable[..., Any]) -> None:
        """Disconnect a handler connected with :meth:`connect`."""
        self.signals.disconnect(name, handler)

    def on(self, name: str) -> Callable[[F], F]:
        """Decorator form of :meth:`connect`."""
        return lambda handler: self.connect(name, handler)

    def respond(self, stage: str | None, status: Status | None = None) -> None:
        """Give the answer this filter owes after returning PROGRESS (for this filter only)."""
        responder = self._responder
        if responder is None:
            raise StateError(f"filter {self.filter_name!r} owes no answer for {stage!r}")
        responder(stage, status)

    def emit(self, name: str, *args: Any) -> Status | None:
        """``emit("<stage>-response", status)`` is :meth:`respond`; other signals are the
        connection's."""
        if name.endswith("-response"):
            (status,) = args
            self.respond(name[: -len("-response")], status)
            return None
        return self._context.emit(name, *args)

    def request_macros(self, stage: MacroStage | int | str, *names: str) -> None:
        """Ask for macros (merged with the other filters' requests at negotiation)."""
        if self._context.negotiation is not None:
            raise StateError("macros can only be requested before negotiation is answered")
        self.requested_macros.set_symbols(stage, *names)

    # -------------------------------------------------------------- per-filter state

    def _begin_stage(self) -> None:
        self._reply = None
        self._reply_args = None

    def _end_message(self) -> None:
        self._private = None
        self._shelf.clear()
        self.changes.clear()
        self.earlier_changes = ()

    @property
    def private(self) -> Any:
        """This filter's data for the current transaction."""
        return self._private

    @private.setter
    def private(self, value: Any) -> None:
        self._private = value

    def set_private(self, value: Any) -> None:
        """pymilter's ``setpriv``, for this filter and transaction."""
        self._private = value

    def get_private(self) -> Any:
        """pymilter's ``getpriv``."""
        return self._private

    @property
    def shelf(self) -> dict[str, Any]:
        """This filter's mail-transaction shelf."""
        return self._shelf

    # -------------------------------------------------------------- replies

    def set_reply(
        self, code: str | int, xcode: str | None = None, text: str | Sequence[str] | None = None
    ) -> str:
        """Set this filter's SMTP reply for its next REJECT or TEMPORARY_FAILURE; it reaches
        the MTA when this filter's status is the one that decides."""
        reply = format_reply(code, xcode, text)
        self._reply = reply
        self._reply_args = (code, xcode, text)
        return reply

    @property
    def reply(self) -> str | None:
        """The reply text this filter set for the current stage."""
        return self._reply

    def reject(
        self, code: str | int = "550", xcode: str | None = "5.7.1",
        text: str | Sequence[str] | None = "Command rejected",
    ) -> Status:
        """Set a 5xx reply and return REJECT."""
        self.set_reply(code, xcode, text)
        return Status.REJECT

    def temporary_failure(
        self, code: str | int = "451", xcode: str | None = "4.7.1",
        text: str | Sequence[str] | None = "Service unavailable - try again later",
    ) -> Status:
        """Set a 4xx reply and return TEMPORARY_FAILURE."""
        self.set_reply(code, xcode, text)
        return Status.TEMPORARY_FAILURE

    # -------------------------------------------------------------- changes

    def _record(self, action: str, flag: ActionFlag, *args: Any) -> None:
        if self._context.pending != "end-of-message":
            raise ActionError(
                f"{action} can only be done at end-of-message, not in state "
                f"{self._context.state.nick!r}"
            )
        option = self._context.option
        if option is None or not option.actions & flag:
            raise ActionError(f"{action} needs the {flag.name} action, which was not negotiated")
        self.changes.append(Change(action, args))

    def add_header(self, name: str, value: str) -> None:
        """Append a header."""
        _check_header(name, value)
        self._record("add_header", ActionFlag.ADD_HEADERS, name, value)

    def insert_header(self, index: int, name: str, value: str) -> None:
        """Insert a header at ``index`` (0 = topmost)."""
        _check_header(name, value)
        self._record("insert_header", ActionFlag.ADD_HEADERS, index, name, value)

    def change_header(self, name: str, index: int, value: str | None) -> None:
        """Change the ``index``-th header called ``name``; None or "" deletes it."""
        _check_header(name, value or "")
        self._record("change_header", ActionFlag.CHANGE_HEADERS, name, index, value)

    def delete_header(self, name: str, index: int = 1) -> None:
        """Delete the ``index``-th header called ``name``."""
        _check_header(name, "")
        self._record("delete_header", ActionFlag.CHANGE_HEADERS, name, index)

    def change_from(self, sender: str, parameters: str | Iterable[str] | None = None) -> None:
        """Replace the envelope sender."""
        _check_address("change_from", sender)
        params = parameters if parameters is None or isinstance(parameters, str) \
            else tuple(parameters)
        self._record("change_from", ActionFlag.CHANGE_FROM, sender, params)

    def add_recipient(self, recipient: str, parameters: str | Iterable[str] | None = None) -> None:
        """Add an envelope recipient."""
        _check_address("add_recipient", recipient)
        params = parameters if parameters is None or isinstance(parameters, str) \
            else tuple(parameters)
        flag = ActionFlag.ADD_RECIPIENT_WITH_PARAMETERS if params else ActionFlag.ADD_RECIPIENT
        self._record("add_recipient", flag, recipient, params)

    def delete_recipient(self, recipient: str) -> None:
        """Remove an envelope recipient."""
        _check_address("delete_recipient", recipient)
        self._record("delete_recipient", ActionFlag.DELETE_RECIPIENT, recipient)

    def replace_body(self, body: bytes) -> None:
        """Replace the body (successive calls append)."""
        if not isinstance(body, (bytes, bytearray, memoryview)):
            raise TypeError(f"replace_body takes bytes, not {type(body).__name__}")
        self._record("replace_body", ActionFlag.CHANGE_BODY, bytes(body))

    def quarantine(self, reason: str) -> None:
        """Put the message on hold with ``reason``."""
        if not reason or any(c in reason for c in "\0\r\n"):
            raise ValueError(f"quarantine reason must be one non-empty line, not {reason!r}")
        self._record("quarantine", ActionFlag.QUARANTINE, reason)


def _check_header(name: str, value: str) -> None:
    if not isinstance(name, str) or not isinstance(value, str):
        raise TypeError("header name and value must be str")
    if not name or any(c == ":" or ord(c) <= 32 or ord(c) == 127 for c in name):
        raise ValueError(f"header name {name!r} is empty or contains ':', a space or a control")
    if "\0" in value or "\r" in value:
        raise ValueError(f"header value {value!r} contains NUL or CR")


def _check_address(action: str, address: str) -> None:
    if not isinstance(address, str) or not address or any(c in address for c in "\0\r\n"):
        raise ValueError(f"{action} needs a non-empty one-line address, not {address!r}")
