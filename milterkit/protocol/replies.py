"""The milter's replies (SMFIR_*): one small immutable class each, encoded and decoded.

The milter side encodes them (``to_bytes()``); the MTA side of the test tools decodes them with
:func:`decode_reply`, as strictly as Postfix does: verdicts carry no payload and strings parse
exactly.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import ClassVar

from .commands import split_strings
from .constants import ActionFlag, MacroStage, ProtocolFlag
from .errors import (
    EmptyName,
    InvalidValue,
    MalformedPacket,
    ShortPayload,
    TrailingData,
    UnknownCommand,
)
from .framing import encode_packet
from .text import decode_text, encode_text
from .values import check_header_index, check_header_name, check_header_value, check_line


@dataclass(frozen=True, slots=True)
class NegotiateReply:
    """``O``: the milter's answer to the offer, with optional macro lists per stage."""

    code: ClassVar[bytes] = b"O"
    version: int
    actions: ActionFlag
    protocol: ProtocolFlag
    #: Stage -> space-separated macro names (SETSYMLIST), in the order they are sent.
    macros: Mapping[MacroStage, str] = field(default_factory=dict)

    def to_bytes(self) -> bytes:
        payload = (
            self.version.to_bytes(4, "big")
            + int(self.actions).to_bytes(4, "big")
            + int(self.protocol).to_bytes(4, "big")
        )
        for stage, names in self.macros.items():
            payload += int(stage).to_bytes(4, "big") + encode_text(names) + b"\0"
        return encode_packet(self.code, payload)


@dataclass(frozen=True, slots=True)
class Continue:
    """``c``: go on (at end-of-message: accept)."""

    code: ClassVar[bytes] = b"c"

    def to_bytes(self) -> bytes:
        return CONTINUE_PACKET


@dataclass(frozen=True, slots=True)
class Reject:
    """``r``: reject with the MTA's default text."""

    code: ClassVar[bytes] = b"r"

    def to_bytes(self) -> bytes:
        return REJECT_PACKET


@dataclass(frozen=True, slots=True)
class TempFail:
    """``t``: temporary failure with the MTA's default text."""

    code: ClassVar[bytes] = b"t"

    def to_bytes(self) -> bytes:
        return TEMPFAIL_PACKET


@dataclass(frozen=True, slots=True)
class Accept:
    """``a``: accept; no more events for this connection (at CONNECT/HELO) or message."""

    code: ClassVar[bytes] = b"a"

    def to_bytes(self) -> bytes:
        return ACCEPT_PACKET


@dataclass(frozen=True, slots=True)
class Discard:
    """``d``: accept the message and silently drop it."""

    code: ClassVar[bytes] = b"d"

    def to_bytes(self) -> bytes:
        return DISCARD_PACKET


@dataclass(frozen=True, slots=True)
class Skip:
    """``s``: send no more events of this kind (body chunks)."""

    code: ClassVar[bytes] = b"s"

    def to_bytes(self) -> bytes:
        return SKIP_PACKET


@dataclass(frozen=True, slots=True)
class Progress:
    """``p``: still working; the MTA restarts its timeout and keeps waiting."""

    code: ClassVar[bytes] = b"p"

    def to_bytes(self) -> bytes:
        return PROGRESS_PACKET


@dataclass(frozen=True, slots=True)
class Shutdown:
    """``4``: Postfix answers 421 and disconnects; Sendmail treats it as an error."""

    code: ClassVar[bytes] = b"4"

    def to_bytes(self) -> bytes:
        return encode_packet(self.code)


@dataclass(frozen=True, slots=True)
class ConnectionFailure:
    """``f``: defined by libmilter, accepted by no MTA; decoded for traces only."""

    code: ClassVar[bytes] = b"f"

    def to_bytes(self) -> bytes:
        return encode_packet(self.code)


@dataclass(frozen=True, slots=True)
class ReplyText:
    """``y``: a verdict with an SMTP reply (``"550 5.7.1 text"``, lines joined by CRLF)."""

    code: ClassVar[bytes] = b"y"
    text: str

    @property
    def smtp_code(self) -> str:
        return self.text[:3]

    def to_bytes(self) -> bytes:
        return encode_packet(self.code, encode_text(self.text) + b"\0")


@dataclass(frozen=True, slots=True)
class Quarantine:
    """``q``: put the message on hold with ``reason``."""

    code: ClassVar[bytes] = b"q"
    reason: str

    def __post_init__(self) -> None:
        check_line("quarantine reason", self.reason)

    def to_bytes(self) -> bytes:
        return encode_packet(self.code, encode_text(self.reason) + b"\0")


@dataclass(frozen=True, slots=True)
class AddRecipient:
    """``+``: add an envelope recipient."""

    code: ClassVar[bytes] = b"+"
    recipient: str

    def __post_init__(self) -> None:
        check_line("recipient", self.recipient)

    def to_bytes(self) -> bytes:
        return encode_packet(self.code, encode_text(self.recipient) + b"\0")


@dataclass(frozen=True, slots=True)
class AddRecipientWithParameters:
    """``2``: add an envelope recipient with ESMTP parameters (one space-separated string)."""

    code: ClassVar[bytes] = b"2"
    recipient: str
    parameters: str

    def __post_init__(self) -> None:
        check_line("recipient", self.recipient)
        if any(c in self.parameters for c in "\0\r\n"):
            raise InvalidValue(f"ESMTP parameters {self.parameters!r} contain NUL, CR or LF")

    def to_bytes(self) -> bytes:
        return encode_packet(
            self.code, encode_text(self.recipient) + b"\0" + encode_text(self.parameters) + b"\0"
        )


@dataclass(frozen=True, slots=True)
class DeleteRecipient:
    """``-``: remove an envelope recipient, spelled as the MTA sent it."""

    code: ClassVar[bytes] = b"-"
    recipient: str

    def __post_init__(self) -> None:
        check_line("recipient", self.recipient)

    def to_bytes(self) -> bytes:
        return encode_packet(self.code, encode_text(self.recipient) + b"\0")


@dataclass(frozen=True, slots=True)
class ChangeFrom:
    """``e``: replace the envelope sender, optionally with ESMTP parameters."""

    code: ClassVar[bytes] = b"e"
    sender: str
    parameters: str | None = None

    def __post_init__(self) -> None:
        check_line("sender", self.sender)
        if self.parameters is not None and any(c in self.parameters for c in "\0\r\n"):
            raise InvalidValue(f"ESMTP parameters {self.parameters!r} contain NUL, CR or LF")

    def to_bytes(self) -> bytes:
        payload = encode_text(self.sender) + b"\0"
        if self.parameters:
            payload += encode_text(self.parameters) + b"\0"
        return encode_packet(self.code, payload)


@dataclass(frozen=True, slots=True)
class AddHeader:
    """``h``: append a header."""

    code: ClassVar[bytes] = b"h"
    name: str
    value: str

    def __post_init__(self) -> None:
        check_header_name(self.name)
        check_header_value(self.value)

    def to_bytes(self) -> bytes:
        return encode_packet(
            self.code, encode_text(self.name) + b"\0" + encode_text(self.value) + b"\0"
        )


@dataclass(frozen=True, slots=True)
class InsertHeader:
    """``i``: insert a header at ``index`` (0 = topmost)."""

    code: ClassVar[bytes] = b"i"
    index: int
    name: str
    value: str

    def __post_init__(self) -> None:
        check_header_name(self.name)
        check_header_value(self.value)
        check_header_index(self.index)

    def to_bytes(self) -> bytes:
        return encode_packet(
            self.code,
            self.index.to_bytes(4, "big")
            + encode_text(self.name)
            + b"\0"
            + encode_text(self.value)
            + b"\0",
        )


@dataclass(frozen=True, slots=True)
class ChangeHeader:
    """``m``: change the ``index``-th (1-based) header called ``name``; empty value deletes it."""

    code: ClassVar[bytes] = b"m"
    index: int
    name: str
    value: str

    def __post_init__(self) -> None:
        check_header_name(self.name)
        check_header_value(self.value)
        check_header_index(self.index)

    def to_bytes(self) -> bytes:
        return encode_packet(
            self.code,
            self.index.to_bytes(4, "big")
            + encode_text(self.name)
            + b"\0"
            + encode_text(self.value)
            + b"\0",
        )


@dataclass(frozen=True, slots=True)
class ReplaceBody:
    """``b``: one chunk of the new body; all chunks of a message are concatenated."""

    code: ClassVar[bytes] = b"b"
    chunk: bytes

    def to_bytes(self) -> bytes:
        return encode_packet(self.code, self.chunk)


CONTINUE_PACKET = encode_packet(b"c")
REJECT_PACKET = encode_packet(b"r")
TEMPFAIL_PACKET = encode_packet(b"t")
ACCEPT_PACKET = encode_packet(b"a")
DISCARD_PACKET = encode_packet(b"d")
SKIP_PACKET = encode_packet(b"s")
PROGRESS_PACKET = encode_packet(b"p")

AnyReply = (
    NegotiateReply
    | Continue
    | Reject
    | TempFail
    | Accept
    | Discard
    | Skip
    | Progress
    | Shutdown
    | ConnectionFailure
    | ReplyText
    | Quarantine
    | AddRecipient
    | AddRecipientWithParameters
    | DeleteRecipient
    | ChangeFrom
    | AddHeader
    | InsertHeader
    | ChangeHeader
    | ReplaceBody
)

#: Replies that end the MTA's wait for the current command.
FINAL_REPLIES = (Continue, Reject, TempFail, Accept, Discard, Skip, Shutdown, ReplyText)
#: Replies that change the message (end-of-message only).
MODIFICATIONS = (
    AddRecipient,
    AddRecipientWithParameters,
    DeleteRecipient,
    ChangeFrom,
    AddHeader,
    InsertHeader,
    ChangeHeader,
    ReplaceBody,
)


def _strings(payload: bytes, code: bytes, count: tuple[int, ...]) -> list[str]:
    strings = split_strings(payload, code)
    if len(strings) not in count:
        raise TrailingData(
            f"reply {code!r} carries {len(strings)} strings where {' or '.join(map(str, count))} "
            "are expected",
            code,
        )
    return [decode_text(s) for s in strings]


def _decode_negotiate(payload: bytes) -> NegotiateReply:
    if len(payload) < 12:
        raise ShortPayload(f"negotiate reply has {len(payload)} payload bytes, needs 12", b"O")
    macros: dict[MacroStage, str] = {}
    rest = payload[12:]
    while rest:
        if len(rest) < 5:
            raise ShortPayload("negotiate reply ends inside a macro list", b"O")
        stage_number = int.from_bytes(rest[0:4], "big")
        end = rest.find(b"\0", 4)
        if end < 0:
            raise MalformedPacket("negotiate reply: macro list is not NUL-terminated", b"O")
        try:
            stage = MacroStage(stage_number)
        except ValueError:
            raise MalformedPacket(
                f"negotiate reply names unknown macro stage {stage_number}", b"O"
            ) from None
        macros[stage] = decode_text(rest[4:end])
        rest = rest[end + 1 :]
    return NegotiateReply(
        int.from_bytes(payload[0:4], "big"),
        ActionFlag(int.from_bytes(payload[4:8], "big")),
        ProtocolFlag(int.from_bytes(payload[8:12], "big")),
        macros,
    )


def _indexed(payload: bytes, code: bytes) -> tuple[int, str, str]:
    if len(payload) < 4:
        raise ShortPayload(f"reply {code!r} ends inside its index", code)
    name, value = _strings(payload[4:], code, (2,))
    if not name:
        raise EmptyName(f"reply {code!r} has an empty header name", code)
    return int.from_bytes(payload[0:4], "big"), name, value


def _bare(instance: AnyReply) -> Callable[[bytes], AnyReply]:
    def decode(payload: bytes) -> AnyReply:
        if payload:
            raise TrailingData(
                f"reply {instance.code!r} carries {len(payload)} payload bytes; it takes none",
                instance.code,
            )
        return instance

    return decode


def _decode_add_header(payload: bytes) -> AddHeader:
    name, value = _strings(payload, b"h", (2,))
    if not name:
        raise EmptyName("reply b'h' has an empty header name", b"h")
    return AddHeader(name, value)


def _decode_change_from(payload: bytes) -> ChangeFrom:
    strings = _strings(payload, b"e", (1, 2))
    return ChangeFrom(strings[0], strings[1] if len(strings) == 2 else None)


def _decode_add_rcpt_par(payload: bytes) -> AddRecipientWithParameters:
    strings = _strings(payload, b"2", (1, 2))
    return AddRecipientWithParameters(strings[0], strings[1] if len(strings) == 2 else "")


_REPLY_DECODERS: dict[bytes, Callable[[bytes], AnyReply]] = {
    b"O": _decode_negotiate,
    b"c": _bare(Continue()),
    b"r": _bare(Reject()),
    b"t": _bare(TempFail()),
    b"a": _bare(Accept()),
    b"d": _bare(Discard()),
    b"s": _bare(Skip()),
    b"p": _bare(Progress()),
    b"4": _bare(Shutdown()),
    b"f": _bare(ConnectionFailure()),
    b"y": lambda p: ReplyText(_strings(p, b"y", (1,))[0]),
    b"q": lambda p: Quarantine(_strings(p, b"q", (1,))[0]),
    b"+": lambda p: AddRecipient(_strings(p, b"+", (1,))[0]),
    b"-": lambda p: DeleteRecipient(_strings(p, b"-", (1,))[0]),
    b"2": _decode_add_rcpt_par,
    b"e": _decode_change_from,
    b"h": _decode_add_header,
    b"i": lambda p: InsertHeader(*_indexed(p, b"i")),
    b"m": lambda p: ChangeHeader(*_indexed(p, b"m")),
    b"b": lambda p: ReplaceBody(p),
}


def decode_reply(code: bytes, payload: bytes) -> AnyReply:
    """Decode one milter packet (its reply byte and payload) into a reply object."""
    decoder = _REPLY_DECODERS.get(code)
    if decoder is None:
        raise UnknownCommand(f"unknown reply byte {code!r}", code)
    try:
        return decoder(payload)
    except InvalidValue as exc:
        # The rules a milter's own calls obey; in bytes that came in, the peer broke them.
        raise MalformedPacket(f"reply {code!r}: {exc}", code) from None
