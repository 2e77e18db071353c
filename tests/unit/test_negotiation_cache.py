"""The negotiation is computed once per (offer, needs) and reused (issue 15): reuse must never
leak one context's choices into another's."""

from __future__ import annotations

from unitlib import optneg

from milterkit import ClientContext, ProtocolFlag
from milterkit.protocol import NegotiateReply, PacketDecoder, decode_reply
from milterkit.protocol.negotiation import Option
from milterkit.signals import SignalTable
from milterkit.stages import SIGNAL_NAMES


def _negotiated(context: ClientContext) -> NegotiateReply:
    written: list[bytes] = []
    context._write = written.append
    context.feed(optneg())
    (packet,) = PacketDecoder().decode(b"".join(written))
    reply = decode_reply(*packet)
    assert isinstance(reply, NegotiateReply)
    return reply


def test_contexts_with_different_handlers_get_their_own_negotiation() -> None:
    headers_only = SignalTable(SIGNAL_NAMES)
    headers_only.connect("header", lambda ctx, name, value: None)
    everything = SignalTable(SIGNAL_NAMES)
    for name in ("connect", "helo", "envelope-from", "envelope-recipient", "data", "header",
                 "end-of-header", "body", "unknown"):
        everything.connect(name, lambda ctx, *args: None)
    for _ in range(2):  # the second round is served from the caches
        few = _negotiated(ClientContext(lambda data: None, signals=headers_only))
        many = _negotiated(ClientContext(lambda data: None, signals=everything))
        assert few.protocol & ProtocolFlag.NO_BODY
        assert not few.protocol & ProtocolFlag.NO_HEADERS
        assert not many.protocol & (ProtocolFlag.NO_BODY | ProtocolFlag.NO_HEADERS)


def test_a_negotiate_handler_changing_the_option_changes_only_its_context() -> None:
    def want_connect(ctx: ClientContext, option: Option, requests: object) -> None:
        option.protocol &= ~ProtocolFlag.NO_CONNECT  # ask for CONNECT after all

    for _ in range(2):
        changed = ClientContext(lambda data: None)
        changed.connect("negotiate", want_connect)
        assert not _negotiated(changed).protocol & ProtocolFlag.NO_CONNECT
        # Same offer, same needs, no handler: the default again, untouched by that change.
        assert _negotiated(ClientContext(lambda data: None)).protocol & ProtocolFlag.NO_CONNECT


def test_handlers_connected_after_a_negotiation_count_for_the_next() -> None:
    table = SignalTable(SIGNAL_NAMES)
    assert _negotiated(ClientContext(lambda data: None, signals=table)).protocol & \
        ProtocolFlag.NO_BODY
    table.connect("body", lambda ctx, chunk: None)
    assert not _negotiated(ClientContext(lambda data: None, signals=table)).protocol & \
        ProtocolFlag.NO_BODY
