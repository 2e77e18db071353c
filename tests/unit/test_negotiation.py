"""Option negotiation: libmilter's rules, byte-exact ``O`` replies, and the refusals."""

from __future__ import annotations

import pytest
from unitlib import FULL_PROTOCOL, offer, optneg_reply

from milterkit.protocol import (
    ActionFlag,
    MacroStage,
    Negotiate,
    NegotiationError,
    Option,
    ProtocolFlag,
    effective_offer,
    negotiate,
)

AF = ActionFlag
PF = ProtocolFlag


@pytest.mark.parametrize(("offered", "answered"), [(2, 2), (3, 3), (4, 4), (6, 6), (7, 6)])
def test_version_is_the_lower_of_six_and_the_offer(offered: int, answered: int) -> None:
    result = negotiate(offer(version=offered), Option(actions=AF.ADD_HEADERS))
    assert result.option.version == answered
    assert result.reply.to_bytes() == optneg_reply(answered, 0x01, 0)


def test_the_request_may_ask_for_a_lower_version() -> None:
    assert negotiate(offer(), Option(version=2)).option.version == 2


def test_version_one_is_refused() -> None:
    with pytest.raises(NegotiationError, match="offers protocol version 1; at least 2"):
        negotiate(offer(version=1), Option())


def test_zero_masks_read_as_version_one_defaults() -> None:
    zero = Negotiate(6, AF.NONE, PF.NONE)
    assert effective_offer(zero) == Option(6, AF.V1, PF.V1)
    result = negotiate(zero, Option(actions=AF.V1, protocol=PF.NO_HELO))
    assert result.reply.to_bytes() == optneg_reply(6, 0x0F, 0x02)
    with pytest.raises(NegotiationError, match="QUARANTINE"):
        negotiate(zero, Option(actions=AF.QUARANTINE))


def test_actions_not_offered_are_refused_and_named() -> None:
    with pytest.raises(NegotiationError) as info:
        negotiate(offer(actions=AF.ADD_HEADERS), Option(actions=AF.ADD_HEADERS | AF.CHANGE_BODY))
    assert "CHANGE_BODY" in str(info.value)
    assert "does not offer" in str(info.value)


def test_no_reply_steps_not_offered_are_emulated_and_left_out() -> None:
    offered = offer(protocol=PF.V2)  # a version-2-era MTA: no NR steps at all
    wanted = PF.NO_REPLY_HEADER | PF.NO_REPLY_BODY | PF.NO_HELO
    result = negotiate(offered, Option(protocol=wanted))
    assert result.option.protocol == PF.NO_HELO
    assert result.no_reply == PF.NO_REPLY_HEADER | PF.NO_REPLY_BODY
    assert result.emulated_no_reply == PF.NO_REPLY_HEADER | PF.NO_REPLY_BODY
    assert result.reply.to_bytes() == optneg_reply(6, 0, 0x02)


def test_offered_no_reply_steps_are_sent_not_emulated() -> None:
    result = negotiate(offer(), Option(protocol=PF.NO_REPLY_HEADER))
    assert result.no_reply == PF.NO_REPLY_HEADER
    assert result.emulated_no_reply == PF.NONE
    assert result.reply.to_bytes() == optneg_reply(6, 0, 0x80)


def test_skip_and_event_steps_the_mta_lacks_are_dropped() -> None:
    offered = offer(protocol=PF.NO_CONNECT | PF.NO_HELO)
    result = negotiate(offered, Option(protocol=PF.SKIP | PF.NO_HELO | PF.NO_DATA))
    assert result.option.protocol == PF.NO_HELO
    assert result.reply.to_bytes() == optneg_reply(6, 0, 0x02)


@pytest.mark.parametrize("step", [PF.HEADER_LEADING_SPACE, PF.ENVELOPE_RECIPIENT_REJECTED])
def test_behaviour_steps_the_mta_lacks_are_refused(step: PF) -> None:
    with pytest.raises(NegotiationError, match=step.name or "?"):
        negotiate(offer(protocol=PF.V2), Option(protocol=step))


def test_internal_bits_are_never_requested() -> None:
    offered = offer(protocol=PF.ALL | PF.MDS_1M | PF.MDS_256K)
    result = negotiate(offered, Option(protocol=PF.MDS_1M | PF.TEST | PF.NO_HELO))
    assert result.option.protocol == PF.NO_HELO


def test_reply_is_always_a_subset_of_the_offer() -> None:
    # Sendmail refuses a reply with steps it did not offer; check a spread of offers.
    for offered_bits in (PF.V1, PF.V2, PF.NO_HELO | PF.SKIP, FULL_PROTOCOL):
        result = negotiate(offer(protocol=offered_bits), Option(protocol=PF(0x000FFFFF & ~0x800
                                                                              & ~0x100000)))
        sent = result.option.protocol
        assert sent & ~effective_offer(offer(protocol=offered_bits)).protocol == PF.NONE


def test_macro_lists_when_setsymlist_is_offered() -> None:
    result = negotiate(
        offer(), Option(actions=AF.ADD_HEADERS),
        {MacroStage.HELO: ["G", "N", "U"], MacroStage.CONNECT: "{client_addr} j"},
    )
    assert result.option.actions == AF.ADD_HEADERS | AF.SET_SYMBOL_LIST
    assert result.macro_requests == {
        MacroStage.HELO: "G N U", MacroStage.CONNECT: "{client_addr} j"
    }
    assert result.reply.to_bytes() == optneg_reply(
        6, 0x101, 0, [(1, b"G N U"), (0, b"{client_addr} j")]
    )


def test_end_of_message_list_brings_an_end_of_header_list() -> None:
    result = negotiate(offer(), Option(), {MacroStage.END_OF_MESSAGE: ["i"]})
    assert result.reply.to_bytes() == optneg_reply(6, 0x100, 0, [(5, b"i"), (6, b"i")])


def test_an_explicit_end_of_header_list_is_kept() -> None:
    result = negotiate(
        offer(), Option(), {MacroStage.END_OF_MESSAGE: ["i"], MacroStage.END_OF_HEADER: ["j"]}
    )
    assert result.reply.to_bytes() == optneg_reply(6, 0x100, 0, [(5, b"i"), (6, b"j")])


def test_no_macro_lists_without_setsymlist() -> None:
    result = negotiate(offer(actions=AF.V2), Option(), {MacroStage.HELO: ["G"]})
    assert result.macro_requests == {}
    assert result.option.actions == AF.NONE
    assert result.reply.to_bytes() == optneg_reply(6, 0, 0)


def test_empty_lists_are_not_sent() -> None:
    result = negotiate(offer(), Option(), {MacroStage.HELO: []})
    assert result.reply.to_bytes() == optneg_reply(6, 0, 0)


def test_option_copy_is_independent() -> None:
    option = Option(6, AF.ADD_HEADERS, PF.NO_HELO)
    twin = option.copy()
    twin.actions |= AF.CHANGE_BODY
    assert option.actions == AF.ADD_HEADERS
    assert twin == Option(6, AF.ADD_HEADERS | AF.CHANGE_BODY, PF.NO_HELO)
