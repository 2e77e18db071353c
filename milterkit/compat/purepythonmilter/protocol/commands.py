"""The command objects purepythonmilter's hooks receive, decoded from a packet's payload.

Each is built from ``data_raw`` (the payload as the MTA sent it) and decodes it the way
purepythonmilter documents: text as UTF-8 with ``backslashreplace`` (header names and HELO as
ASCII), ``MailFrom.address`` without its angle brackets, ESMTP arguments as a dict. Building
them from bytes keeps one decoding path for the server and for an application's own unit tests
(``Connect(data_raw=b"...")``). A payload purepythonmilter would refuse raises
:class:`ProtocolViolationCommandData`, which ends the connection as it does there.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from typing import Any, ClassVar

from ..api import models
from .definitions import AddressFamily
from .exceptions import ProtocolViolationCommandData


def _split_nul(data: bytes) -> list[bytes]:
    if not data:
        return []
    return data.removesuffix(b"\x00").split(b"\x00")


def _text(data: bytes) -> str:
    return data.decode("utf-8", "backslashreplace")


class BaseCommand:
    """A command without data; ``macros`` are those the MTA sent just before it for its stage."""

    command_char: ClassVar[bytes] = b""
    #: Whether the command has a macro stage (and so a ``macros`` attribute worth reading).
    has_macros: ClassVar[bool] = True

    def __init__(self, data_raw: bytes = b"") -> None:
        self.data_raw = bytes(data_raw)
        self.macros: Mapping[str, str] = {}
        self._decode()

    def _decode(self) -> None:
        if self.data_raw:
            raise ProtocolViolationCommandData(
                f"Expected no data for command {type(self).__name__}"
            )

    def _fields(self) -> dict[str, Any]:
        return {k: v for k, v in vars(self).items() if not k.startswith("_")}

    def __repr__(self) -> str:
        fields = ", ".join(f"{k}={v!r}" for k, v in self._fields().items())
        return f"{type(self).__name__}({fields})"

    def __eq__(self, other: object) -> bool:
        if type(other) is not type(self):
            return NotImplemented
        assert isinstance(other, BaseCommand)
        return self._fields() == other._fields()

    __hash__ = None  # type: ignore[assignment]  # mutable, like purepythonmilter's

    def __str__(self) -> str:
        return f"{type(self).__name__} command [nodata]"


class BaseCommandWithData(BaseCommand):
    """A command with a payload to decode."""

    def _decode(self) -> None:  # pragma: no cover - every subclass decodes
        pass

    def __str__(self) -> str:
        return f"{type(self).__name__} command [data=<{len(self.data_raw)} bytes>]"


class Connect(BaseCommandWithData):
    """CONNECT: ``connection_info_args`` is one of the ``ConnectionInfoArgs*`` classes."""

    command_char = b"C"
    connection_info_args: models.ConnectionInfoArgs

    def _decode(self) -> None:
        hostname_raw, nul, socket_data = self.data_raw.partition(b"\x00")
        if not nul:
            raise ProtocolViolationCommandData(
                "Connection info data does not contain a NUL after the hostname"
            )
        try:
            hostname = hostname_raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise ProtocolViolationCommandData(f"Undecodable hostname {hostname_raw!r}") from exc
        socket_data = socket_data.rstrip(b"\x00")
        if not socket_data:
            raise ProtocolViolationCommandData("Socket data empty")
        try:
            family = AddressFamily(socket_data[:1])
        except ValueError:
            raise ProtocolViolationCommandData(
                f"Unsupported socket family {socket_data[:1]!r} in connection socket info"
            ) from None
        if family is AddressFamily.UNKNOWN:
            self.connection_info_args = models.ConnectionInfoUnknown(description=hostname)
            return
        if family is AddressFamily.UNIX_SOCKET:
            path = socket_data[3:].decode("utf-8", "backslashreplace")
            self.connection_info_args = models.ConnectionInfoArgsUnixSocket(path=path)
            return
        if len(socket_data) < 6:
            raise ProtocolViolationCommandData("Socket data too short for an IP address")
        port = int.from_bytes(socket_data[1:3], "big")
        text = socket_data[3:].decode("ascii", "replace")
        try:
            if family is AddressFamily.IPV4:
                self.connection_info_args = models.ConnectionInfoArgsIPv4(
                    hostname=hostname, addr=ipaddress.IPv4Address(text), port=port
                )
            else:
                # Sendmail writes IPv6 addresses with an "IPv6:" prefix; Postfix does not.
                self.connection_info_args = models.ConnectionInfoArgsIPv6(
                    hostname=hostname, addr=ipaddress.IPv6Address(text.removeprefix("IPv6:")),
                    port=port,
                )
        except ValueError:
            raise ProtocolViolationCommandData(
                f"Unsupported address {text!r} for family {family.name}"
            ) from None


class Helo(BaseCommandWithData):
    """HELO/EHLO: ``hostname`` as the client gave it (ASCII; other bytes backslash-escaped)."""

    command_char = b"H"
    hostname: str

    def _decode(self) -> None:
        if not self.data_raw.endswith(b"\x00"):
            raise ProtocolViolationCommandData("Helo hostname should be NUL-terminated")
        self.hostname = self.data_raw.rstrip(b"\x00").decode("ascii", "backslashreplace")


class BaseMailFromAndRcptTo(BaseCommandWithData):
    """MAIL FROM / RCPT TO: ``address`` without angle brackets and ``esmtp_args``."""

    address: str
    esmtp_args: models.EsmtpArgsType

    def _decode(self) -> None:
        data = self.data_raw
        if not data.endswith(b"\x00") or not data.rstrip(b"\x00"):
            raise ProtocolViolationCommandData(
                f"Mail From / Rcpt To needs a NUL-terminated address, got {data!r}"
            )
        address_raw, _, rest = data.partition(b"\x00")
        address = _text(address_raw)
        if address.startswith("<") and address.endswith(">"):
            address = address[1:-1]
        self.address = address
        self.esmtp_args = {}
        for item in _split_nul(rest):
            keyword_raw, equals, value_raw = item.partition(b"=")
            if not keyword_raw:  # "=x": purepythonmilter takes the whole item as the keyword
                keyword_raw, equals, value_raw = item, b"", b""
            try:
                keyword = keyword_raw.decode("ascii")
            except UnicodeDecodeError as exc:
                raise ProtocolViolationCommandData(
                    f"Could not decode ESMTP keyword {keyword_raw!r}"
                ) from exc
            self.esmtp_args[keyword] = _text(value_raw) if equals else None


class MailFrom(BaseMailFromAndRcptTo):
    """MAIL FROM."""

    command_char = b"M"


class RcptTo(BaseMailFromAndRcptTo):
    """RCPT TO, once per recipient."""

    command_char = b"R"


class Data(BaseCommand):
    """DATA."""

    command_char = b"T"


class Header(BaseCommandWithData):
    """One header: ``name`` (ASCII) and ``text`` (UTF-8, backslash-escaped where invalid)."""

    command_char = b"L"
    name: str
    text: str

    def _decode(self) -> None:
        if not self.data_raw.endswith(b"\x00"):
            raise ProtocolViolationCommandData("Header data should be NUL-terminated")
        items = _split_nul(self.data_raw)
        if len(items) != 2:
            raise ProtocolViolationCommandData(f"Could not decode the header {self.data_raw!r}")
        self.name = items[0].decode("ascii", "backslashreplace")
        self.text = _text(items[1])


class EndOfHeaders(BaseCommand):
    """End of the headers."""

    command_char = b"N"


class BodyChunk(BaseCommandWithData):
    """A piece of the body, in ``data_raw``."""

    command_char = b"B"

    def _decode(self) -> None:
        pass


class EndOfMessage(BaseCommand):
    """End of the message: the hook whose response ends the message."""

    command_char = b"E"


class Abort(BaseCommand):
    """The transaction ended without end-of-message (or the MTA resets after one)."""

    command_char = b"A"
    has_macros = False


class Quit(BaseCommand):
    """The MTA ends the session."""

    command_char = b"Q"
    has_macros = False


class QuitNoClose(BaseCommand):
    """The MTA ends this SMTP client and will send another on the same connection."""

    command_char = b"K"
    has_macros = False


class Unknown(BaseCommandWithData):
    """An SMTP command the MTA does not know: ``data_raw`` without its terminating NUL."""

    command_char = b"U"

    def _decode(self) -> None:
        self.data_raw = self.data_raw.removesuffix(b"\x00")
