"""purepythonmilter's API on milterkit, in-process: command decoding, response validation and
what milterkit does where purepythonmilter 0.0.1 was broken or silent (Quarantine, several
messages per connection, CauseConnectionFail, verdicts from no-reply hooks)."""

from __future__ import annotations

import asyncio
import ipaddress
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from milterkit.compat import purepythonmilter as ppm
from milterkit.protocol.replies import AddHeader, ConnectionFailure, Continue, Quarantine
from milterkit.testing import Message, SessionResult, run_session_async


def session(app: ppm.PurePythonMilter, *messages: Message) -> SessionResult:
    async def scenario() -> SessionResult:
        client = app.build_client("inet:0@127.0.0.1")
        await client.start()
        try:
            return await run_session_async(client.address_spec, list(messages), check=False)
        finally:
            await client.shutdown(0.0)

    return asyncio.run(asyncio.wait_for(scenario(), 30))


# ---------------------------------------------------------------------- commands


def test_connect_decodes_ipv4_ipv6_unix_and_unknown() -> None:
    ipv4 = ppm.Connect(b"[172.17.0.1]\x004\xc3\x36172.17.0.1\x00").connection_info_args
    assert ipv4 == ppm.ConnectionInfoArgsIPv4(
        hostname="[172.17.0.1]", addr=ipaddress.IPv4Address("172.17.0.1"), port=49974)
    ipv6 = ppm.Connect(b"h\x006\x00\x19IPv6:::1\x00").connection_info_args
    assert ipv6 == ppm.ConnectionInfoArgsIPv6(hostname="h", addr=ipaddress.IPv6Address("::1"),
                                              port=25)
    unix = ppm.Connect(b"ignored\x00L\x00\x00/run/mysock\x00").connection_info_args
    assert unix == ppm.ConnectionInfoArgsUnixSocket(path="/run/mysock")
    assert ppm.Connect(b"unknown\x00U\x00").connection_info_args == ppm.ConnectionInfoUnknown(
        description="unknown")


@pytest.mark.parametrize("payload", [b"no-nul", b"h\x00", b"h\x00X\x00", b"h\x004\x00\x19x\x00"])
def test_a_bad_connect_payload_is_a_protocol_violation(payload: bytes) -> None:
    with pytest.raises(ppm.ProtocolViolationCommandData):
        ppm.Connect(payload)


def test_mail_from_strips_brackets_and_parses_esmtp_arguments() -> None:
    cmd = ppm.MailFrom(b"<test@example.com>\x00BODY=8BITMIME\x00FOO\x00SIZE=1=2\x00")
    assert cmd.address == "test@example.com"
    assert cmd.esmtp_args == {"BODY": "8BITMIME", "FOO": None, "SIZE": "1=2"}
    assert ppm.RcptTo(b"bare@example.com\x00").address == "bare@example.com"
    with pytest.raises(ppm.ProtocolViolationCommandData):
        ppm.MailFrom(b"\x00")


def test_header_and_unknown_and_no_data_commands() -> None:
    header = ppm.Header(b"Subject\x00caf\xc3\xa9 \xff\x00")
    assert (header.name, header.text) == ("Subject", "café \\xff")
    assert ppm.Unknown(b"HELP\x00").data_raw == b"HELP"
    assert ppm.Helo(b"mx.example\x00").hostname == "mx.example"
    with pytest.raises(ppm.ProtocolViolationCommandData):
        ppm.Data(b"unexpected")


# ---------------------------------------------------------------------- responses


@pytest.mark.parametrize("name", ["", "Bad Name", "Colon:", "Ünï"])
def test_header_names_are_checked_against_rfc5322(name: str) -> None:
    with pytest.raises(ValueError):
        ppm.AppendHeader(headername=name, headertext="x")


def test_response_arguments_are_validated() -> None:
    with pytest.raises(ValueError):
        ppm.InsertHeader(headername="X", headertext="y", index=-1)
    with pytest.raises(ValueError):
        ppm.ChangeHeader(headername="X", headertext="y", nth_occurrence=-1)
    with pytest.raises(ValueError):
        ppm.ReplaceBodyChunk(chunk=b"x" * 65536)
    assert ppm.Continue() == ppm.Continue()
    different: object = ppm.Accept()
    assert ppm.Reject() != different


# ---------------------------------------------------------------------- sessions


def hook(result: Any) -> Callable[[Any], Awaitable[Any]]:
    async def answer(cmd: Any) -> Any:
        return result

    return answer


def test_quarantine_holds_the_message_and_accepts_it() -> None:
    app = ppm.PurePythonMilter(
        hook_on_end_of_message=hook(ppm.Quarantine(reason="looks odd")), can_quarantine=True)
    result = session(app, Message.build())
    assert result.last.quarantine_reason == "looks odd"
    assert result.last.verdict == "pass"
    assert result.last.exchanges[-1].replies == [Quarantine("looks odd"), Continue()]


def test_connection_level_manipulations_apply_to_every_message_others_to_their_own() -> None:
    count = iter(range(10))

    async def on_connect(cmd: ppm.Connect) -> ppm.Continue:
        return ppm.Continue(manipulations=[ppm.AppendHeader(headername="X-Conn",
                                                            headertext="1")])

    async def on_mail_from(cmd: ppm.MailFrom) -> ppm.Continue:
        return ppm.Continue(manipulations=[ppm.AppendHeader(headername="X-Msg",
                                                            headertext=str(next(count)))])

    app = ppm.PurePythonMilter(hook_on_connect=on_connect, hook_on_mail_from=on_mail_from,
                               can_add_headers=True)
    result = session(app, Message.build(), Message.build())
    for number, outcome in enumerate(result.messages):
        assert outcome.modifications == [AddHeader("X-Conn", "1"), AddHeader("X-Msg", str(number))]


def test_cause_connection_fail_sends_f_and_closes() -> None:
    app = ppm.PurePythonMilter(hook_on_helo=hook(ppm.CauseConnectionFail()))
    result = session(app, Message.build())
    assert result.exchanges[-1].replies == [ConnectionFailure()]
    assert "no MTA takes it" in str(result.error)  # so the MTA applies its default action


def test_reject_with_code_sets_the_reply() -> None:
    app = ppm.PurePythonMilter(hook_on_mail_from=hook(ppm.RejectWithCode(
        primary_code=(5, 7, 1), enhanced_code=(5, 7, 1), text="go away 100%")))
    outcome = session(app, Message.build()).last
    assert outcome.verdict == "reject"
    assert outcome.reply == "571 5.7.1 go away 100%%"  # % doubled, as both MTAs need


def test_temp_fail_with_code_without_text() -> None:
    app = ppm.PurePythonMilter(hook_on_rcpt_to=hook(ppm.TempFailWithCode(primary_code=(4, 5, 1))))
    outcome = session(app, Message.build()).last
    assert outcome.rejected_recipients[0].reply == "451 "


@pytest.mark.parametrize("bad", [ppm.Progress(), ppm.SkipToNextStage(), "continue"])
def test_a_response_that_is_not_a_final_answer_ends_the_connection(bad: object) -> None:
    app = ppm.PurePythonMilter(hook_on_helo=hook(bad))
    result = session(app, Message.build())
    # The milter closed the connection: the MTA applies its default action.
    assert "milter closed the connection (waiting for the helo reply)" in str(result.error)
    assert result.messages == []


def test_a_verdict_from_a_no_reply_hook_is_ignored_not_sent(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async def on_helo(cmd: ppm.Helo) -> None:
        return ppm.Reject(  # type: ignore[return-value]
            manipulations=[ppm.AppendHeader(headername="X-Kept", headertext="yes")])

    app = ppm.PurePythonMilter(hook_on_helo=on_helo, can_add_headers=True)
    result = session(app, Message.build())
    helo = next(e for e in result.exchanges if type(e.command).__name__ == "Helo")
    assert helo.replies == []  # nothing was written for the no-reply stage
    assert result.last.verdict == "pass"
    assert result.last.modifications == [AddHeader("X-Kept", "yes")]
    assert "annotated to return None but returned Reject; ignored" in caplog.text


def test_a_hook_that_raises_ends_the_connection() -> None:
    async def on_mail_from(cmd: ppm.MailFrom) -> ppm.Continue:
        raise RuntimeError("boom")

    result = session(ppm.PurePythonMilter(hook_on_mail_from=on_mail_from), Message.build())
    assert "milter closed the connection" in str(result.error)


def test_logger_prefixes_the_connection_id(caplog: pytest.LogCaptureFixture) -> None:
    app: ppm.PurePythonMilter

    async def on_helo(cmd: ppm.Helo) -> None:
        app.logger.info("hello %s", cmd.hostname)

    app = ppm.PurePythonMilter(name="logtest", hook_on_helo=on_helo)
    with caplog.at_level("INFO", logger="logtest"):
        session(app, Message.build())
        app.logger.info("outside")
    (line, outside) = [r.getMessage() for r in caplog.records if r.name == "logtest"]
    assert len(line.split(": ")[0]) == 8 and line.endswith(": hello delian")
    assert outside == "NONE: outside"
