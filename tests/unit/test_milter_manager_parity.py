"""milter-manager's context properties where milterkit lacked them (seed 003: ``client``,
``message-result`` and ``option`` read/write, ``reset_message_related_data``, ``last_state``)."""

from __future__ import annotations

import pytest
from unitlib import C, SignalLog, new_context, optneg, optneg_reply, packet

from milterkit import (
    ActionError,
    ActionFlag,
    Client,
    MessageResult,
    Option,
    ProtocolFlag,
    State,
    StateError,
    Status,
)

CONNECT = packet(b"C", b"mx.example.net\x004\x00\x19192.0.2.1\0")
HELO = packet(b"H", b"client.example\0")
MAIL = packet(b"M", b"<a@example.org>\0")
RCPT = packet(b"R", b"<b@example.net>\0")


def test_client_is_the_client_that_made_the_context() -> None:
    client = Client("inet:0@127.0.0.1")
    context = client.create_context(lambda data: None)
    assert context.client is client
    fed_by_hand, _wire = new_context()
    assert fed_by_hand.client is None


def test_reset_message_related_data_drops_the_message_without_abort() -> None:
    context, wire = new_context()
    log = SignalLog(context, ["abort"])
    context.feed(optneg() + CONNECT + HELO + MAIL + RCPT)
    context.shelf["k"] = "v"
    assert context.message_result is not None
    assert context.message_result.recipients == ["<b@example.net>"]
    context.reset_message_related_data()
    assert context.shelf == {} and context.message_result is None
    assert log.events == []
    # The connection goes on: the next MAIL opens a fresh message.
    context.feed(MAIL)
    assert context.message_result is not None and context.message_result.recipients == []
    assert wire.data.endswith(C)


def test_message_result_is_settable() -> None:
    context, _wire = new_context()
    mine = MessageResult(envelope_from="<set@example.org>")
    context.message_result = mine  # before MAIL: the next message's record
    assert context.message_result is None
    context.feed(optneg() + CONNECT + HELO + MAIL)
    assert context.message_result is mine
    with pytest.raises(TypeError, match="MessageResult"):
        setattr(context, "message_result", "nope")  # noqa: B010  (past the type checker)


def test_option_is_settable_while_the_negotiate_reply_is_owed() -> None:
    context, wire = new_context()
    context.connect("negotiate", lambda ctx, option, requests: Status.PROGRESS)
    assert context.option is None
    context.feed(optneg())
    assert context.option is not None  # the option that would be requested
    context.option = Option(6, ActionFlag.ADD_HEADERS, ProtocolFlag.NO_BODY)
    context.respond("negotiate", Status.CONTINUE)
    assert wire.data == optneg_reply(6, 0x01, 0x10)
    assert context.option == Option(6, ActionFlag.ADD_HEADERS, ProtocolFlag.NO_BODY)


def test_option_after_negotiation_may_only_narrow_the_actions() -> None:
    context, _wire = new_context(protocol=ProtocolFlag.NONE)
    context.feed(optneg())
    assert context.option is not None
    steps = context.option.protocol
    with pytest.raises(StateError, match="only the actions"):
        context.option = Option(6, ActionFlag.ADD_HEADERS, ProtocolFlag.NO_BODY)
    with pytest.raises(StateError, match="not negotiated"):
        context.option = Option(6, ActionFlag.ALL, steps)
    context.option = Option(6, ActionFlag.CHANGE_BODY, steps)
    # The narrower option is what the actions are checked against from now on.
    context.connect("end-of-message", lambda ctx, chunk: ctx.add_header("X-A", "b"))
    errors = SignalLog(context, ["error"])
    context.feed(CONNECT + HELO + MAIL + RCPT + packet(b"E"))
    ((error,),) = [args for _, args in errors.events]
    assert isinstance(error, ActionError) and "ADD_HEADERS" in str(error)


def test_last_state_is_the_last_command_state_never_a_replied_one() -> None:
    context, _wire = new_context()
    assert (context.state, context.last_state) == (State.START, State.START)
    context.feed(optneg() + CONNECT + HELO)
    assert (context.state, context.last_state) == (State.HELO_REPLIED, State.HELO)
    context.feed(MAIL + packet(b"A"))
    # Abort is not a command state: last_state stays at the MAIL.
    assert (context.state, context.last_state) == (State.ABORT_REPLIED, State.ENVELOPE_FROM)
