"""MTA commands: byte-exact decoding and encoding of every command, and every decode error."""

from __future__ import annotations

import pytest
from unitlib import packet, strings

from milterkit.protocol import (
    Abort,
    ActionFlag,
    AnyCommand,
    Body,
    Connect,
    Data,
    DefineMacro,
    EmptyName,
    EmptyPayload,
    EndOfHeader,
    EndOfMessage,
    Header,
    Helo,
    InvalidAddress,
    Mail,
    MalformedPacket,
    MalformedStage,
    MissingNul,
    Negotiate,
    ProtocolError,
    ProtocolFlag,
    Quit,
    QuitNewConnection,
    Rcpt,
    ShortPayload,
    SocketAddress,
    TrailingData,
    Unknown,
    UnknownCommand,
    UnknownFamily,
    decode_command,
)

ROUND_TRIPS: list[tuple[bytes, AnyCommand]] = [
    (
        packet(b"O", b"\x00\x00\x00\x06\x00\x00\x01\xff\x00\x1f\xff\xff"),
        Negotiate(6, ActionFlag.ALL, ProtocolFlag.ALL),
    ),
    (
        packet(b"O", b"\x00\x00\x00\x02\x00\x00\x00\x01\x00\x00\x00\x00" + b"\x00\x00\x00\x09"),
        Negotiate(2, ActionFlag.ADD_HEADERS, ProtocolFlag.NONE, b"\x00\x00\x00\x09"),
    ),
    (packet(b"D", b"C" + strings(b"j", b"mx.example", b"{daemon_name}", b"smtpd")),
     DefineMacro(b"C", {"j": "mx.example", "{daemon_name}": "smtpd"})),
    (packet(b"D", b"L"), DefineMacro(b"L", {})),
    (packet(b"C", b"mail.example\x004\x00\x19192.0.2.1\0"),
     Connect("mail.example", SocketAddress("4", "192.0.2.1", 25))),
    (packet(b"C", b"[2001:db8::1]\x006\xff\xff2001:db8::1\0"),
     Connect("[2001:db8::1]", SocketAddress("6", "2001:db8::1", 65535))),
    (packet(b"C", b"localhost\x00L\x00\x00/run/smtp.sock\0"),
     Connect("localhost", SocketAddress("L", "/run/smtp.sock", 0))),
    (packet(b"C", b"unknown\x00U"), Connect("unknown", SocketAddress("U"))),
    (packet(b"H", b"client.example\0"), Helo("client.example")),
    (packet(b"M", strings(b"<a@example.org>", b"SIZE=100", b"BODY=8BITMIME")),
     Mail("<a@example.org>", ("SIZE=100", "BODY=8BITMIME"))),
    (packet(b"M", b"<>\0"), Mail("<>")),
    (packet(b"R", strings(b"<b@example.net>", b"NOTIFY=NEVER")),
     Rcpt("<b@example.net>", ("NOTIFY=NEVER",))),
    (packet(b"T"), Data()),
    (packet(b"L", strings(b"Subject", b"hello")), Header("Subject", "hello")),
    (packet(b"L", strings(b"X-Empty", b"")), Header("X-Empty", "")),
    (packet(b"N"), EndOfHeader()),
    (packet(b"B", b"line\r\n\0binary\xff"), Body(b"line\r\n\0binary\xff")),
    (packet(b"E"), EndOfMessage()),
    (packet(b"E", b"tail"), EndOfMessage(b"tail")),
    (packet(b"A"), Abort()),
    (packet(b"Q"), Quit()),
    (packet(b"K"), QuitNewConnection()),
    (packet(b"U", b"XCLIENT foo\0"), Unknown("XCLIENT foo")),
]


@pytest.mark.parametrize(
    ("wire", "command"), ROUND_TRIPS, ids=[f"{w[4:5].decode()}-{i}" for i, (w, _) in
                                           enumerate(ROUND_TRIPS)]
)
def test_decode_and_encode_are_byte_exact(wire: bytes, command: AnyCommand) -> None:
    assert decode_command(wire[4:5], wire[5:]) == command
    assert command.to_bytes() == wire
    assert command.code == wire[4:5]


def test_a_long_ipv6_scope_id_is_decoded_but_not_kept_in_the_address_cache() -> None:
    from milterkit.protocol import commands

    address = "fe80::1%" + "x" * 60000  # a valid address, as long as a packet allows
    commands._cached_ip_version.cache_clear()  # whatever earlier tests parsed
    before = commands._cached_ip_version.cache_info().currsize
    wire = packet(b"C", b"h\x006\x00\x19" + address.encode() + b"\0")
    command = decode_command(b"C", wire[5:])
    assert isinstance(command, Connect)
    assert command.address.address == address
    assert commands._cached_ip_version.cache_info().currsize == before
    # A plain one is kept, so the next connection from it skips the parse.
    decode_command(b"C", packet(b"C", b"h\x004\x00\x19198.51.100.77\0")[5:])
    assert commands._cached_ip_version.cache_info().currsize == before + 1


def test_sendmail_ipv6_prefix_is_stripped_but_kept_raw() -> None:
    wire = packet(b"C", b"[IPv6:2001:db8::5]\x006\x04\x00IPv6:2001:db8::5\0")
    command = decode_command(b"C", wire[5:])
    assert isinstance(command, Connect)
    assert command.address.address == "2001:db8::5"
    assert command.address.raw == "IPv6:2001:db8::5"
    assert command.address.port == 1024
    assert str(command.address.ip) == "2001:db8::5"
    # The raw form goes back on the wire: a Sendmail capture replays byte for byte.
    assert command.to_bytes() == wire


def test_socket_address_str_and_ip() -> None:
    assert str(SocketAddress("4", "192.0.2.1", 25)) == "inet:25@[192.0.2.1]"
    assert str(SocketAddress("6", "::1", 587)) == "inet6:587@[::1]"
    assert str(SocketAddress("L", "/tmp/s")) == "unix:/tmp/s"
    assert str(SocketAddress("U")) == "unknown"
    assert SocketAddress("L", "/tmp/s").ip is None
    assert SocketAddress("U").raw is None


def test_text_is_utf8_with_surrogateescape() -> None:
    command = decode_command(b"L", strings(b"Subject", "héllo".encode() + b" \xff\xfe"))
    assert isinstance(command, Header)
    assert command.value == "héllo \udcff\udcfe"
    assert command.to_bytes() == packet(b"L", strings(b"Subject", "héllo".encode() + b" \xff\xfe"))


def test_macro_odd_string_count_gives_empty_value() -> None:
    command = decode_command(b"D", b"M" + strings(b"i", b"4Q", b"lonely"))
    assert command == DefineMacro(b"M", {"i": "4Q", "lonely": ""})


def test_macro_duplicate_name_last_wins() -> None:
    command = decode_command(b"D", b"M" + strings(b"i", b"1", b"i", b"2"))
    assert command == DefineMacro(b"M", {"i": "2"})


def test_negotiate_keeps_unknown_flag_bits_as_ints() -> None:
    command = decode_command(b"O", b"\x00\x00\x00\x06\x00\x00\x00\x00\x80\x00\x00\x00")
    assert isinstance(command, Negotiate)
    assert int(command.protocol) == 0x80000000
    assert command.actions == ActionFlag.NONE


ERRORS: list[tuple[bytes, bytes, type[ProtocolError], str]] = [
    (b"Z", b"", UnknownCommand, "unknown command byte b'Z'"),
    (b"\x00", b"", UnknownCommand, "unknown command byte b'\\x00'"),
    (b"s", b"", UnknownCommand, "unknown command byte b's'"),
    (b"O", b"", ShortPayload, "OPTNEG packet has 0 payload bytes"),
    (b"O", b"\x00" * 11, ShortPayload, "OPTNEG packet has 11 payload bytes"),
    (b"D", b"", EmptyPayload, "MACRO packet has no payload"),
    (b"D", b"Z", MalformedStage, "unknown stage b'Z'"),
    (b"D", b"Mi\0x", MissingNul, "MACRO packet: last string is not NUL-terminated"),
    (b"D", b"M\0v\0", EmptyName, "empty macro name"),
    (b"C", b"", EmptyPayload, "CONNECT packet has no payload"),
    (b"C", b"host", MissingNul, "host name is not NUL-terminated"),
    (b"C", b"host\0", ShortPayload, "before the address family byte"),
    (b"C", b"host\x00X\x00\x19x\0", UnknownFamily, "unknown address family 'X'"),
    (b"C", b"host\x004\x00", ShortPayload, "inside the port number"),
    (b"C", b"host\x004\x00\x19", MissingNul, "address is not NUL-terminated"),
    (b"C", b"host\x004\x00\x19192.0.2.1", MissingNul, "address is not NUL-terminated"),
    (b"C", b"host\x004\x00\x19192.0.2.1\0x\0", TrailingData, "bytes after the address"),
    (b"C", b"host\x004\x00\x19999.0.2.1\0", InvalidAddress, "'999.0.2.1' is not a valid IPv4"),
    (b"C", b"host\x004\x00\x19::1\0", InvalidAddress, "'::1' is not an IPv4 address"),
    (b"C", b"host\x006\x00\x19192.0.2.1\0", InvalidAddress, "'192.0.2.1' is not an IPv6"),
    (b"C", b"host\x006\x00\x19IPv6:zz\0", InvalidAddress, "'IPv6:zz' is not a valid IPv6"),
    (b"H", b"", EmptyPayload, "HELO packet has no payload"),
    (b"H", b"mx", MissingNul, "HELO packet: last string is not NUL-terminated (2 payload"),
    (b"H", b"mx\0extra\0", TrailingData, "HELO packet carries 2 strings where one is expected"),
    (b"M", b"", EmptyPayload, "MAIL packet has no payload"),
    (b"M", b"<a@b>", MissingNul, "MAIL packet: last string is not NUL-terminated"),
    (b"M", b"\0", EmptyName, "MAIL packet has an empty address"),
    (b"R", b"", EmptyPayload, "RCPT packet has no payload"),
    (b"R", b"\0NOTIFY=NEVER\0", EmptyName, "RCPT packet has an empty address"),
    (b"T", b"x", TrailingData, "DATA packet carries 1 needless payload bytes"),
    (b"L", b"", EmptyPayload, "HEADER packet has no payload"),
    (b"L", b"Subject\0hi", MissingNul, "HEADER packet: last string is not NUL-terminated"),
    (b"L", b"Subject\0", MalformedPacket, "HEADER packet carries 1 strings"),
    (b"L", b"a\0b\0c\0", MalformedPacket, "HEADER packet carries 3 strings"),
    (b"L", b"\0value\0", EmptyName, "HEADER packet has an empty header name"),
    (b"N", b"\0", TrailingData, "END-OF-HEADER packet carries 1 needless"),
    (b"B", b"", EmptyPayload, "BODY packet has no payload"),
    (b"A", b"xy", TrailingData, "ABORT packet carries 2 needless"),
    (b"Q", b"\0", TrailingData, "QUIT packet carries 1 needless"),
    (b"K", b"\0", TrailingData, "QUIT_NC packet carries 1 needless"),
    (b"U", b"", EmptyPayload, "UNKNOWN packet has no payload"),
    (b"U", b"HELP", MissingNul, "UNKNOWN packet: last string is not NUL-terminated"),
]


@pytest.mark.parametrize(
    ("command", "payload", "error", "message"), ERRORS,
    ids=[f"{c!r}-{e.__name__}-{i}" for i, (c, _, e, _) in enumerate(ERRORS)],
)
def test_decode_errors_name_the_problem(
    command: bytes, payload: bytes, error: type[ProtocolError], message: str
) -> None:
    with pytest.raises(error) as info:
        decode_command(command, payload)
    assert type(info.value) is error
    assert message in str(info.value)
    assert info.value.command == command


def test_unknown_family_ignores_trailing_junk_after_u() -> None:
    # libmilter ignores whatever follows the family byte 'U'.
    command = decode_command(b"C", b"host\0Ujunk\0")
    assert command == Connect("host", SocketAddress("U"))


def test_empty_value_and_empty_helo_are_valid() -> None:
    assert decode_command(b"H", b"\0") == Helo("")
    assert decode_command(b"U", b"\0") == Unknown("")
