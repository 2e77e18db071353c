"""Negotiation of a composition is the union of the filters' needs, and a filter gets only
the events it asked for."""

from __future__ import annotations

from typing import Any

from composelib import Composed, recording, spec

from milterkit import ActionFlag, MacroStage, ProtocolFlag
from milterkit.compose import Condition

P = ProtocolFlag


def wants(stage: str, actions: ActionFlag | None = None,
          macros: dict[MacroStage, list[str]] | None = None) -> Any:
    def setup(client: Any) -> None:
        client.connect(stage, lambda context, *args: None)
        if actions is not None:
            client.context_options["actions"] = actions
        if macros is not None:
            client.context_options["macro_requests"] = macros

    return setup


def test_events_are_the_union_of_the_filters_handlers() -> None:
    composed = Composed([spec("a", wants("envelope-from")), spec("b", wants("header"))])
    result = composed.run()
    assert result.negotiation is not None
    protocol = result.negotiation.protocol
    assert not protocol & P.NO_ENVELOPE_FROM
    assert not protocol & P.NO_HEADERS
    for flag in (P.NO_CONNECT, P.NO_HELO, P.NO_ENVELOPE_RECIPIENT, P.NO_DATA, P.NO_BODY,
                 P.NO_END_OF_HEADER, P.NO_UNKNOWN):
        assert protocol & flag, flag
    assert not protocol & P.NO_REPLY_MASK  # every filter's verdict is waited for


def test_actions_are_the_union_of_the_filters_actions() -> None:
    composed = Composed([spec("a", wants("header", ActionFlag.ADD_HEADERS)),
                         spec("b", wants("header", ActionFlag.CHANGE_FROM))])
    result = composed.run()
    assert result.negotiation is not None
    assert result.negotiation.actions == ActionFlag.ADD_HEADERS | ActionFlag.CHANGE_FROM


def test_macro_requests_are_merged() -> None:
    composed = Composed([
        spec("a", wants("envelope-from", macros={MacroStage.ENVELOPE_FROM: ["{auth_authen}"]})),
        spec("b", wants("header", macros={MacroStage.ENVELOPE_FROM: ["i"],
                                          MacroStage.END_OF_MESSAGE: ["{msg_id}"]})),
    ])
    result = composed.run()
    assert result.negotiation is not None
    macros = result.negotiation.macros
    assert macros[MacroStage.ENVELOPE_FROM].split() == ["{auth_authen}", "i"]
    assert macros[MacroStage.END_OF_MESSAGE] == "{msg_id}"


def test_a_filters_negotiate_handler_narrows_its_own_needs() -> None:
    """b has a header handler but its negotiate handler says NO_HEADERS: a asks for headers,
    so they come, but b never gets one."""
    calls: list[str] = []

    def b(client: Any) -> None:
        recording(calls, ["header", "envelope-from"])(client)

        def negotiate(context: Any, option: Any, requests: Any) -> None:
            option.protocol |= P.NO_HEADERS

        client.connect("negotiate", negotiate)

    composed = Composed([spec("a", recording(calls, ["header"])), spec("b", b)])
    composed.run()
    assert "a:header" in calls
    assert "b:envelope-from" in calls
    assert "b:header" not in calls


def test_a_filter_never_gets_an_event_another_asked_for() -> None:
    calls: list[str] = []
    composed = Composed([spec("a", recording(calls, ["envelope-from"])),
                         spec("b", recording(calls, ["header", "body"]))])
    composed.run()
    assert sorted(set(calls)) == ["a:envelope-from", "b:body", "b:header"]


def test_a_condition_brings_its_events() -> None:
    class AtConnect(Condition):
        name = "at-connect"

        def connect(self, context: Any, hostname: str, address: Any) -> bool:
            return False

    composed = Composed([spec("a", wants("header"), conditions=[AtConnect()])])
    result = composed.run()
    assert result.negotiation is not None
    assert not result.negotiation.protocol & P.NO_CONNECT


def test_a_filter_refusing_the_negotiation_is_detached_for_the_connection() -> None:
    from milterkit import Status

    calls: list[str] = []

    def refuses(client: Any) -> None:
        recording(calls, ["envelope-from"])(client)
        client.connect("negotiate", lambda context, option, requests: Status.REJECT)

    composed = Composed([spec("a", refuses), spec("b", recording(calls, ["envelope-from"]))])
    result = composed.run()
    assert calls == ["b:envelope-from"]
    assert result.last.status is Status.CONTINUE
