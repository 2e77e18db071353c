"""The 25 edge cases of the protocol reference (Part 4), one test each, in the reference's order.

Each test asserts the behaviour milterkit chose: never a hang, never a reply the MTA does not
read, a :class:`~milterkit.protocol.ProtocolError` (after ``error``, ``abort`` if a message was
open, and ``finished``) where the MTA broke the protocol.
"""

from __future__ import annotations

from typing import Any

import pytest
from unitlib import (
    FULL_PROTOCOL,
    C,
    P,
    R,
    SignalLog,
    Wire,
    full_session,
    negotiated,
    new_context,
    optneg,
    optneg_reply,
    packet,
    stable,
    strings,
    y,
)

from milterkit import ClientContext, MacroStage, State, Status
from milterkit.protocol import (
    ActionFlag,
    Continue,
    EmptyName,
    EmptyPayload,
    InvalidAddress,
    MissingNul,
    NegotiationError,
    PacketDecoder,
    PacketTooLarge,
    ProtocolError,
    ProtocolFlag,
    ShortPayload,
    SocketAddress,
    TrailingData,
    UnexpectedCommand,
    UnknownCommand,
    UnknownFamily,
    ZeroLengthPacket,
    decode_reply,
)

PF = ProtocolFlag
AF = ActionFlag
CONNECT = packet(b"C", b"client.example\x004\x00\x19192.0.2.7\0")
HELO = packet(b"H", b"client.example\0")
MAIL = packet(b"M", b"<a@example.org>\0")
RCPT = packet(b"R", b"<b@example.net>\0")
#: Up to an open transaction (RCPT answered).
OPEN_MESSAGE = CONNECT + HELO + MAIL + RCPT
TEMPFAIL_TEXT = y(b"451 4.3.0 Temporary failure in the mail filter")


def _ready(**kwargs: Any) -> tuple[ClientContext, Wire, SignalLog]:
    """A negotiated context with a signal log (every event handled, so no step is skipped)."""
    context, wire = new_context(**kwargs)
    log = SignalLog(context)
    negotiated(context, wire)
    log.take()
    return context, wire, log


def _run(chunks: list[bytes]) -> tuple[list[tuple[str, tuple[Any, ...]]], bytes]:
    context, wire = new_context()
    log = SignalLog(context)
    for chunk in chunks:
        context.feed(chunk)
    return stable(log.events), wire.data


def test_edge_01_packet_split_across_reads() -> None:
    stream = full_session()
    reference = _run([stream])
    assert reference[1].count(C) == 11
    # The length prefix cut at every offset 1..3, the command byte alone, then the rest.
    second = len(optneg())
    for cut in (1, 2, 3, 4, 5):
        at = second + cut
        assert _run([stream[:at], stream[at:]]) == reference
    # One byte per read, the whole conversation.
    assert _run([stream[i : i + 1] for i in range(len(stream))]) == reference


def test_edge_02_many_packets_in_one_read() -> None:
    context, wire, log = _ready()
    context.feed(packet(b"D", b"C" + strings(b"j", b"mx")) + CONNECT)
    assert log.names == ["define-macro", "connect"]
    assert wire.take() == C

    # With NR_HDR the MTA streams every header without waiting: one read, replies only for N.
    context, wire = new_context(protocol=PF.NO_REPLY_HEADER)
    headers: list[tuple[str, str]] = []
    context.connect("header", lambda _c, name, value: headers.append((name, value)))
    assert negotiated(context, wire) == optneg_reply(6, 0xFF, 0x80)
    context.feed(OPEN_MESSAGE + packet(b"T"))
    assert wire.take() == C * 5
    burst = b"".join(
        packet(b"D", b"L") + packet(b"L", strings(b"X-N", b"%d" % n)) for n in range(1000)
    )
    context.feed(burst + packet(b"N"))
    assert headers == [("X-N", str(n)) for n in range(1000)]
    assert wire.take() == C

    # The whole conversation in one buffer: replies in order, one per replying command.
    events, written = _run([full_session()])
    assert written == optneg_reply(6, 0xFF, 0x400) + C * 11
    # Postfix's ABORT after the answered message emits no abort: the message was complete.
    assert [name for name, _ in events][-3:] == [
        "end-of-message", "message-processed", "finished"
    ]


def test_edge_03_zero_length_frame() -> None:
    context, wire, log = _ready()
    context.feed(OPEN_MESSAGE)
    wire.take()
    log.take()
    with pytest.raises(ZeroLengthPacket, match="length 0"):
        context.feed(b"\x00\x00\x00\x00" + packet(b"T"))
    assert wire.data == b""
    assert log.names == ["error", "abort", "finished"]
    assert isinstance(log.events[0][1][0], ZeroLengthPacket)
    assert log.events[1][1] == (State.ENVELOPE_RECIPIENT_REPLIED,)
    assert context.finished
    # The context stays closed: more bytes are refused, nothing is dispatched.
    with pytest.raises(UnexpectedCommand, match="after the session finished"):
        context.feed(packet(b"T"))
    assert log.names == ["error", "abort", "finished"]


def test_edge_04_length_over_limit() -> None:
    # Checked from the prefix alone: nothing of the claimed 2 GiB is waited for or allocated.
    decoder = PacketDecoder()
    with pytest.raises(PacketTooLarge):
        decoder.feed((2**31 - 1).to_bytes(4, "big"))
    assert decoder.buffered == 0

    context, wire, log = _ready()
    with pytest.raises(PacketTooLarge) as info:
        context.feed((2**31 - 1).to_bytes(4, "big"))
    assert info.value.length == 2**31 - 2
    assert log.names == ["error", "finished"]
    assert wire.data == b""

    # libmilter-strict 64 KiB mode refuses 65536; the default takes Postfix's 100 KiB header.
    strict, strict_wire, _ = _ready(max_payload=65535)
    with pytest.raises(PacketTooLarge, match="65536"):
        strict.feed(b"\x00\x01\x00\x01B")
    assert strict_wire.data == b""
    roomy, roomy_wire, roomy_log = _ready()
    roomy.feed(OPEN_MESSAGE + packet(b"T"))
    roomy_wire.take()
    big = "x" * (100 * 1024)
    roomy.feed(packet(b"L", strings(b"X-Big", big.encode())))
    assert roomy_log.events[-1] == ("header", ("X-Big", big))
    assert roomy_wire.data == C


def test_edge_05_empty_payload_where_one_is_required() -> None:
    for command in b"BLHMRCDOU":
        context, wire = new_context()
        log = SignalLog(context)
        # O and D are checked on a fresh connection; the others inside an open message.
        if command not in b"OD":
            context.feed(optneg() + OPEN_MESSAGE + packet(b"T"))
            assert wire.take().count(C) == 5
        expected: type[ProtocolError] = ShortPayload if command == ord("O") else EmptyPayload
        with pytest.raises(expected):
            context.feed(packet(bytes([command])))
        assert wire.data == b"", chr(command)
        assert log.names[-1] == "finished"
        assert context.finished

    # The commands that carry nothing are normal with an empty payload.
    context, wire = new_context()
    context.feed(
        optneg() + OPEN_MESSAGE + packet(b"T") + packet(b"N") + packet(b"E") + packet(b"A")
        + packet(b"K") + packet(b"Q")
    )
    assert context.finished and context.state is State.FINISHED


def test_edge_06_unknown_command_byte() -> None:
    for byte in (b"Z", b"\x00", b"s"):
        context, wire, log = _ready()
        context.feed(OPEN_MESSAGE)
        wire.take()
        log.take()
        with pytest.raises(UnknownCommand) as info:
            context.feed(packet(byte) + packet(b"T"))
        assert info.value.command == byte
        assert wire.data == b""  # never a reply, not even 'c'
        assert log.names == ["error", "abort", "finished"]


def test_edge_07_missing_nul_terminators() -> None:
    cases: list[tuple[bytes, bytes, type[ProtocolError]]] = [
        (b"H", b"client.example", MissingNul),
        (b"L", b"Subject\0no terminator", MissingNul),
        (b"L", b"\0value\0", EmptyName),
        (b"M", b"<a@example.org>", MissingNul),
        (b"R", b"<b@example.net>", MissingNul),
        (b"C", b"host\x004\x00\x19192.0.2.1", MissingNul),
    ]
    for command, payload, error in cases:
        context, wire, log = _ready()
        if command in b"LR":
            context.feed(OPEN_MESSAGE + packet(b"T"))
        wire.take()
        log.take()
        with pytest.raises(error):
            context.feed(packet(command, payload))
        assert wire.data == b"", command
        assert log.names[0] == "error" and log.names[-1] == "finished"
        assert context.finished
    # An empty value is valid.
    context, wire, log = _ready()
    context.feed(OPEN_MESSAGE + packet(b"T"))
    wire.take()
    context.feed(packet(b"L", b"X-Empty\0\0"))
    assert log.events[-1] == ("header", ("X-Empty", ""))
    assert wire.data == C


def _connect(payload: bytes) -> SocketAddress:
    context, wire, log = _ready()
    context.feed(packet(b"C", payload))
    assert wire.data == C
    (name, (hostname, address)), = log.events
    assert name == "connect" and hostname == "h" == context.hostname
    assert context.address == address
    assert isinstance(address, SocketAddress)
    return address


def test_edge_08_connect_variants() -> None:
    assert _connect(b"h\0U") == SocketAddress("U")
    assert _connect(b"h\0Ujunk") == SocketAddress("U")
    assert _connect(b"h\x004\x00\x00192.0.2.1\0") == SocketAddress("4", "192.0.2.1", 0)
    assert _connect(b"h\x004\xff\xff192.0.2.1\0").port == 65535
    bare = _connect(b"h\x006\x00\x192001:db8::1\0")
    assert (bare.address, bare.raw) == ("2001:db8::1", "2001:db8::1")
    for prefix in (b"IPv6:", b"ipv6:"):
        sendmail = _connect(b"h\x006\x00\x19" + prefix + b"2001:db8::1\0")
        assert sendmail.address == "2001:db8::1"
        assert sendmail.raw == prefix.decode() + "2001:db8::1"
    long_form = "2001:0db8:0000:0000:0000:0000:0000:0001"
    full = _connect(b"h\x006\x00\x19" + long_form.encode() + b"\0")
    assert full.address == long_form and str(full.ip) == "2001:db8::1"
    mapped = _connect(b"h\x006\x00\x19::ffff:192.0.2.1\0")
    assert mapped.ip is not None and mapped.ip.version == 6
    path = "/var/spool/" + "p" * 189
    assert len(path) == 200
    # No sockaddr is built, so a path over sun_path's 108 bytes is just text: accepted.
    assert _connect(b"h\0L\x00\x00" + path.encode() + b"\0") == SocketAddress("L", path, 0)

    for payload, error in [
        (b"h\0X\x00\x19x\0", UnknownFamily),
        (b"h\x004\x00\x19not-an-ip\0", InvalidAddress),
        (b"h\x006\x00\x19192.0.2.1\0", InvalidAddress),
    ]:
        context, wire, log = _ready()
        with pytest.raises(error):
            context.feed(packet(b"C", payload))
        assert wire.data == b""
        assert log.names == ["error", "finished"]


def test_edge_09_optneg_variants() -> None:
    def answer(payload: bytes, **kwargs: Any) -> bytes:
        context, wire = new_context(**kwargs)
        context.feed(packet(b"O", payload))
        return wire.data

    def offer(version: int, actions: int, protocol: int) -> bytes:
        return version.to_bytes(4, "big") + actions.to_bytes(4, "big") + protocol.to_bytes(4, "big")

    nothing_skipped = PF.NO_CONNECT | PF.NO_HELO | PF.NO_ENVELOPE_FROM | PF.NO_ENVELOPE_RECIPIENT
    for version, expected in [(2, 2), (3, 3), (4, 4), (6, 6), (7, 6)]:
        assert answer(offer(version, 0x1FF, FULL_PROTOCOL), protocol=PF.NONE) == optneg_reply(
            expected, 0xFF, 0
        )
    # Zero masks mean the version-1 defaults: actions 0x0F, protocol 0x3F.
    assert answer(offer(6, 0, 0), protocol=nothing_skipped) == optneg_reply(6, 0x0F, 0x0F)
    # 16 bytes: the extra four are ignored; MDS bits offered are never echoed.
    assert answer(
        offer(6, 0x1FF, PF.MDS_1M | PF.NO_HELO) + b"\0\0\0\0", protocol=PF.NO_HELO | PF.MDS_1M
    ) == optneg_reply(6, 0xFF, 0x02)
    # NR not offered: emulated (left out); SKIP not offered: dropped; reply within the offer.
    assert answer(
        offer(6, 0x1FF, PF.NO_HELO), protocol=PF.NO_REPLY_HEADER | PF.SKIP | PF.NO_HELO
    ) == optneg_reply(6, 0xFF, 0x02)

    for payload, kwargs, error in [
        (b"\x00" * 11, {}, ShortPayload),
        (offer(1, 0x1FF, 0), {}, NegotiationError),
        (offer(6, AF.ADD_HEADERS, 0), {"actions": AF.CHANGE_BODY}, NegotiationError),
    ]:
        context, wire = new_context(**kwargs)
        log = SignalLog(context, ["error", "finished"])
        with pytest.raises(error):
            context.feed(packet(b"O", payload))
        assert wire.data == b"", "no bogus O reply"
        assert log.names == ["error", "finished"]


def test_edge_10_macro_lists_in_the_optneg_reply() -> None:
    requests = {MacroStage.HELO: ["G", "N", "U"], MacroStage.END_OF_MESSAGE: ["{i}"]}
    context, wire = new_context(macro_requests=requests, protocol=PF.NONE)
    context.feed(optneg())
    # Stage numbers as libmilter defines them: EOM is 5, EOH 6 and comes along with EOM.
    assert wire.data == optneg_reply(
        6, 0x1FF, 0, [(1, b"G N U"), (5, b"{i}"), (6, b"{i}")]
    )
    # Without SETSYMLIST in the offer, no lists and no SETSYMLIST bit.
    context, wire = new_context(macro_requests=requests, protocol=PF.NONE)
    context.feed(optneg(actions=AF.V2))
    assert wire.data == optneg_reply(6, 0x3F, 0)


def test_edge_11_define_macro_edge_cases() -> None:
    context, wire = new_context()
    log = SignalLog(context)
    context.feed(optneg())
    wire.take()
    # D for a later stage before C: stored, then cleared by C.
    context.feed(packet(b"D", b"E" + strings(b"early", b"1")))
    assert context["early"] == "1"
    context.feed(packet(b"D", b"C" + strings(b"j", b"mx", b"{x}", b"braced")) + CONNECT)
    assert context["early"] is None
    assert context["x"] == context["{x}"] == "braced"
    # Stages Postfix and others send that have no command of their own: accepted, no reply.
    context.feed(HELO + MAIL + RCPT + packet(b"T"))
    wire.take()
    for stage in b"LBUA":
        context.feed(packet(b"D", bytes([stage]) + strings(b"s", b"v")))
    context.feed(packet(b"D", b"L"))  # only the stage byte: an empty list
    assert wire.data == b""
    assert log.events[-1] == ("define-macro", ("L", {}))
    # Odd count, duplicates, shadowing.
    context.feed(packet(b"D", b"N" + strings(b"dup", b"1", b"dup", b"2", b"lonely")))
    assert context["dup"] == "2" and context["lonely"] == ""
    context.feed(packet(b"D", b"E" + strings(b"j", b"shadow")))
    assert context["j"] == "shadow"
    context.feed(packet(b"N"))
    # H clears every later stage; M and R those after them; A the message's; K everything.
    context.feed(packet(b"D", b"M" + strings(b"i", b"4Q")) + MAIL)
    assert context["i"] == "4Q"
    context.feed(packet(b"D", b"H" + strings(b"h", b"1")) + HELO)
    assert (context["i"], context["h"], context["j"]) == (None, "1", "mx")
    context.feed(packet(b"D", b"M" + strings(b"i", b"5Q")) + MAIL + packet(b"A"))
    assert (context["i"], context["h"]) == (None, "1")
    context.feed(packet(b"K"))
    assert (context["j"], context["h"]) == (None, None)
    assert len(context.macros) == 0
    assert b"".join(wire.writes).count(C) == len(wire.writes)


def test_edge_12_body_before_headers() -> None:
    # Straight from RCPT to BODY, and from DATA to BODY with no header: accepted, answered.
    for between in (b"", packet(b"T")):
        context, wire, log = _ready()
        context.feed(OPEN_MESSAGE + between)
        wire.take()
        log.take()
        context.feed(packet(b"B", b"body") + packet(b"E"))
        assert log.names[:3] == ["body", "end-of-message", "message-processed"]
        assert wire.data == C + C


def test_edge_13_end_of_message_without_body() -> None:
    context, wire, log = _ready()
    context.feed(OPEN_MESSAGE + packet(b"T") + packet(b"N"))
    wire.take()
    log.take()
    context.feed(packet(b"E"))
    assert log.events[0] == ("end-of-message", (b"",))
    assert wire.take() == C

    # Straight after RCPT (content steps opted out).
    context, wire = new_context()
    seen: list[bytes] = []
    context.connect("end-of-message", lambda _c, chunk: seen.append(chunk))
    assert negotiated(context, wire) == optneg_reply(6, 0xFF, 0x37F | 0x400)
    context.feed(OPEN_MESSAGE + packet(b"E"))
    assert seen == [b""]

    # E carrying data: the chunk goes to end-of-message (not re-emitted as a body chunk) and
    # counts in the message's body size.
    context, wire, log = _ready()
    sizes: list[int] = []
    context.connect("message-processed", lambda _c, result: sizes.append(result.body_size))
    context.feed(OPEN_MESSAGE + packet(b"B", b"12345") + packet(b"E", b"tail"))
    assert ("end-of-message", (b"tail",)) in log.events
    assert [n for n, _ in log.events].count("body") == 1
    assert sizes == [9]


def test_edge_14_end_of_message_reply_sequences() -> None:
    context, wire, _ = _ready()
    big = bytes(range(256)) * 300  # 76800 bytes: two 'b' packets

    def end(ctx: ClientContext, chunk: bytes) -> None:
        ctx.replace_body(big)
        ctx.add_header("X-A", "1")
        ctx.progress()
        ctx.change_header("Subject", 1, "new")
        ctx.add_recipient("<c@example.net>")

    context.connect("end-of-message", end)
    context.feed(OPEN_MESSAGE)
    wire.take()
    context.feed(packet(b"E"))
    # 'p' goes out at once; the changes wait for the verdict; every 'b' is last and contiguous.
    assert wire.writes[0] == P
    assert wire.writes[1] == (
        packet(b"h", strings(b"X-A", b"1"))
        + packet(b"m", b"\x00\x00\x00\x01" + strings(b"Subject", b"new"))
        + packet(b"+", b"<c@example.net>\0")
        + packet(b"b", big[:65535])
        + packet(b"b", big[65535:])
        + C  # 'c' at end-of-message is the accept verdict
    )

    # A modification that was not negotiated is refused locally: the exception policy answers.
    context, wire = new_context(actions=AF.ADD_HEADERS)
    errors = SignalLog(context, ["error"])

    def not_negotiated(ctx: ClientContext, chunk: bytes) -> None:
        ctx.add_header("X-Fine", "1")
        ctx.replace_body(b"x")

    context.connect("end-of-message", not_negotiated)
    context.feed(optneg() + OPEN_MESSAGE)
    wire.take()
    context.feed(packet(b"E"))
    assert wire.data == TEMPFAIL_TEXT  # the queued 'h' was dropped with the failed message
    ((_name, (error,)),) = errors.events
    assert "replace_body needs the CHANGE_BODY action, which was not negotiated" in str(error)


def test_edge_15_abort_mid_message_then_a_new_message() -> None:
    for content in (b"", packet(b"T") + packet(b"L", strings(b"A", b"b")),
                    packet(b"T") + packet(b"N") + packet(b"B", b"x")):
        context, wire, log = _ready()
        context.feed(CONNECT + HELO + packet(b"D", b"M" + strings(b"i", b"Q1")) + MAIL + RCPT
                     + content)
        assert context["i"] == "Q1"
        context.private = "mine"
        context.shelf["k"] = "v"
        state = context.state
        written = wire.take()
        log.take()
        context.feed(packet(b"A"))
        assert wire.data == b""
        assert log.events == [("abort", (state,))]
        assert context["i"] is None
        # The shelf is the message's; private data is the connection's.
        assert context.get_private() == "mine" and context.shelf == {}
        assert context.message_result is None and not context.in_message_processing
        context.feed(MAIL)
        assert log.names[-1] == "envelope-from"
        assert wire.data == C
        assert written.count(C) == len(written) // 5


def test_edge_16_abort_outside_a_transaction() -> None:
    context, wire, log = _ready()
    context.feed(CONNECT + HELO)
    wire.take()
    log.take()
    # After HELO (Postfix after STARTTLS) no message is open: no abort (libmilter's rule).
    context.feed(packet(b"A"))
    assert log.take() == []
    context.feed(MAIL + RCPT + packet(b"E"))
    wire.take()
    log.take()
    # After EOM, twice, then QUIT: the message was complete, so no abort and never a reply.
    context.feed(packet(b"A") + packet(b"A") + packet(b"Q"))
    assert log.names == ["finished"]
    assert wire.data == b""


def test_edge_17_new_mail_without_abort() -> None:
    context, wire, log = _ready()
    context.feed(OPEN_MESSAGE + packet(b"T") + packet(b"L", strings(b"A", b"b")))
    wire.take()
    log.take()
    next_mail = packet(b"M", b"<next@example.org>\0")
    context.feed(packet(b"D", b"M" + strings(b"i", b"NEXT")) + next_mail)
    assert log.events[1:] == [
        ("abort", (State.HEADER_REPLIED,)),
        ("envelope-from", ("<next@example.org>",)),
    ]
    assert wire.data == C
    assert context["i"] == "NEXT"  # the synthetic abort keeps the new MAIL's macros
    result = context.message_result
    assert result is not None and result.envelope_from == "<next@example.org>"
    assert result.header_count == 0


def test_edge_18_quit_new_connection_reuse() -> None:
    context, wire, log = _ready()
    context.connection_data["seen"] = True
    context.feed(packet(b"D", b"C" + strings(b"j", b"mx")) + OPEN_MESSAGE)
    option = context.option
    wire.take()
    log.take()
    # K mid-message: the message is aborted, the client forgotten, nothing written.
    context.feed(packet(b"K"))
    assert log.names == ["abort", "reset"]
    assert wire.data == b""
    assert (context.hostname, context.address, context.helo_name) == (None, None, None)
    assert context.connection_data == {} and len(context.macros) == 0
    assert not context.finished
    # A new client, no new OPTNEG: accepted with the negotiated options kept.
    context.feed(packet(b"C", b"second\x004\x00\x19192.0.2.8\0"))
    assert log.events[-1][0] == "connect" and context.hostname == "second"
    assert context.option == option
    assert wire.take() == C
    # K then U is legal; K then MAIL (libmilter would recover as from HELO) is accepted too.
    context.feed(packet(b"K") + packet(b"U", b"NOOP\0") + packet(b"K") + MAIL)
    assert log.names[-3:] == ["unknown", "reset", "envelope-from"]
    assert wire.data == C + C
    # A second CONNECT without K is refused.
    context.feed(packet(b"K") + CONNECT)
    with pytest.raises(UnexpectedCommand, match="second CONNECT"):
        context.feed(CONNECT)


def test_edge_19_eof_without_quit() -> None:
    context, wire, log = _ready()
    context.feed(OPEN_MESSAGE + b"\x00\x00\x00\x05Hpar")  # a partial packet is in flight
    wire.take()
    log.take()
    context.connection_lost()
    assert log.events == [("abort", (State.ENVELOPE_RECIPIENT_REPLIED,)), ("finished", ())]
    context.connection_lost()
    assert log.names == ["abort", "finished"]
    assert wire.data == b"" and context.finished
    # Right after an accept at CONNECT (Postfix closes at once): only finished, no error.
    context, wire, log = _ready()
    context.connect("connect", lambda _c, *_a: Status.ACCEPT)
    context.feed(CONNECT)
    context.connection_lost()
    assert log.names == ["connect", "finished"]
    assert wire.data == b"\x00\x00\x00\x01a"


def test_edge_20_no_reply_correctness() -> None:
    # Negotiated NR_HDR: a verdict from the header handler is sent as NO_REPLY (libmilter's
    # rule), nothing is written, and the next command (pipelined by the MTA) is processed.
    context, wire = new_context(protocol=PF.NO_REPLY_HEADER)
    errors = SignalLog(context, ["error", "end-of-header", "header-response"])
    context.connect("header", lambda _c, name, value: Status.REJECT)
    negotiated(context, wire)
    context.feed(OPEN_MESSAGE + packet(b"T"))
    wire.take()
    context.feed(packet(b"L", strings(b"Subject", b"x")) + packet(b"N"))
    assert wire.data == C
    assert errors.events == [("header-response", (Status.NO_REPLY,)), ("end-of-header", ())]

    # The MTA does not know NR (version-2 era offer): milterkit answers 'c' for NO_REPLY.
    context, wire = new_context(protocol=PF.NO_REPLY_HEADER)
    context.connect("header", lambda _c, name, value: Status.NO_REPLY)
    assert negotiated(context, wire, protocol=PF.V2) == optneg_reply(6, 0xFF, 0)
    context.feed(OPEN_MESSAGE + packet(b"T") + packet(b"L", strings(b"Subject", b"x")))
    assert wire.data == C * 6

    # NO_REPLY where no NR step was requested at all is a milter bug: the policy answers.
    context, wire = new_context()
    context.connect("helo", lambda _c, fqdn: Status.NO_REPLY)
    negotiated(context, wire)
    context.feed(CONNECT + HELO)
    assert wire.data == C + TEMPFAIL_TEXT


def test_edge_21_second_optneg_and_command_before_optneg() -> None:
    context, wire, log = _ready()
    with pytest.raises(UnexpectedCommand, match="second OPTNEG"):
        context.feed(optneg())
    assert wire.data == b"" and log.names == ["error", "finished"]

    context, wire = new_context()
    log = SignalLog(context)
    context.feed(packet(b"D", b"M" + strings(b"i", b"x")))  # macros before O are fine
    with pytest.raises(UnexpectedCommand, match="Mail command arrived before option negotiation"):
        context.feed(MAIL)
    assert wire.data == b""
    assert log.names == ["define-macro", "error", "finished"]


def test_edge_22_reply_code_validation() -> None:
    context, wire, log = _ready()
    replies: list[Any] = []

    def rcpt(ctx: ClientContext, recipient: str) -> Status:
        if recipient == "<mismatch@x>":
            ctx.set_reply("450", "4.2.0", "text of the wrong class")
            return Status.REJECT  # milterkit raises instead of silently sending plain 'r'
        if recipient == "<class@x>":
            replies.append(ctx.set_reply("550", "4.7.1", "x"))  # raises ReplyError
        if recipient == "<pct@x>":
            return ctx.reject("550", "5.7.1", "100% sure\nsecond line")
        return ctx.temporary_failure("421", "4.7.0", "closing")

    context.connect("envelope-recipient", rcpt)
    context.feed(CONNECT + HELO + MAIL)
    wire.take()
    log.take()
    context.feed(packet(b"R", b"<pct@x>\0"))
    assert wire.take() == y(b"550-5.7.1 100%% sure\r\n550 5.7.1 second line")
    context.feed(packet(b"R", b"<421@x>\0"))
    assert wire.take() == y(b"421 4.7.0 closing")
    context.feed(packet(b"R", b"<mismatch@x>\0"))
    assert wire.take() == TEMPFAIL_TEXT
    context.feed(packet(b"R", b"<class@x>\0"))
    assert wire.take() == TEMPFAIL_TEXT
    assert replies == []
    errors = [args[0] for name, args in log.events if name == "error"]
    assert "reply 450 does not fit REJECT" in str(errors[0])
    assert "has class 4, but reply code '550' has class 5" in str(errors[1])
    # A reply is used once: the next plain REJECT sends 'r'.
    context.disconnect("envelope-recipient", rcpt)
    context.connect("envelope-recipient", lambda _c, _r: Status.REJECT)
    context.feed(RCPT)
    assert wire.take() == R


def test_edge_23_stage_legality_of_replies() -> None:
    def answer(signal: str, handler: Any, feed: bytes, **kwargs: Any) -> tuple[bytes, str]:
        context, wire = new_context(**kwargs)
        errors = SignalLog(context, ["error"])
        context.signals.connect(signal, handler)
        negotiated(context, wire)
        context.feed(feed)
        message = str(errors.events[0][1][0]) if errors.events else ""
        return wire.data, message

    data, message = answer("connect", lambda _c, *_a: Status.DISCARD, CONNECT)
    assert data == TEMPFAIL_TEXT and "DISCARD is not a valid status for connect" in message
    data, message = answer("helo", lambda _c, _h: Status.SKIP, CONNECT + HELO)
    assert data == C + TEMPFAIL_TEXT and "SKIP is not a valid status for helo" in message
    data, message = answer("unknown", lambda _c, _u: Status.ACCEPT,
                           CONNECT + packet(b"U", b"X\0"))
    assert data == C + TEMPFAIL_TEXT and "ACCEPT is not a valid status for unknown" in message
    # SKIP at body only when negotiated (the MTA offers it here, the milter did not ask).
    data, message = answer("body", lambda _c, _b: Status.SKIP,
                           OPEN_MESSAGE + packet(b"B", b"x"), protocol=PF.NONE)
    assert data.endswith(TEMPFAIL_TEXT) and "SKIP needs the SKIP protocol step" in message
    data, _ = answer("body", lambda _c, _b: Status.SKIP, OPEN_MESSAGE + packet(b"B", b"x"))
    assert data == C * 4 + b"\x00\x00\x00\x01s"

    def early(ctx: ClientContext, *_a: Any) -> None:
        ctx.quarantine("too early")

    data, message = answer("envelope-from", early, CONNECT + HELO + MAIL)
    assert data == C + C + TEMPFAIL_TEXT
    assert "quarantine can only be done at end-of-message, not in state 'envelope-from'" in message

    # progress() before EOM is allowed (Postfix takes it) and writes 'p' then the reply.
    data, _ = answer("helo", lambda ctx, _h: ctx.progress(), CONNECT + HELO)
    assert data == C + P + C
    # The 'c' verdict carries no payload, and an MTA-side decoder refuses one that does.
    assert Continue().to_bytes() == b"\x00\x00\x00\x01c"
    with pytest.raises(TrailingData):
        decode_reply(b"c", b"\0")


def test_edge_24_empty_replacement_body() -> None:
    context, wire, _ = _ready()
    context.connect("end-of-message", lambda ctx, _chunk: ctx.replace_body(b""))
    context.feed(OPEN_MESSAGE + packet(b"B", b"old"))
    wire.take()
    context.feed(packet(b"E"))
    assert wire.data == b"\x00\x00\x00\x01b" + C


def test_edge_25_header_value_fidelity() -> None:
    context, wire, log = _ready()
    context.feed(OPEN_MESSAGE + packet(b"T"))
    wire.take()
    raw_values = [
        b"first line\n\tsecond line\n third",  # folded with bare LF, as both MTAs send
        b"\tTAB-led, no space stripped",
        b" leading space kept as sent",
        "UTF-8 \u00e9\u4e2d".encode(),
        b"invalid \xff\xfe\xc3(",
    ]
    for raw in raw_values:
        context.feed(packet(b"L", strings(b"X-Test", raw)))
    values = [args[1] for name, args in log.events if name == "header"]
    assert [v.encode("utf-8", "surrogateescape") for v in values] == raw_values
    assert values[4] == "invalid \udcff\udcfe\udcc3("

    def end(ctx: ClientContext, _chunk: bytes) -> None:
        for value in values:
            ctx.add_header("X-Copy", value)
        ctx.change_header("X-Test", 0xFFFFFFFF, values[4])
        for bad in ("", "Bad Name", "Bad:Name", "X-\u00e9\0"):
            with pytest.raises(ValueError, match="header name"):
                ctx.add_header(bad, "v")
        with pytest.raises(ValueError, match="CR"):
            ctx.add_header("X-CR", "a\r\n b")
        for index in (0, 2**32):
            with pytest.raises(ValueError, match="header index"):
                ctx.change_header("X-Test", index, "v")

    context.connect("end-of-message", end)
    wire.take()
    context.feed(packet(b"E"))
    # Byte-exact back on the wire: surrogates become the original bytes, LF folding stays.
    assert wire.data == b"".join(
        packet(b"h", strings(b"X-Copy", raw)) for raw in raw_values
    ) + packet(b"m", b"\xff\xff\xff\xff" + strings(b"X-Test", raw_values[4])) + C
