"""The MTA's commands (SMFIC_*): one small immutable class each, decoded from and encoded to
packets.

``decode_command(command, payload)`` turns one framed packet into a command object and raises a
:class:`~milterkit.protocol.errors.ProtocolError` subclass that says what is wrong otherwise.
Every command object has ``to_bytes()``, the whole packet, which the MTA side of the test tools
uses.
"""

from __future__ import annotations

import functools
import ipaddress
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import ClassVar

from .constants import ActionFlag, ProtocolFlag
from .errors import (
    EmptyName,
    EmptyPayload,
    InvalidAddress,
    MalformedPacket,
    MalformedStage,
    MissingNul,
    ShortPayload,
    TrailingData,
    UnknownCommand,
    UnknownFamily,
)
from .framing import encode_packet
from .text import decode_text, encode_text

#: The commands that may name a stage in a ``D`` packet.
MACRO_COMMANDS = frozenset(b"CHMRTLNBEUAQK")


def _name(command: bytes) -> str:
    command_class = _CLASS_OF_CODE.get(command)
    return command_class.label if command_class is not None else repr(command)


def split_strings(payload: bytes, command: bytes) -> list[bytes]:
    """Split a run of NUL-terminated strings; the payload must end with a NUL."""
    if not payload:
        raise EmptyPayload(f"{_name(command)} packet has no payload", command)
    if payload[-1] != 0:
        raise MissingNul(
            f"{_name(command)} packet: last string is not NUL-terminated "
            f"({len(payload)} payload bytes)",
            command,
        )
    return payload[:-1].split(b"\0")


def _one_string(payload: bytes, command: bytes) -> bytes:
    strings = split_strings(payload, command)
    if len(strings) != 1:
        raise TrailingData(
            f"{_name(command)} packet carries {len(strings)} strings where one is expected", command
        )
    return strings[0]


def _no_payload(payload: bytes, command: bytes) -> None:
    if payload:
        raise TrailingData(
            f"{_name(command)} packet carries {len(payload)} needless payload bytes", command
        )


def _join(strings: list[str]) -> bytes:
    return b"".join(encode_text(s) + b"\0" for s in strings)


@dataclass(frozen=True, slots=True)
class Negotiate:
    """``O``: the MTA's offer of version, actions and protocol steps."""

    code: ClassVar[bytes] = b"O"
    label: ClassVar[str] = "OPTNEG"
    version: int
    actions: ActionFlag
    protocol: ProtocolFlag
    #: Bytes past the 12 defined ones (libmilter ignores them; we keep them for traces).
    extra: bytes = b""

    def to_bytes(self) -> bytes:
        payload = (
            self.version.to_bytes(4, "big")
            + int(self.actions).to_bytes(4, "big")
            + int(self.protocol).to_bytes(4, "big")
            + self.extra
        )
        return encode_packet(self.code, payload)


@dataclass(frozen=True, slots=True)
class DefineMacro:
    """``D``: macro values for the command named by ``stage`` (a command byte such as ``b"M"``)."""

    code: ClassVar[bytes] = b"D"
    label: ClassVar[str] = "MACRO"
    stage: bytes
    macros: Mapping[str, str] = field(default_factory=dict)

    def to_bytes(self) -> bytes:
        body = b"".join(
            encode_text(name) + b"\0" + encode_text(value) + b"\0"
            for name, value in self.macros.items()
        )
        return encode_packet(self.code, self.stage + body)


@dataclass(frozen=True, slots=True)
class SocketAddress:
    """The SMTP client's address from a ``C`` packet.

    ``family`` is ``"4"``, ``"6"``, ``"L"`` (unix socket, ``address`` is its path) or ``"U"``
    (unknown: no address). ``raw`` is the address text exactly as sent (Sendmail prefixes IPv6
    with ``IPv6:``; ``address`` has that prefix removed).
    """

    family: str
    address: str | None = None
    port: int = 0
    raw: str | None = None

    def __post_init__(self) -> None:
        if self.raw is None and self.address is not None:
            object.__setattr__(self, "raw", self.address)

    @property
    def ip(self) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
        """The parsed IP address for families 4 and 6, else None."""
        if self.family in ("4", "6") and self.address is not None:
            return ipaddress.ip_address(self.address)
        return None

    def __str__(self) -> str:
        if self.family == "4":
            return f"inet:{self.port}@[{self.address}]"
        if self.family == "6":
            return f"inet6:{self.port}@[{self.address}]"
        if self.family == "L":
            return f"unix:{self.address}"
        return "unknown"


@dataclass(frozen=True, slots=True)
class Connect:
    """``C``: a new SMTP client; ``hostname`` is its verified name or ``[address]``."""

    code: ClassVar[bytes] = b"C"
    label: ClassVar[str] = "CONNECT"
    hostname: str
    address: SocketAddress

    def to_bytes(self) -> bytes:
        payload = encode_text(self.hostname) + b"\0" + self.address.family.encode("ascii")
        if self.address.family != "U":
            raw = self.address.raw if self.address.raw is not None else self.address.address
            payload += self.address.port.to_bytes(2, "big") + encode_text(raw or "") + b"\0"
        return encode_packet(self.code, payload)


@dataclass(frozen=True, slots=True)
class Helo:
    """``H``: the HELO/EHLO argument."""

    code: ClassVar[bytes] = b"H"
    label: ClassVar[str] = "HELO"
    name: str

    def to_bytes(self) -> bytes:
        return encode_packet(self.code, encode_text(self.name) + b"\0")


@dataclass(frozen=True, slots=True)
class Mail:
    """``M``: MAIL FROM; ``sender`` keeps its angle brackets, ``parameters`` are ESMTP ``K=V``."""

    code: ClassVar[bytes] = b"M"
    label: ClassVar[str] = "MAIL"
    sender: str
    parameters: tuple[str, ...] = ()

    def to_bytes(self) -> bytes:
        return encode_packet(self.code, _join([self.sender, *self.parameters]))


@dataclass(frozen=True, slots=True)
class Rcpt:
    """``R``: RCPT TO; ``recipient`` keeps its angle brackets."""

    code: ClassVar[bytes] = b"R"
    label: ClassVar[str] = "RCPT"
    recipient: str
    parameters: tuple[str, ...] = ()

    def to_bytes(self) -> bytes:
        return encode_packet(self.code, _join([self.recipient, *self.parameters]))


@dataclass(frozen=True, slots=True)
class Data:
    """``T``: the DATA command (protocol version 4 and later)."""

    code: ClassVar[bytes] = b"T"
    label: ClassVar[str] = "DATA"

    def to_bytes(self) -> bytes:
        return encode_packet(self.code)


@dataclass(frozen=True, slots=True)
class Header:
    """``L``: one header; ``value`` keeps folding (``\\n`` + whitespace) as the MTA sent it."""

    code: ClassVar[bytes] = b"L"
    label: ClassVar[str] = "HEADER"
    name: str
    value: str

    def to_bytes(self) -> bytes:
        return encode_packet(self.code, _join([self.name, self.value]))


@dataclass(frozen=True, slots=True)
class EndOfHeader:
    """``N``: the end of the headers."""

    code: ClassVar[bytes] = b"N"
    label: ClassVar[str] = "END-OF-HEADER"

    def to_bytes(self) -> bytes:
        return encode_packet(self.code)


@dataclass(frozen=True, slots=True)
class Body:
    """``B``: one chunk of the body (at most 65535 bytes from real MTAs)."""

    code: ClassVar[bytes] = b"B"
    label: ClassVar[str] = "BODY"
    chunk: bytes

    def to_bytes(self) -> bytes:
        return encode_packet(self.code, self.chunk)


@dataclass(frozen=True, slots=True)
class EndOfMessage:
    """``E``: the end of the message; ``chunk`` is a last piece of body some peers attach."""

    code: ClassVar[bytes] = b"E"
    label: ClassVar[str] = "END-OF-MESSAGE"
    chunk: bytes = b""

    def to_bytes(self) -> bytes:
        return encode_packet(self.code, self.chunk)


@dataclass(frozen=True, slots=True)
class Abort:
    """``A``: forget the current message (sent by Postfix after every transaction)."""

    code: ClassVar[bytes] = b"A"
    label: ClassVar[str] = "ABORT"

    def to_bytes(self) -> bytes:
        return encode_packet(self.code)


@dataclass(frozen=True, slots=True)
class Quit:
    """``Q``: the session is over."""

    code: ClassVar[bytes] = b"Q"
    label: ClassVar[str] = "QUIT"

    def to_bytes(self) -> bytes:
        return encode_packet(self.code)


@dataclass(frozen=True, slots=True)
class QuitNewConnection:
    """``K``: this SMTP client is done; a new one follows on the same milter connection."""

    code: ClassVar[bytes] = b"K"
    label: ClassVar[str] = "QUIT_NC"

    def to_bytes(self) -> bytes:
        return encode_packet(self.code)


@dataclass(frozen=True, slots=True)
class Unknown:
    """``U``: an SMTP command the MTA does not know, as the client sent it."""

    code: ClassVar[bytes] = b"U"
    label: ClassVar[str] = "UNKNOWN"
    line: str

    def to_bytes(self) -> bytes:
        return encode_packet(self.code, encode_text(self.line) + b"\0")


AnyCommand = (
    Negotiate
    | DefineMacro
    | Connect
    | Helo
    | Mail
    | Rcpt
    | Data
    | Header
    | EndOfHeader
    | Body
    | EndOfMessage
    | Abort
    | Quit
    | QuitNewConnection
    | Unknown
)

# Shared instances of the commands that carry nothing: decoding them allocates nothing.
_DATA = Data()
_EOH = EndOfHeader()
_ABORT = Abort()
_QUIT = Quit()
_QUIT_NC = QuitNewConnection()
_NO_MACROS: Mapping[str, str] = MappingProxyType({})


def _decode_negotiate(payload: bytes) -> Negotiate:
    if len(payload) < 12:
        raise ShortPayload(
            f"OPTNEG packet has {len(payload)} payload bytes; version, actions and protocol "
            "need 12",
            b"O",
        )
    return Negotiate(
        int.from_bytes(payload[0:4], "big"),
        ActionFlag(int.from_bytes(payload[4:8], "big")),
        ProtocolFlag(int.from_bytes(payload[8:12], "big")),
        payload[12:],
    )


def _decode_macro(payload: bytes) -> DefineMacro:
    if not payload:
        raise EmptyPayload("MACRO packet has no payload (a stage byte is required)", b"D")
    stage = payload[0:1]
    if len(payload) == 1 and stage[0] in MACRO_COMMANDS:
        return DefineMacro(stage, _NO_MACROS)  # Postfix sends these for empty lists
    if stage[0] not in MACRO_COMMANDS:
        raise MalformedStage(f"MACRO packet names an unknown stage {stage!r}", b"D")
    rest = payload[1:]
    macros: dict[str, str] = {}
    if rest:
        strings = split_strings(rest, b"D")
        # An odd count leaves the last name without a value: keep it with an empty value.
        for index in range(0, len(strings), 2):
            name = decode_text(strings[index])
            if not name:
                raise EmptyName(f"MACRO packet for stage {stage!r} has an empty macro name", b"D")
            value = decode_text(strings[index + 1]) if index + 1 < len(strings) else ""
            macros[name] = value
    return DefineMacro(stage, macros)


@functools.lru_cache(maxsize=1024)
def _cached_ip_version(address: str) -> int:
    return ipaddress.ip_address(address).version


def _ip_version(address: str) -> int:
    # The same SMTP clients connect again and again: parse each address once (issue 15). Only
    # plain-length ones are kept: an IPv6 scope id may be as long as the packet, and a peer
    # must not fill the cache with 1,024 of those.
    if len(address) <= _CACHED_ADDRESS_LENGTH:
        return _cached_ip_version(address)
    return ipaddress.ip_address(address).version


#: The longest address text the cache keeps (an IPv6 address with an IPv4 tail is 45).
_CACHED_ADDRESS_LENGTH = 64


def _decode_connect(payload: bytes) -> Connect:
    nul = payload.find(b"\0")
    if not payload:
        raise EmptyPayload("CONNECT packet has no payload", b"C")
    if nul < 0:
        raise MissingNul("CONNECT packet: host name is not NUL-terminated", b"C")
    hostname = decode_text(payload[:nul])
    if nul + 1 >= len(payload):
        raise ShortPayload("CONNECT packet ends before the address family byte", b"C")
    family = chr(payload[nul + 1])
    if family == "U":
        # libmilter ignores whatever follows an unknown family; so do we.
        return Connect(hostname, SocketAddress("U"))
    if family not in "46L":
        raise UnknownFamily(f"CONNECT packet has unknown address family {family!r}", b"C")
    rest = payload[nul + 2 :]
    if len(rest) < 2:
        raise ShortPayload("CONNECT packet ends inside the port number", b"C")
    port = int.from_bytes(rest[0:2], "big")
    raw_bytes = rest[2:]
    if not raw_bytes or raw_bytes[-1] != 0:
        raise MissingNul("CONNECT packet: address is not NUL-terminated", b"C")
    if raw_bytes.count(b"\0") != 1:
        raise TrailingData("CONNECT packet carries bytes after the address", b"C")
    raw = decode_text(raw_bytes[:-1])
    address = raw[5:] if family == "6" and raw[:5].lower() == "ipv6:" else raw
    if family in "46":
        try:
            version = _ip_version(address)
        except ValueError:
            raise InvalidAddress(
                f"CONNECT packet: {raw!r} is not a valid IPv{family} address", b"C"
            ) from None
        if version != int(family):
            raise InvalidAddress(
                f"CONNECT packet: {raw!r} is not an IPv{family} address", b"C"
            )
    return Connect(hostname, SocketAddress(family, address, port, raw))


def _decode_helo(payload: bytes) -> Helo:
    return Helo(decode_text(_one_string(payload, b"H")))


def _decode_envelope(payload: bytes, command: bytes) -> tuple[str, tuple[str, ...]]:
    strings = split_strings(payload, command)
    address = decode_text(strings[0])
    if not address:
        raise EmptyName(f"{_name(command)} packet has an empty address", command)
    return address, tuple(decode_text(s) for s in strings[1:])


def _decode_mail(payload: bytes) -> Mail:
    return Mail(*_decode_envelope(payload, b"M"))


def _decode_rcpt(payload: bytes) -> Rcpt:
    return Rcpt(*_decode_envelope(payload, b"R"))


def _decode_header(payload: bytes) -> Header:
    strings = split_strings(payload, b"L")
    if len(strings) != 2:
        raise MalformedPacket(
            f"HEADER packet carries {len(strings)} strings where name and value are expected",
            b"L",
        )
    if not strings[0]:
        raise EmptyName("HEADER packet has an empty header name", b"L")
    return Header(decode_text(strings[0]), decode_text(strings[1]))


def _decode_body(payload: bytes) -> Body:
    if not payload:
        raise EmptyPayload("BODY packet has no payload (an empty chunk is not allowed)", b"B")
    return Body(payload)


def _decode_unknown(payload: bytes) -> Unknown:
    return Unknown(decode_text(_one_string(payload, b"U")))


def _fixed(instance: AnyCommand) -> Callable[[bytes], AnyCommand]:
    def decode(payload: bytes) -> AnyCommand:
        _no_payload(payload, instance.code)
        return instance

    return decode


_CLASS_OF_CODE: dict[bytes, type[AnyCommand]] = {
    c.code: c for c in (Negotiate, DefineMacro, Connect, Helo, Mail, Rcpt, Data, Header,
                        EndOfHeader, Body, EndOfMessage, Abort, Quit, QuitNewConnection, Unknown)
}

_DECODERS: dict[bytes, Callable[[bytes], AnyCommand]] = {
    Negotiate.code: _decode_negotiate,
    DefineMacro.code: _decode_macro,
    Connect.code: _decode_connect,
    Helo.code: _decode_helo,
    Mail.code: _decode_mail,
    Rcpt.code: _decode_rcpt,
    Data.code: _fixed(_DATA),
    Header.code: _decode_header,
    EndOfHeader.code: _fixed(_EOH),
    Body.code: _decode_body,
    EndOfMessage.code: lambda payload: EndOfMessage(payload),
    Abort.code: _fixed(_ABORT),
    Quit.code: _fixed(_QUIT),
    QuitNewConnection.code: _fixed(_QUIT_NC),
    Unknown.code: _decode_unknown,
}


def decode_command(command: bytes, payload: bytes) -> AnyCommand:
    """Decode one MTA packet (its command byte and payload) into a command object."""
    decoder = _DECODERS.get(command)
    if decoder is None:
        raise UnknownCommand(f"unknown command byte {command!r}", command)
    return decoder(payload)
