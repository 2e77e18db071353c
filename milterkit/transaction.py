"""``Transaction``: everything that belongs to one message, made at MAIL and dropped whole.

A :class:`~milterkit.ClientContext` makes a new one when a message begins and forgets it when the
message ends (answered at end-of-message, aborted, or superseded by a new MAIL). Nothing of a
message can outlive it through a forgotten field of a hand-written reset (aiosmtpd replaces its
``envelope`` the same way).

The end-of-message actions live here too (go-milter's ``Modifier`` is the model): each checks its
arguments, then asks the context's *gate* whether this stage may do it (end-of-message only, the
action negotiated), and records the reply packet to send with the verdict.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from .protocol.constants import CHUNK_SIZE, ActionFlag
from .protocol.errors import InvalidValue
from .protocol.replies import (
    AddHeader,
    AddRecipient,
    AddRecipientWithParameters,
    AnyReply,
    ChangeFrom,
    ChangeHeader,
    DeleteRecipient,
    InsertHeader,
    Quarantine,
    ReplaceBody,
)
from .protocol.steps import ACTION_OF_REPLY
from .result import MessageResult

#: Called before an action is recorded: raises :class:`~milterkit.ActionError` unless the
#: context is at end-of-message with ``flag`` negotiated. ``action`` names the call for the error.
ActionGate = Callable[[str, ActionFlag], None]


class Transaction:
    """One mail transaction: its record, data, envelope parameters and pending modifications."""

    __slots__ = ("result", "shelf", "envelope_parameters", "modifications", "body_chunks",
                 "quarantine_reason", "verdict_given", "_gate")

    def __init__(self, gate: ActionGate) -> None:
        #: What happened to the message so far; emitted with ``message-processed``.
        self.result = MessageResult()
        #: milter-manager's mail-transaction shelf: free storage for this message only.
        self.shelf: dict[str, Any] = {}
        #: ESMTP parameters of the current MAIL or RCPT command.
        self.envelope_parameters: tuple[str, ...] = ()
        #: Header and envelope changes, in the order the milter asked for them.
        self.modifications: list[AnyReply] = []
        #: The new body, in packets of at most 65535 bytes (sent after the other changes).
        self.body_chunks: list[ReplaceBody] = []
        #: The reason given to :meth:`quarantine`, if any.
        self.quarantine_reason: str | None = None
        #: Whether the milter gave the message a verdict (ACCEPT, REJECT, DISCARD, TEMPFAIL):
        #: then the message is complete and no ``abort`` is emitted for it.
        self.verdict_given = False
        self._gate = gate

    def _record(self, action: str, reply: AnyReply) -> None:
        self._gate(action, ACTION_OF_REPLY[type(reply)])
        self.modifications.append(reply)

    def discard_changes(self) -> None:
        """Forget every modification asked for so far (a handler failed at end-of-message)."""
        self.modifications.clear()
        self.body_chunks.clear()
        self.quarantine_reason = None

    def wire_replies(self) -> list[AnyReply]:
        """The modifications in wire order: changes, then the body, then the quarantine."""
        replies = [*self.modifications, *self.body_chunks]
        if self.quarantine_reason is not None:
            replies.append(Quarantine(self.quarantine_reason))
        return replies

    # ------------------------------------------------------------------ actions

    def add_header(self, name: str, value: str) -> None:
        """Append a header (``h``)."""
        self._record("add_header", AddHeader(name, value))

    def insert_header(self, index: int, name: str, value: str) -> None:
        """Insert a header at ``index`` (0 = topmost) (``i``)."""
        self._record("insert_header", InsertHeader(index, name, value))

    def change_header(self, name: str, index: int, value: str | None) -> None:
        """Change the ``index``-th (1-based) header called ``name``; None or "" deletes it."""
        reply = ChangeHeader(index, name, value or "")
        _check_first_index(index)
        self._record("change_header", reply)

    def delete_header(self, name: str, index: int = 1) -> None:
        """Delete the ``index``-th (1-based) header called ``name``."""
        # Not via change_header: an error must name the call the milter made.
        reply = ChangeHeader(index, name, "")
        _check_first_index(index)
        self._record("delete_header", reply)

    def change_from(self, sender: str, parameters: str | Iterable[str] | None = None) -> None:
        """Replace the envelope sender, optionally with ESMTP parameters (``e``)."""
        _check_address("change_from", sender)
        self._record("change_from", ChangeFrom(sender, _join_parameters(parameters)))

    def add_recipient(self, recipient: str, parameters: str | Iterable[str] | None = None) -> None:
        """Add an envelope recipient (``+``), or with ESMTP parameters (``2``)."""
        _check_address("add_recipient", recipient)
        params = _join_parameters(parameters)
        if params:
            self._record("add_recipient with parameters",
                         AddRecipientWithParameters(recipient, params))
        else:
            self._record("add_recipient", AddRecipient(recipient))

    def delete_recipient(self, recipient: str) -> None:
        """Remove an envelope recipient, spelled as the MTA sent it (``-``)."""
        _check_address("delete_recipient", recipient)
        self._record("delete_recipient", DeleteRecipient(recipient))

    def replace_body(self, body: bytes) -> None:
        """Replace the body (``b``, split into 65535-byte packets; sent after other changes).

        Successive calls append, as libmilter's ``smfi_replacebody`` does; an empty body sends
        one empty ``b`` packet, which truncates the body.
        """
        if not isinstance(body, (bytes, bytearray, memoryview)):
            raise TypeError(f"replace_body takes bytes, not {type(body).__name__}")
        self._gate("replace_body", ACTION_OF_REPLY[ReplaceBody])
        data = bytes(body)
        if not data:
            self.body_chunks.append(ReplaceBody(b""))
            return
        for start in range(0, len(data), CHUNK_SIZE):
            self.body_chunks.append(ReplaceBody(data[start : start + CHUNK_SIZE]))

    def quarantine(self, reason: str) -> None:
        """Put the message on hold with ``reason`` (``q``, sent just before the verdict)."""
        Quarantine(reason)  # validates
        self._gate("quarantine", ACTION_OF_REPLY[Quarantine])
        self.quarantine_reason = reason


def _check_first_index(index: int) -> None:
    if index < 1:
        raise InvalidValue(f"header index must be an int from 1 to 2**32-1, not {index!r}")


def _check_address(action: str, address: str) -> None:
    if not isinstance(address, str) or not address:
        raise InvalidValue(f"{action} needs a non-empty address")
    if any(c in address for c in "\0\r\n"):
        raise InvalidValue(f"{action}: address {address!r} contains NUL, CR or LF")


def _join_parameters(parameters: str | Iterable[str] | None) -> str | None:
    if parameters is None:
        return None
    text = parameters if isinstance(parameters, str) else " ".join(parameters)
    if any(c in text for c in "\0\r\n"):
        raise InvalidValue(f"ESMTP parameters {text!r} contain NUL, CR or LF")
    return text or None
