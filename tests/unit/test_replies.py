"""Milter replies: byte-exact encoding and decoding of every reply, and every decode error."""

from __future__ import annotations

import pytest
from unitlib import packet, strings

from milterkit.protocol import (
    Accept,
    ActionFlag,
    AddHeader,
    AddRecipient,
    AddRecipientWithParameters,
    AnyReply,
    ChangeFrom,
    ChangeHeader,
    ConnectionFailure,
    Continue,
    DeleteRecipient,
    Discard,
    EmptyName,
    EmptyPayload,
    InsertHeader,
    MacroStage,
    MalformedPacket,
    MissingNul,
    NegotiateReply,
    Progress,
    ProtocolError,
    ProtocolFlag,
    Quarantine,
    Reject,
    ReplaceBody,
    ReplyText,
    ShortPayload,
    Shutdown,
    Skip,
    TempFail,
    TrailingData,
    UnknownCommand,
    decode_reply,
)

ROUND_TRIPS: list[tuple[bytes, AnyReply]] = [
    (b"\x00\x00\x00\x01c", Continue()),
    (b"\x00\x00\x00\x01r", Reject()),
    (b"\x00\x00\x00\x01t", TempFail()),
    (b"\x00\x00\x00\x01a", Accept()),
    (b"\x00\x00\x00\x01d", Discard()),
    (b"\x00\x00\x00\x01s", Skip()),
    (b"\x00\x00\x00\x01p", Progress()),
    (b"\x00\x00\x00\x014", Shutdown()),
    (b"\x00\x00\x00\x01f", ConnectionFailure()),
    (
        b"\x00\x00\x00\x0dO\x00\x00\x00\x06\x00\x00\x00\x01\x00\x00\x00\x00",
        NegotiateReply(6, ActionFlag.ADD_HEADERS, ProtocolFlag.NONE),
    ),
    (
        packet(
            b"O",
            b"\x00\x00\x00\x06\x00\x00\x01\x00\x00\x00\x00\x00"
            b"\x00\x00\x00\x01G N U\0"
            b"\x00\x00\x00\x05{i}\0\x00\x00\x00\x06{i}\0",
        ),
        NegotiateReply(
            6, ActionFlag.SET_SYMBOL_LIST, ProtocolFlag.NONE,
            {MacroStage.HELO: "G N U", MacroStage.END_OF_MESSAGE: "{i}",
             MacroStage.END_OF_HEADER: "{i}"},
        ),
    ),
    (b"\x00\x00\x00\x13y550 5.7.1 Go away\0", ReplyText("550 5.7.1 Go away")),
    (packet(b"y", b"550-5.7.1 a\r\n550 5.7.1 b\0"), ReplyText("550-5.7.1 a\r\n550 5.7.1 b")),
    (packet(b"q", b"virus mail!\0"), Quarantine("virus mail!")),
    (packet(b"+", b"<new@example.org>\0"), AddRecipient("<new@example.org>")),
    (packet(b"2", strings(b"<new@example.org>", b"NOTIFY=NEVER")),
     AddRecipientWithParameters("<new@example.org>", "NOTIFY=NEVER")),
    (packet(b"-", b"<old@example.org>\0"), DeleteRecipient("<old@example.org>")),
    (packet(b"e", b"<s@example.org>\0"), ChangeFrom("<s@example.org>")),
    (packet(b"e", strings(b"<s@example.org>", b"RET=HDRS ENVID=x")),
     ChangeFrom("<s@example.org>", "RET=HDRS ENVID=x")),
    (packet(b"h", strings(b"X-Spam", b"no")), AddHeader("X-Spam", "no")),
    (packet(b"h", strings(b"X-Folded", b"a\n\tb")), AddHeader("X-Folded", "a\n\tb")),
    (packet(b"i", b"\x00\x00\x00\x00" + strings(b"X-Top", b"1")), InsertHeader(0, "X-Top", "1")),
    (packet(b"m", b"\x00\x00\x00\x02" + strings(b"Subject", b"")), ChangeHeader(2, "Subject", "")),
    (packet(b"m", b"\xff\xff\xff\xff" + strings(b"X", b"v")), ChangeHeader(0xFFFFFFFF, "X", "v")),
    (packet(b"b", b"new body\r\n"), ReplaceBody(b"new body\r\n")),
    (b"\x00\x00\x00\x01b", ReplaceBody(b"")),
]


@pytest.mark.parametrize(
    ("wire", "reply"), ROUND_TRIPS,
    ids=[f"{w[4:5].decode()}-{i}" for i, (w, _) in enumerate(ROUND_TRIPS)],
)
def test_encode_and_decode_are_byte_exact(wire: bytes, reply: AnyReply) -> None:
    assert reply.to_bytes() == wire
    assert decode_reply(wire[4:5], wire[5:]) == reply
    assert reply.code == wire[4:5]


def test_reply_text_smtp_code() -> None:
    assert ReplyText("451 4.3.0 later").smtp_code == "451"


def test_change_from_with_empty_parameters_sends_one_string() -> None:
    assert ChangeFrom("<a@b>", "").to_bytes() == packet(b"e", b"<a@b>\0")


def test_add_recipient_with_parameters_accepts_one_string_on_decode() -> None:
    assert decode_reply(b"2", b"<a@b>\0") == AddRecipientWithParameters("<a@b>", "")


def test_text_is_surrogateescaped_both_ways() -> None:
    reply = decode_reply(b"h", strings(b"X-Raw", b"\xff\xfeok"))
    assert reply == AddHeader("X-Raw", "\udcff\udcfeok")
    assert reply.to_bytes() == packet(b"h", strings(b"X-Raw", b"\xff\xfeok"))


ERRORS: list[tuple[bytes, bytes, type[ProtocolError], str]] = [
    (b"Z", b"", UnknownCommand, "unknown reply byte b'Z'"),
    (b"l", b"", UnknownCommand, "unknown reply byte b'l'"),
    (b"c", b"\0", TrailingData, "reply b'c' carries 1 payload bytes; it takes none"),
    (b"p", b"xx", TrailingData, "reply b'p' carries 2 payload bytes"),
    (b"O", b"\x00" * 11, ShortPayload, "negotiate reply has 11 payload bytes, needs 12"),
    (b"O", b"\x00" * 12 + b"\x00\x00\x00", ShortPayload, "ends inside a macro list"),
    (b"O", b"\x00" * 12 + b"\x00\x00\x00\x01G", MalformedPacket, "not NUL-terminated"),
    (b"O", b"\x00" * 12 + b"\x00\x00\x00\x07G\0", MalformedPacket, "unknown macro stage 7"),
    (b"y", b"", EmptyPayload, "no payload"),
    (b"y", b"550 no", MissingNul, "not NUL-terminated"),
    (b"y", b"550\0x\0", TrailingData, "reply b'y' carries 2 strings where 1 are expected"),
    (b"q", b"a\0b\0", TrailingData, "reply b'q' carries 2 strings"),
    (b"+", b"", EmptyPayload, "no payload"),
    (b"-", b"x", MissingNul, "not NUL-terminated"),
    (b"2", b"a\0b\0c\0", TrailingData, "carries 3 strings where 1 or 2 are expected"),
    (b"e", b"a\0b\0c\0", TrailingData, "carries 3 strings where 1 or 2 are expected"),
    (b"h", b"X\0", TrailingData, "carries 1 strings where 2 are expected"),
    (b"h", b"\0v\0", EmptyName, "reply b'h' has an empty header name"),
    (b"i", b"\x00\x00\x00", ShortPayload, "reply b'i' ends inside its index"),
    (b"m", b"\x00\x00\x00\x01\0v\0", EmptyName, "reply b'm' has an empty header name"),
    (b"m", b"\x00\x00\x00\x01X\0", TrailingData, "carries 1 strings where 2 are expected"),
]


@pytest.mark.parametrize(
    ("code", "payload", "error", "message"), ERRORS,
    ids=[f"{c!r}-{e.__name__}-{i}" for i, (c, _, e, _) in enumerate(ERRORS)],
)
def test_decode_errors_name_the_problem(
    code: bytes, payload: bytes, error: type[ProtocolError], message: str
) -> None:
    with pytest.raises(error) as info:
        decode_reply(code, payload)
    assert type(info.value) is error
    assert message in str(info.value)
    assert info.value.command == code
