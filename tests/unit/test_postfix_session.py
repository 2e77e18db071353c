"""Whole sessions as real MTAs send them, fed into one context: exact signals, exact bytes.

Postfix sends a ``D`` before every event (empty ones for header and body), an ABORT after every
message and several messages per connection. Sendmail prefixes IPv6 addresses with ``IPv6:`` and
sends no ABORT after an early verdict: the next MAIL comes straight away.
"""

from __future__ import annotations

from typing import Any

import pytest
from unitlib import (
    FULL_PROTOCOL,
    C,
    SignalLog,
    new_context,
    optneg,
    optneg_reply,
    packet,
    stable,
    strings,
    y,
)

from milterkit import ClientContext, Status
from milterkit.protocol import AddHeader, SocketAddress


def macros(stage: bytes, *pairs: bytes) -> bytes:
    return packet(b"D", stage + strings(*pairs))


# One exchange per list item: what the MTA sends, and what the milter must answer (byte-exact).
POSTFIX: list[tuple[bytes, bytes]] = [
    (optneg(6, 0x1FF, FULL_PROTOCOL), optneg_reply(6, 0xFF, 0x400)),
    (macros(b"C", b"j", b"mx.example.org", b"{daemon_name}", b"mx.example.org", b"v",
            b"Postfix 3.7.10") + packet(b"C", b"client.example.net\x004\xc3\x50198.51.100.7\0"),
     C),
    (macros(b"H") + packet(b"H", b"client.example.net\0"), C),
    # Message 1: accepted, one header added at end-of-message.
    (macros(b"M", b"i", b"4QA1", b"{mail_addr}", b"alice@example.net")
     + packet(b"M", strings(b"<alice@example.net>", b"SIZE=321", b"BODY=8BITMIME")), C),
    (macros(b"R", b"{rcpt_addr}", b"bob@example.org")
     + packet(b"R", b"<bob@example.org>\0"), C),
    (macros(b"T") + packet(b"T"), C),
    (macros(b"L") + packet(b"L", strings(b"From", b"Alice <alice@example.net>")), C),
    (macros(b"L") + packet(b"L", strings(b"Subject", b"first\n\tmessage")), C),
    (macros(b"N") + packet(b"N"), C),
    (macros(b"B") + packet(b"B", b"Hello Bob.\r\n"), C),
    (macros(b"E", b"i", b"4QA1") + packet(b"E"),
     packet(b"h", strings(b"X-Scanned", b"4QA1 first\n\tmessage")) + C),
    (packet(b"A"), b""),
    # Message 2: the first recipient is refused with a custom reply, the second accepted.
    (macros(b"M", b"i", b"4QA2", b"{mail_addr}", b"carol@example.net")
     + packet(b"M", b"<carol@example.net>\0"), C),
    (macros(b"R", b"{rcpt_addr}", b"spam@example.org")
     + packet(b"R", b"<spam@example.org>\0"),
     y(b"550 5.7.1 <spam@example.org>: 100%% refused")),
    (macros(b"R", b"{rcpt_addr}", b"bob@example.org")
     + packet(b"R", b"<bob@example.org>\0"), C),
    (macros(b"T") + packet(b"T"), C),
    (macros(b"L") + packet(b"L", strings(b"Subject", b"second")), C),
    (macros(b"N") + packet(b"N"), C),
    (macros(b"B") + packet(b"B", b"Bye.\r\n"), C),
    (macros(b"E", b"i", b"4QA2") + packet(b"E"), C),
    (packet(b"A"), b""),
    (packet(b"Q"), b""),
]

EXPECTED_SIGNALS: list[tuple[str, tuple[Any, ...]]] = [
    ("negotiate", None),  # type: ignore[list-item]  # the Option is checked on its own
    ("define-macro", ("C", {"j": "mx.example.org", "{daemon_name}": "mx.example.org",
                            "v": "Postfix 3.7.10"})),
    ("connect", ("client.example.net", SocketAddress("4", "198.51.100.7", 50000))),
    ("define-macro", ("H", {})),
    ("helo", ("client.example.net",)),
    ("define-macro", ("M", {"i": "4QA1", "{mail_addr}": "alice@example.net"})),
    ("envelope-from", ("<alice@example.net>",)),
    ("define-macro", ("R", {"{rcpt_addr}": "bob@example.org"})),
    ("envelope-recipient", ("<bob@example.org>",)),
    ("define-macro", ("T", {})),
    ("data", ()),
    ("define-macro", ("L", {})),
    ("header", ("From", "Alice <alice@example.net>")),
    ("define-macro", ("L", {})),
    ("header", ("Subject", "first\n\tmessage")),
    ("define-macro", ("N", {})),
    ("end-of-header", ()),
    ("define-macro", ("B", {})),
    ("body", (b"Hello Bob.\r\n",)),
    ("define-macro", ("E", {"i": "4QA1"})),
    ("end-of-message", (b"",)),
    ("message-processed", ((Status.CONTINUE, "<alice@example.net>", ("<bob@example.org>",), 2,
                            12, (AddHeader("X-Scanned", "4QA1 first\n\tmessage"),), None,
                            None),)),
    # No abort: Postfix sends ABORT after every message, but an answered one is complete.
    ("define-macro", ("M", {"i": "4QA2", "{mail_addr}": "carol@example.net"})),
    ("envelope-from", ("<carol@example.net>",)),
    ("define-macro", ("R", {"{rcpt_addr}": "spam@example.org"})),
    ("envelope-recipient", ("<spam@example.org>",)),
    ("define-macro", ("R", {"{rcpt_addr}": "bob@example.org"})),
    ("envelope-recipient", ("<bob@example.org>",)),
    ("define-macro", ("T", {})),
    ("data", ()),
    ("define-macro", ("L", {})),
    ("header", ("Subject", "second")),
    ("define-macro", ("N", {})),
    ("end-of-header", ()),
    ("define-macro", ("B", {})),
    ("body", (b"Bye.\r\n",)),
    ("define-macro", ("E", {"i": "4QA2"})),
    ("end-of-message", (b"",)),
    ("message-processed", ((Status.CONTINUE, "<carol@example.net>",
                            ("<spam@example.org>", "<bob@example.org>"), 1, 6, (), None, None),)),
    ("finished", ()),
]


def postfix_filter(context: ClientContext) -> list[str]:
    """The milter under test: tags message 1 at EOM, refuses one recipient of message 2."""
    subjects: list[str] = []

    def header(ctx: ClientContext, name: str, value: str) -> None:
        if name == "Subject":
            subjects.append(value)

    def recipient(ctx: ClientContext, address: str) -> Status | None:
        if address == "<spam@example.org>":
            assert ctx["rcpt_addr"] == "spam@example.org"
            return ctx.reject("550", "5.7.1", f"{address}: 100% refused")
        return None

    def end(ctx: ClientContext, chunk: bytes) -> None:
        if ctx["i"] == "4QA1":
            ctx.add_header("X-Scanned", f"{ctx['i']} {subjects[-1]}")

    context.connect("header", header)
    context.connect("envelope-recipient", recipient)
    context.connect("end-of-message", end)
    return subjects


def test_postfix_session_exchange_by_exchange() -> None:
    context, wire = new_context()
    log = SignalLog(context)
    postfix_filter(context)
    for number, (sent, answer) in enumerate(POSTFIX):
        context.feed(sent)
        assert wire.take() == answer, f"exchange {number}"
    assert context.finished and context.messages == 2
    events = stable(log.events)
    assert [name for name, _ in events] == [name for name, _ in EXPECTED_SIGNALS]
    assert events[1:] == EXPECTED_SIGNALS[1:]
    (option, _requests) = log.events[0][1]
    assert (option.version, int(option.actions), int(option.protocol)) == (6, 0xFF, 0x400)


@pytest.mark.parametrize("size", [1, 7, 4096])
def test_postfix_session_in_arbitrary_reads(size: int) -> None:
    stream = b"".join(sent for sent, _ in POSTFIX)
    context, wire = new_context()
    log = SignalLog(context)
    postfix_filter(context)
    for start in range(0, len(stream), size):
        context.feed(stream[start : start + size])
    assert wire.data == b"".join(answer for _, answer in POSTFIX)
    assert stable(log.events)[1:] == EXPECTED_SIGNALS[1:]


def test_sendmail_session_ipv6_and_no_abort_after_an_early_reject() -> None:
    context, wire = new_context()
    log = SignalLog(context)
    seen: dict[str, Any] = {}

    def connect(ctx: ClientContext, host: str, address: SocketAddress) -> None:
        seen["ip"] = str(address.ip)

    def sender(ctx: ClientContext, address: str) -> Status | None:
        if address == "<blocked@example.com>":
            ctx.set_reply("553", "5.1.8", "Sender domain refused")
            return Status.REJECT
        return None

    context.connect("connect", connect)
    context.connect("envelope-from", sender)
    exchanges: list[tuple[bytes, bytes]] = [
        (optneg(6, 0x1FF, 0x1FFFFF), optneg_reply(6, 0xFF, 0x400)),
        (macros(b"C", b"j", b"sm.example.com", b"_", b"client [IPv6:2001:db8::25]")
         + packet(b"C", b"[IPv6:2001:db8::25]\x006\x91\x7cIPv6:2001:db8::25\0"), C),
        (macros(b"H", b"{tls_version}", b"TLSv1.3") + packet(b"H", b"client.example.com\0"), C),
        (macros(b"M", b"i", b"x1") + packet(b"M", b"<blocked@example.com>\0"),
         y(b"553 5.1.8 Sender domain refused")),
        # No ABORT: the next MAIL arrives directly and ends the refused transaction itself.
        (macros(b"M", b"i", b"x2") + packet(b"M", b"<ok@example.com>\0"), C),
        (macros(b"R", b"{rcpt_addr}", b"u@example.org") + packet(b"R", b"<u@example.org>\0"),
         C),
        (packet(b"T"), C),
        (packet(b"L", strings(b"Subject", b"hi")), C),
        (packet(b"N"), C),
        (packet(b"B", b"body\r\n"), C),
        (macros(b"E", b"i", b"x2") + packet(b"E"), C),
        (packet(b"Q"), b""),
    ]
    for number, (sent, answer) in enumerate(exchanges):
        context.feed(sent)
        assert wire.take() == answer, f"exchange {number}"

    assert context.address == SocketAddress("6", "2001:db8::25", 37244, "IPv6:2001:db8::25")
    assert seen["ip"] == "2001:db8::25"
    names = log.names
    second_mail = names.index("envelope-from", names.index("envelope-from") + 1)
    # The new MAIL ends the refused transaction; a rejected message is complete, so no abort
    # (milter-manager's contract and libmilter's rule).
    assert names[second_mail - 1 : second_mail + 1] == ["define-macro", "envelope-from"]
    assert "abort" not in names
    assert context.message_result is None
    assert names.count("message-processed") == 1
    assert names[-2:] == ["message-processed", "finished"]
