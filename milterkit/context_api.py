"""The methods a handler calls on its context: macros, data, replies and actions.

:class:`ContextAPI` is the part of :class:`~milterkit.ClientContext` a filter uses: milter-manager's
and pymilter's names for macros, per-connection and per-message data, the SMTP reply, keep-alives
and the end-of-message actions. The actions and the message's data delegate to the current
:class:`~milterkit.transaction.Transaction`; nothing here reads the wire.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Any

from .errors import StateError
from .macros import MacrosRequests, MacroTable
from .protocol import commands as cmd
from .protocol.constants import ActionFlag, MacroStage
from .protocol.negotiation import Negotiation, Option, effective_offer
from .protocol.replies import PROGRESS_PACKET
from .reply import format_reply
from .result import MessageResult
from .stages import ABORT, NEGOTIATE, Stage
from .status import Status
from .transaction import Transaction

S = Status


class ContextAPI:
    """Macros, data, replies and actions of a context (a mixin of ClientContext)."""

    # Provided by ClientContext and its Emitter.
    macros: MacroTable
    macros_requests: MacrosRequests
    negotiation: Negotiation | None
    offer: cmd.Negotiate | None
    _write: Callable[[bytes], object]
    _private: Any
    _transaction: Transaction
    _transaction_open: bool
    _last_result: MessageResult | None
    _option_override: Option | None
    _pending: Stage | None
    _reply: str | None
    _silent: frozenset[str]

    # ------------------------------------------------------------------ macros and data

    def get_macro(self, name: str, default: str | None = None) -> str | None:
        """A macro's value by ``name`` or ``{name}``; later stages shadow earlier ones."""
        return self.macros.get(name, default)

    def __getitem__(self, name: str) -> str | None:
        return self.macros.get(name)

    def request_macros(self, stage: MacroStage | int | str, *names: str) -> None:
        """Ask the MTA to send ``names`` at ``stage`` (before negotiation, or in its handler)."""
        if self.negotiation is not None:
            raise StateError("macros can only be requested before negotiation is answered")
        self.macros_requests.set_symbols(stage, *names)

    @property
    def private(self) -> Any:
        """One free slot of per-connection data (pymilter's ``setpriv``, milter-manager's
        private data); kept for the whole connection, cleared with :attr:`connection_data`."""
        return self._private

    @private.setter
    def private(self, value: Any) -> None:
        self._private = value

    def set_private(self, value: Any) -> None:
        """pymilter's ``setpriv``: :attr:`private`, for the connection."""
        self._private = value

    def get_private(self) -> Any:
        """pymilter's ``getpriv``."""
        return self._private

    @property
    def transaction(self) -> Transaction:
        """The current message (or the one the next MAIL opens): data and actions."""
        return self._transaction

    @property
    def shelf(self) -> dict[str, Any]:
        """milter-manager's mail-transaction shelf: a dict dropped when the message ends."""
        return self._transaction.shelf

    @property
    def envelope_parameters(self) -> tuple[str, ...]:
        """ESMTP parameters of the current MAIL or RCPT command."""
        return self._transaction.envelope_parameters

    @property
    def quarantine_reason(self) -> str | None:
        """Reason given to :meth:`quarantine` in the current (or the last answered) message."""
        if self._transaction.quarantine_reason is not None or self._last_result is None:
            return self._transaction.quarantine_reason
        return self._last_result.quarantine_reason

    @property
    def message_result(self) -> MessageResult | None:
        """The record of the current message, if one is open; settable, as milter-manager's
        ``message-result`` (a record set before MAIL is the next message's)."""
        return self._transaction.result if self._transaction_open else None

    @message_result.setter
    def message_result(self, result: MessageResult) -> None:
        if not isinstance(result, MessageResult):
            raise TypeError(f"message_result must be a MessageResult, not {result!r}")
        self._transaction.result = result

    @property
    def offered_option(self) -> Option | None:
        """The MTA's offer, as libmilter reads it (zero masks mean version 1's), or None."""
        return effective_offer(self.offer) if self.offer is not None else None

    @property
    def option(self) -> Option | None:
        """The negotiated version, actions and protocol steps (None before negotiation).

        Settable as milter-manager's ``option``: while the negotiate reply is owed it is the
        option that will be requested; afterwards only actions may be narrowed (the steps are
        what the MTA was told and cannot change).
        """
        if self.negotiation is not None:
            return self.negotiation.option
        return self._option_override if self._pending is NEGOTIATE else None

    @option.setter
    def option(self, option: Option) -> None:
        if not isinstance(option, Option):
            raise TypeError(f"option must be an Option, not {option!r}")
        if self.negotiation is None:
            if self._pending is not NEGOTIATE:
                raise StateError("option can be set only while the negotiate reply is owed")
            self._option_override = option
            return
        agreed = self.negotiation.option
        if option.version != agreed.version or option.protocol != agreed.protocol:
            raise StateError("after negotiation only the actions of the option may change")
        if option.actions & ~agreed.actions:
            raise StateError(f"actions {option.actions & ~agreed.actions!r} were not negotiated")
        agreed.actions = ActionFlag(option.actions)

    # ------------------------------------------------------------------ replies

    def set_reply(
        self, code: str | int, xcode: str | None = None, text: str | Sequence[str] | None = None
    ) -> str:
        """Set the SMTP reply for the next REJECT or TEMPORARY_FAILURE of this stage.

        Validated as Postfix and libmilter do (see :func:`milterkit.reply.format_reply`); used
        once, by the reply of the current stage, then forgotten. Returns the formatted text.
        """
        reply = format_reply(code, xcode, text)
        self._reply = reply
        return reply

    @property
    def reply(self) -> str | None:
        """The SMTP reply text set for the current stage, if any."""
        return self._reply

    def reject(
        self, code: str | int = "550", xcode: str | None = "5.7.1",
        text: str | Sequence[str] | None = "Command rejected",
    ) -> Status:
        """Set a 5xx reply and return REJECT: ``return context.reject("550", "5.7.1", "No")``."""
        self.set_reply(code, xcode, text)
        return S.REJECT

    def temporary_failure(
        self, code: str | int = "451", xcode: str | None = "4.7.1",
        text: str | Sequence[str] | None = "Service unavailable - try again later",
    ) -> Status:
        """Set a 4xx reply and return TEMPORARY_FAILURE."""
        self.set_reply(code, xcode, text)
        return S.TEMPORARY_FAILURE

    def progress(self) -> None:
        """Send a keep-alive (``p``) while a reply is owed; the MTA restarts its timeout.

        Postfix takes it at any stage; Sendmail only at end-of-message.
        """
        stage = self._pending
        if stage is None or stage is ABORT or stage is NEGOTIATE:
            raise StateError("progress() is only possible while a reply is owed to the MTA")
        if stage.name in self._silent:
            raise StateError(f"progress() at {stage.name}: the MTA expects no reply there")
        self._write(PROGRESS_PACKET)

    # ------------------------------------------------------------------ modifications
    # milter-manager's names; each delegates to the current Transaction.

    def add_header(self, name: str, value: str) -> None:
        """Append a header (``h``)."""
        self._transaction.add_header(name, value)

    def insert_header(self, index: int, name: str, value: str) -> None:
        """Insert a header at ``index`` (0 = topmost) (``i``)."""
        self._transaction.insert_header(index, name, value)

    def change_header(self, name: str, index: int, value: str | None) -> None:
        """Change the ``index``-th (1-based) header called ``name``; None or "" deletes it."""
        self._transaction.change_header(name, index, value)

    def delete_header(self, name: str, index: int = 1) -> None:
        """Delete the ``index``-th (1-based) header called ``name``."""
        self._transaction.delete_header(name, index)

    def change_from(self, sender: str, parameters: str | Iterable[str] | None = None) -> None:
        """Replace the envelope sender, optionally with ESMTP parameters (``e``)."""
        self._transaction.change_from(sender, parameters)

    def add_recipient(self, recipient: str, parameters: str | Iterable[str] | None = None) -> None:
        """Add an envelope recipient (``+``), or with ESMTP parameters (``2``)."""
        self._transaction.add_recipient(recipient, parameters)

    def delete_recipient(self, recipient: str) -> None:
        """Remove an envelope recipient, spelled as the MTA sent it (``-``)."""
        self._transaction.delete_recipient(recipient)

    def replace_body(self, body: bytes) -> None:
        """Replace the body (``b``, split into 65535-byte packets; sent after other changes)."""
        self._transaction.replace_body(body)

    def quarantine(self, reason: str) -> None:
        """Put the message on hold with ``reason`` (``q``, sent just before the verdict)."""
        self._transaction.quarantine(reason)
