"""The correctness bugs found in review (issue 8, b to j) and the one-rule items (4, 5), one
behaviour per test.

Each test failed on the code before its fix; the replies are checked byte for byte against
packets written out by hand (``unitlib``).
"""

from __future__ import annotations

import logging
from typing import Any

import pytest
from unitlib import (
    FULL_PROTOCOL,
    C,
    R,
    SignalLog,
    new_context,
    optneg,
    optneg_reply,
    packet,
    strings,
    y,
)

from milterkit import (
    ClientContext,
    InvalidValue,
    LocalError,
    MacrosRequests,
    Option,
    RemoteProtocolError,
    State,
    Status,
    StatusError,
)
from milterkit.protocol import (
    ActionFlag,
    AddHeader,
    AddRecipient,
    ChangeHeader,
    MalformedPacket,
    ProtocolFlag,
    Quarantine,
    decode_reply,
)
from milterkit.testing import Message, Recipient, run_in_process

CONNECT = packet(b"C", b"mx.example.net\x004\x00\x19192.0.2.1\0")
HELO = packet(b"H", b"client.example\0")
MAIL = packet(b"M", b"<a@example.org>\0")
RCPT = packet(b"R", b"<b@example.net>\0")
POLICY_REPLY = y(b"451 4.3.0 Temporary failure in the mail filter")


def at_mail(**kwargs: Any) -> tuple[ClientContext, Any]:
    context, wire = new_context(**kwargs)
    context.feed(optneg() + CONNECT + HELO)
    wire.take()
    return context, wire


# --------------------------------------------------------------------------- b. bare ints


@pytest.mark.parametrize("number", [3, 4])  # pymilter's ACCEPT and TEMPFAIL
def test_a_bare_int_status_is_a_status_error_under_the_exception_policy(number: int) -> None:
    context, wire = at_mail()
    errors = SignalLog(context, ["error"])
    context.connect("envelope-from", lambda _c, _a: number)  # type: ignore[call-overload]
    context.feed(MAIL)
    # Not 'r' (milterkit's 3) nor 'd' (its 4, a silent discard): the policy's 451.
    assert wire.data == POLICY_REPLY
    ((error,),) = [args for _, args in errors.events]
    assert isinstance(error, StatusError) and "bare int" in str(error)


# --------------------------------------------------------------------------- c. one policy


def test_respond_with_a_status_the_reply_does_not_fit_answers_with_the_policy() -> None:
    context, wire = at_mail()

    def later(ctx: ClientContext, address: str) -> Status:
        ctx.set_reply("550", "5.7.1", "No")
        return Status.PROGRESS

    context.connect("envelope-from", later)
    context.feed(MAIL)
    assert wire.take() == b""
    context.respond("envelope-from", Status.TEMPORARY_FAILURE)  # a 550 cannot be a TEMPFAIL
    # As on the synchronous path: the policy's 451 is written and nothing is owed any more.
    assert wire.data == POLICY_REPLY
    assert context.pending is None


# --------------------------------------------------------------------------- d. no-reply stages


@pytest.mark.parametrize("offered", [True, False], ids=["offered", "emulated"])
def test_a_verdict_at_a_no_reply_stage_is_sent_as_no_reply(offered: bool) -> None:
    context, wire = new_context(protocol=ProtocolFlag.NO_REPLY_HEADER)
    context.connect("header", lambda _c, name, value: Status.REJECT)
    protocol = FULL_PROTOCOL if offered else FULL_PROTOCOL & ~ProtocolFlag.NO_REPLY_HEADER
    context.feed(optneg(protocol=protocol) + CONNECT + HELO + MAIL + RCPT + packet(b"T"))
    wire.take()
    context.feed(packet(b"L", strings(b"Subject", b"x")) + packet(b"N"))
    # libmilter: nothing where the MTA reads nothing, a 'c' where it waits; never an 'r'.
    assert wire.data == (C if offered else C + C)
    assert R not in wire.data


# --------------------------------------------------------------------------- e. U macros


def test_unknown_macros_do_not_outlive_the_unknown_command() -> None:
    context, _wire = new_context()
    context.feed(optneg() + CONNECT + packet(b"D", b"U" + strings(b"i", b"STALE"))
                 + packet(b"U", b"FOO\0") + packet(b"D", b"M" + strings(b"i", b"NEW")) + MAIL)
    assert context.get_macro("i") == "NEW"


# --------------------------------------------------------------------------- f. private data


def test_private_data_lives_for_the_connection_and_the_shelf_for_the_message() -> None:
    context, _wire = at_mail()
    context.connect("envelope-from", lambda ctx, _a: ctx.shelf.update(seen=True))
    context.set_private({"connection": 1})
    context.feed(MAIL + RCPT + packet(b"E") + packet(b"A"))
    assert context.get_private() == {"connection": 1}
    assert context.shelf == {}
    context.feed(MAIL)
    assert context.private == {"connection": 1} and context.shelf == {"seen": True}


# --------------------------------------------------------------------------- g. negotiate-response


def test_negotiate_response_gets_option_requests_and_status() -> None:
    context, wire = new_context()
    seen: list[tuple[Any, ...]] = []
    context.connect("negotiate", lambda _c, option, requests: Status.PROGRESS)
    context.connect("negotiate-response",
                    lambda _c, option, requests, status: seen.append((option, requests, status)))
    context.feed(optneg())
    assert wire.take() == b""
    # milter-manager's emission: the option to request, the macro requests, the status.
    asked = Option(6, ActionFlag.ADD_HEADERS, ProtocolFlag.NONE)
    context.emit("negotiate-response", asked, context.macros_requests, Status.CONTINUE)
    assert seen == [(asked, context.macros_requests, Status.CONTINUE)]
    assert isinstance(seen[0][1], MacrosRequests)
    assert wire.data == optneg_reply(6, 0x01, 0)  # the option given with the response


# --------------------------------------------------------------------------- h. negotiate errors


def test_a_negotiate_handler_that_raises_gets_what_the_log_says(
    caplog: pytest.LogCaptureFixture,
) -> None:
    def broken(ctx: ClientContext, option: Option, requests: MacrosRequests) -> None:
        raise RuntimeError("boom")

    caplog.set_level(logging.ERROR, "milterkit")
    context, wire = new_context()  # policy TEMPORARY_FAILURE
    context.connect("negotiate", broken)
    context.feed(optneg())
    # The policy is a failure: no negotiate reply, the connection ends (the MTA's default
    # action applies), and the log says exactly that.
    assert wire.data == b"" and context.finished
    assert "closing without a negotiate reply" in caplog.text

    caplog.clear()
    context, wire = new_context(exception_policy=Status.CONTINUE)
    context.connect("negotiate", broken)
    context.feed(optneg())
    assert wire.data.startswith(b"\x00\x00\x00\x0dO") and not context.finished
    assert "negotiating with the defaults" in caplog.text


# --------------------------------------------------------------------------- i. the abort rule


def test_abort_is_only_for_an_open_message_without_a_verdict() -> None:
    context, wire = new_context()
    aborts = SignalLog(context, ["abort"])
    context.connect("envelope-from",
                    lambda ctx, a: Status.REJECT if a == "<refused@example.org>" else None)
    context.feed(optneg() + CONNECT + HELO + packet(b"A"))  # Postfix after STARTTLS
    context.feed(MAIL + RCPT + packet(b"T") + packet(b"E") + packet(b"A"))  # answered
    context.feed(packet(b"M", b"<refused@example.org>\0") + packet(b"A"))  # REJECT at MAIL
    assert aborts.events == []
    context.feed(MAIL + RCPT + packet(b"A"))  # cut short: the only abort
    assert aborts.events == [("abort", (State.ENVELOPE_RECIPIENT_REPLIED,))]
    assert wire.data.count(R) == 1


# --------------------------------------------------------------------------- j. Message


def test_message_takes_recipients_as_strings() -> None:
    message = Message(recipients=["<x@example.org>"])  # type: ignore[list-item]
    assert message.recipients == [Recipient("<x@example.org>")]
    result = run_in_process(lambda client: None, message)
    assert result.last.message.recipient_addresses == ["<x@example.org>"]
    with pytest.raises(TypeError, match="recipients"):
        Message(recipients=[42])  # type: ignore[list-item]


# --------------------------------------------------------------------------- 5. one await rule


def test_a_cancelled_coroutine_handler_is_answered_by_the_policy_in_process() -> None:
    import asyncio

    from milterkit import Client

    def setup(client: Client) -> None:
        async def cancelled(context: ClientContext, address: str) -> Status | None:
            task = asyncio.current_task()
            assert task is not None
            task.cancel()
            await asyncio.sleep(5)
            return None

        client.connect("envelope-from", cancelled)

    # The runtime, InProcess and replay share one rule: a cancelled handler is a failure
    # (HandlerCancelled) under the exception policy, never a silent CONTINUE or a hang.
    result = run_in_process(setup, Message.build())
    assert result.last.status is Status.TEMPORARY_FAILURE
    assert result.last.reply == "451 4.3.0 Temporary failure in the mail filter"


# ----------------------------------------------------------------- 4. one rule, both sides


@pytest.mark.parametrize(
    ("code", "payload", "build"),
    [
        (b"h", b"Bad:Name\0v\0", lambda: AddHeader("Bad:Name", "v")),
        (b"h", b"X-A\0a\rb\0", lambda: AddHeader("X-A", "a\rb")),
        (b"m", b"\0\0\0\1Bad Name\0v\0", lambda: ChangeHeader(1, "Bad Name", "v")),
        (b"+", b"a\nb\0", lambda: AddRecipient("a\nb")),
        (b"q", b"\0", lambda: Quarantine("")),
    ],
)
def test_reply_classes_and_the_mta_side_decoder_apply_the_same_rules(
    code: bytes, payload: bytes, build: Any
) -> None:
    with pytest.raises(InvalidValue) as local:
        build()  # the milter's own call: our fault
    with pytest.raises(MalformedPacket) as remote:
        decode_reply(code, payload)  # the same bytes coming in: the peer's fault
    assert str(local.value) in str(remote.value)
    assert isinstance(local.value, LocalError) and isinstance(remote.value, RemoteProtocolError)
