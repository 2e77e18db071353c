"""Property tests: any split of a session gives the same result; junk only ever raises
:class:`~milterkit.protocol.ProtocolError`; every command and reply survives encode/decode."""

from __future__ import annotations

import itertools
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from unitlib import SignalLog, full_session, new_context, optneg, packet, stable, strings

from milterkit import ClientContext, Status
from milterkit.protocol import (
    Abort,
    Accept,
    ActionFlag,
    AddHeader,
    AddRecipient,
    AddRecipientWithParameters,
    AnyCommand,
    AnyReply,
    Body,
    ChangeFrom,
    ChangeHeader,
    Connect,
    ConnectionFailure,
    Continue,
    Data,
    DefineMacro,
    DeleteRecipient,
    Discard,
    EndOfHeader,
    EndOfMessage,
    Header,
    Helo,
    InsertHeader,
    MacroStage,
    Mail,
    Negotiate,
    NegotiateReply,
    PacketDecoder,
    Progress,
    ProtocolError,
    ProtocolFlag,
    Quarantine,
    Quit,
    QuitNewConnection,
    Rcpt,
    Reject,
    ReplaceBody,
    ReplyText,
    Shutdown,
    Skip,
    SocketAddress,
    TempFail,
    Unknown,
    decode_command,
    decode_reply,
    decode_text,
)

FAST = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


# --------------------------------------------------------------------------- split / coalesce

SECOND_MESSAGE = b"".join(
    [
        packet(b"D", b"M" + strings(b"i", b"4QB")),
        packet(b"M", b"<c@example.org>\0"),
        packet(b"R", b"<spam@example.net>\0"),
        packet(b"R", b"<d@example.net>\0"),
        packet(b"T"),
        packet(b"L", strings(b"Subject", b"two")),
        packet(b"N"),
        packet(b"B", b"x" * 3000),
        packet(b"E", b"tail"),
        packet(b"A"),
    ]
)
# full_session() ends with A Q: put a second message between them.
SESSION = full_session()[: -len(packet(b"Q"))] + SECOND_MESSAGE + packet(b"Q")


def _milter(context: ClientContext) -> None:
    def recipient(ctx: ClientContext, address: str) -> Status | None:
        return ctx.reject("550", "5.7.1", "no spam") if "spam" in address else None

    def end(ctx: ClientContext, chunk: bytes) -> None:
        ctx.add_header("X-Queue", ctx["i"] or "?")
        ctx.replace_body(b"new body\r\n")

    context.connect("envelope-recipient", recipient)
    context.connect("end-of-message", end)


def _play(chunks: list[bytes]) -> tuple[list[tuple[str, tuple[Any, ...]]], bytes]:
    context, wire = new_context()
    log = SignalLog(context)
    _milter(context)
    for chunk in chunks:
        context.feed(chunk)
    assert context.finished
    return stable(log.events), wire.data


REFERENCE = _play([SESSION])


@FAST
@given(st.sets(st.integers(min_value=1, max_value=len(SESSION) - 1), max_size=60))
def test_any_split_gives_the_same_signals_and_bytes(cuts: set[int]) -> None:
    bounds = [0, *sorted(cuts), len(SESSION)]
    chunks = [SESSION[a:b] for a, b in itertools.pairwise(bounds)]
    assert _play(chunks) == REFERENCE


def test_the_reference_run_is_not_trivial() -> None:
    events, written = REFERENCE
    assert [name for name, _ in events].count("message-processed") == 2
    assert written.count(b"\x00\x00\x00\x0bbnew body\r\n") == 2
    assert b"550 5.7.1 no spam" in written


# --------------------------------------------------------------------------- junk input


def _feed_junk(context: ClientContext, chunks: list[bytes]) -> None:
    for chunk in chunks:
        try:
            context.feed(chunk)
        except ProtocolError:
            assert context.finished
            return
    # Not refused: everything was well-formed enough, or still incomplete. Ending the
    # connection must be clean too.
    context.connection_lost()
    assert context.finished


@FAST
@given(st.lists(st.binary(max_size=64), max_size=8))
def test_random_bytes_raise_only_protocol_errors(chunks: list[bytes]) -> None:
    context, _ = new_context()
    SignalLog(context)
    _feed_junk(context, chunks)


@FAST
@given(st.lists(st.binary(max_size=64), max_size=8))
def test_random_bytes_after_optneg_raise_only_protocol_errors(chunks: list[bytes]) -> None:
    context, _ = new_context()
    SignalLog(context)
    context.feed(optneg())
    _feed_junk(context, chunks)


_COMMAND_BYTES = st.sampled_from(list(b"ABCDEHKLMNOQRTU"))


@FAST
@given(st.lists(st.tuples(_COMMAND_BYTES, st.binary(max_size=40)), max_size=20))
def test_well_framed_junk_raises_only_protocol_errors(
    packets: list[tuple[int, bytes]],
) -> None:
    # Correct framing and real command bytes reach the payload decoders and the state logic.
    context, _ = new_context()
    SignalLog(context)
    stream = optneg() + b"".join(packet(bytes([c]), p) for c, p in packets)
    _feed_junk(context, [stream])


# --------------------------------------------------------------------------- codec round trip

u32 = st.integers(min_value=0, max_value=2**32 - 1)
#: Any text the wire can carry: bytes without NUL, decoded as the codec decodes them.
text = st.binary(max_size=30).map(lambda b: decode_text(b.replace(b"\0", b"")))
name = text.filter(bool)
#: One non-empty line (addresses, quarantine reasons): the reply classes refuse CR and LF.
#: CR and LF go before decoding: dropped from decoded text, they could join two escaped halves
#: of a UTF-8 sequence into text that no longer round-trips.
line = st.binary(min_size=1, max_size=30).map(
    lambda b: b.replace(b"\0", b"").replace(b"\r", b"").replace(b"\n", b"")
).filter(bool).map(decode_text)
#: A header name and value as the reply classes take them (no colon, space or control in the
#: name; no CR in the value).
header_name = st.text(st.characters(min_codepoint=33, max_codepoint=0x10FFFF,
                                    blacklist_characters=":\x7f",
                                    blacklist_categories=["Cs"]), min_size=1, max_size=20)
header_value = st.binary(max_size=30).map(
    lambda b: decode_text(b.replace(b"\0", b"").replace(b"\r", b"")))
ipv4 = st.ip_addresses(v=4).map(str)
ipv6 = st.ip_addresses(v=6).map(str)
port = st.integers(min_value=0, max_value=65535)
address = st.one_of(
    st.just(SocketAddress("U")),
    st.builds(SocketAddress, st.just("4"), ipv4, port),
    st.builds(SocketAddress, st.just("6"), ipv6, port),
    st.builds(lambda a, p: SocketAddress("6", a, p, "IPv6:" + a), ipv6, port),
    st.builds(SocketAddress, st.just("L"), text, port),
)

commands: st.SearchStrategy[AnyCommand] = st.one_of(
    st.builds(Negotiate, u32, u32.map(ActionFlag), u32.map(ProtocolFlag), st.binary(max_size=8)),
    st.builds(DefineMacro, st.sampled_from([bytes([c]) for c in b"CHMRTLNBEUAQK"]),
              st.dictionaries(name, text, max_size=5)),
    st.builds(Connect, text, address),
    st.builds(Helo, text),
    st.builds(Mail, name, st.lists(text, max_size=3).map(tuple)),
    st.builds(Rcpt, name, st.lists(text, max_size=3).map(tuple)),
    st.just(Data()),
    st.builds(Header, name, text),
    st.just(EndOfHeader()),
    st.builds(Body, st.binary(min_size=1, max_size=200)),
    st.builds(EndOfMessage, st.binary(max_size=50)),
    st.just(Abort()),
    st.just(Quit()),
    st.just(QuitNewConnection()),
    st.builds(Unknown, text),
)

replies: st.SearchStrategy[AnyReply] = st.one_of(
    st.builds(NegotiateReply, u32, u32.map(ActionFlag), u32.map(ProtocolFlag),
              st.dictionaries(st.sampled_from(list(MacroStage)), text, max_size=7)),
    st.sampled_from([Continue(), Reject(), TempFail(), Accept(), Discard(), Skip(), Progress(),
                     Shutdown(), ConnectionFailure()]),
    st.builds(ReplyText, text),
    st.builds(Quarantine, line),
    st.builds(AddRecipient, line),
    st.builds(AddRecipientWithParameters, line, line),
    st.builds(DeleteRecipient, line),
    st.builds(ChangeFrom, line, st.none() | line),
    st.builds(AddHeader, header_name, header_value),
    st.builds(InsertHeader, u32, header_name, header_value),
    st.builds(ChangeHeader, u32, header_name, header_value),
    st.builds(ReplaceBody, st.binary(max_size=200)),
)


@settings(max_examples=300, deadline=None)
@given(commands)
def test_every_command_survives_encode_and_decode(command: AnyCommand) -> None:
    wire = command.to_bytes()
    ((code, payload),) = PacketDecoder().feed(wire)
    assert code == command.code
    assert decode_command(code, payload) == command


@settings(max_examples=300, deadline=None)
@given(replies)
def test_every_reply_survives_encode_and_decode(reply: AnyReply) -> None:
    wire = reply.to_bytes()
    ((code, payload),) = PacketDecoder().feed(wire)
    assert code == reply.code
    assert decode_reply(code, payload) == reply
