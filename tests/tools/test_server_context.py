"""ServerContext (the MTA side) against a real ClientContext, in-process: every verdict at every
stage, every modification applied with MTA semantics, both wire profiles, and strict checks of
what the milter sends."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import pytest

from milterkit import Client, ClientContext, Status
from milterkit.protocol import ActionFlag, MacroStage, PacketDecoder, SocketAddress
from milterkit.protocol import ProtocolFlag as P
from milterkit.protocol import commands as cmd
from milterkit.protocol import replies as rep
from milterkit.protocol.commands import decode_command
from milterkit.testing import (
    SENDMAIL,
    InProcess,
    Message,
    MilterProtocolViolation,
    ReplyTimeout,
    ServerContext,
    SMTPClient,
    Submission,
    Timeouts,
    run_in_process,
)

S = Status
MESSAGE = Message.build(
    sender="alice@example.net",
    recipients=["bob@example.org", "carol@example.org"],
    headers=[("From", "alice@example.net"), ("Subject", "hello"), ("Subject", "again")],
    body="line 1\nline 2\n",
)


def wire(setup: Callable[[Client], Any] | Client, messages: Any = MESSAGE,
         **options: Any) -> tuple[list[cmd.AnyCommand], list[rep.AnyReply], Any]:
    """Run a session and decode both directions of the wire."""
    mta, milter = PacketDecoder(), PacketDecoder()
    commands: list[cmd.AnyCommand] = []
    replies: list[rep.AnyReply] = []

    def tap(side: str, data: bytes) -> None:
        if side == "mta":
            commands.extend(decode_command(c, p) for c, p in mta.feed(data))
        else:
            replies.extend(rep.decode_reply(c, p) for c, p in milter.feed(data))

    result = InProcess(setup, tap=tap, **options).run(messages)
    return commands, replies, result


def every_event(client: Client) -> None:
    """Listen to everything, so the MTA sends every event."""
    for name in ("connect", "helo", "envelope-from", "envelope-recipient", "data", "unknown",
                 "header", "end-of-header", "body", "end-of-message"):
        client.connect(name, lambda context, *args: None)


def codes(commands: list[cmd.AnyCommand]) -> str:
    return "".join(c.code.decode() for c in commands)


# ---------------------------------------------------------------------- wire order and profiles


def test_offer_bytes_are_postfix_defaults() -> None:
    written: list[bytes] = []
    server = ServerContext(written.append)
    server.start()
    assert written == [bytes.fromhex("0000000d4f00000006000001ff001fffff")]
    assert server.awaiting == "negotiate"


def test_postfix_order_macros_before_every_event_and_abort_after_message() -> None:
    commands, _, result = wire(every_event, MESSAGE, connection=SMTPClient(
        "client.example.net", SocketAddress("6", "2001:db8::1", 25)))
    assert codes(commands) == "ODCDHDMDRDRDTDLDLDLDNDBDEAQ"
    connect = commands[2]
    assert isinstance(connect, cmd.Connect) and connect.address.raw == "2001:db8::1"
    assert result.quit_sent


def test_postfix_sends_smtp_level_macros_even_for_events_the_milter_skips() -> None:
    commands, _, _ = wire(lambda c: c.connect("end-of-message", lambda ctx, chunk: None))
    # C H M R R T are opted out but their D still goes; L N B are content: nothing at all.
    assert codes(commands) == "ODDDDDDDEAQ"


def test_sendmail_order_ipv6_prefix_no_macros_for_headers_and_no_abort() -> None:
    commands, _, _ = wire(every_event, MESSAGE, profile="sendmail", connection=SMTPClient(
        "client.example.net", SocketAddress("6", "2001:db8::1", 25)))
    assert codes(commands) == "ODCHDMDRDRTLLLNBDEQ"
    connect = commands[2]
    assert isinstance(connect, cmd.Connect) and connect.address.raw == "IPv6:2001:db8::1"
    mail_macros = commands[4]
    assert isinstance(mail_macros, cmd.DefineMacro) and "i" in mail_macros.macros


def test_postfix_queue_id_appears_after_first_accepted_recipient() -> None:
    commands, _, _ = wire(every_event)
    rcpt_macros = [c for c in commands if isinstance(c, cmd.DefineMacro) and c.stage == b"R"]
    assert "i" not in rcpt_macros[0].macros and "i" in rcpt_macros[1].macros
    assert rcpt_macros[0].macros["{rcpt_addr}"] == "bob@example.org"


def test_milter_macro_lists_replace_the_defaults() -> None:
    def setup(client: Client) -> None:
        every_event(client)

    client = Client(macro_requests={MacroStage.CONNECT: ["j", "{daemon_addr}"],
                                    MacroStage.ENVELOPE_FROM: ["{auth_authen}"]})
    setup(client)
    commands, _, _ = wire(client, macros={"M": {"{auth_authen}": "alice"}})
    by_stage = {c.stage: dict(c.macros) for c in commands if isinstance(c, cmd.DefineMacro)}
    assert by_stage[b"C"] == {"j": "mail.example.com", "{daemon_addr}": "127.0.0.1"}
    assert by_stage[b"M"] == {"{auth_authen}": "alice"}


def test_body_is_cut_at_65535_and_explicit_chunks_are_kept() -> None:
    big = Message.build(body=b"x" * 70000)
    commands, _, _ = wire(every_event, big)
    assert [len(c.chunk) for c in commands if isinstance(c, cmd.Body)] == [65535, 4465]
    commands, _, _ = wire(every_event, [Submission(MESSAGE, chunks=[b"ab", b"cd", b""])])
    assert [c.chunk for c in commands if isinstance(c, cmd.Body)] == [b"ab", b"cd"]


@pytest.mark.parametrize("version, sent", [(2, ""), (3, "U"), (4, "UT"), (6, "UT")])
def test_version_limits_the_events(version: int, sent: str) -> None:
    commands, _, result = wire(every_event, [Submission(MESSAGE, unknown="XYZZY")],
                               version=version)
    assert result.negotiation.version == version
    assert "".join(c for c in "UT" if c in codes(commands)) == sent


def test_no_reply_steps_are_not_waited_for() -> None:
    client = Client(protocol=P.NO_REPLY_HEADER | P.NO_REPLY_BODY)
    every_event(client)
    _, replies, result = wire(client)
    headers = [e for e in result.exchanges if isinstance(e.command, cmd.Header)]
    assert len(headers) == 3 and all(e.replies == [] for e in headers)
    assert result.last.verdict == "pass"
    assert sum(isinstance(r, rep.Continue) for r in replies) == 8  # C H M R R T N E


# ---------------------------------------------------------------------- verdicts


def verdict_at(stage: str, status: Status, reply: tuple[str, str, str] | None = None
               ) -> Callable[[Client], None]:
    def setup(client: Client) -> None:
        every_event(client)

        def decide(context: ClientContext, *args: Any) -> Status:
            if reply is not None:
                context.set_reply(*reply)
            return status

        client.connect(stage, decide)

    return setup


MESSAGE_STAGES = ["envelope-from", "data", "header", "end-of-header", "body", "end-of-message"]


@pytest.mark.parametrize("stage", MESSAGE_STAGES)
@pytest.mark.parametrize("status", [S.REJECT, S.TEMPORARY_FAILURE, S.ACCEPT, S.DISCARD])
def test_a_verdict_ends_the_message_where_it_is_given(stage: str, status: Status) -> None:
    commands, _, result = wire(verdict_at(stage, status), [MESSAGE, MESSAGE])
    first, second = result.messages
    assert (first.status, first.stage) == (status, stage)
    assert second.status is status  # the connection went on with the second message
    assert first.delivered is (status is S.ACCEPT)
    # Postfix: one ABORT after each message, whatever happened; then QUIT.
    assert codes(commands).count("A") == 2 and codes(commands).endswith("AQ")


@pytest.mark.parametrize("stage", ["connect", "helo"])
@pytest.mark.parametrize("status", [S.REJECT, S.TEMPORARY_FAILURE, S.ACCEPT])
def test_connection_verdict_keeps_messages_from_the_milter(stage: str, status: Status) -> None:
    commands, _, result = wire(verdict_at(stage, status), [MESSAGE, MESSAGE])
    assert result.connection_verdict is status
    assert [m.stage for m in result.messages] == [stage, stage]
    assert "M" not in codes(commands)
    assert not result.quit_sent  # Postfix closes without QUIT
    commands, _, result = wire(verdict_at(stage, status), MESSAGE, profile="sendmail")
    assert result.quit_sent and codes(commands).endswith("Q")


def test_reply_text_reaches_the_outcome() -> None:
    result = run_in_process(verdict_at("end-of-message", S.REJECT, ("554", "5.7.1", "Go away")),
                            MESSAGE)
    outcome = result.last
    assert (outcome.code, outcome.xcode, outcome.text) == ("554", "5.7.1", "Go away")
    assert outcome.smtp_reply == "554 5.7.1 Go away"


def test_recipient_reject_drops_that_recipient_only() -> None:
    def setup(client: Client) -> None:
        @client.on("envelope-recipient")
        def rcpt(context: ClientContext, address: str) -> Status | None:
            return context.reject("550", "5.1.1", "No such user") if "bob" in address else None

    result = run_in_process(setup, MESSAGE)
    outcome = result.last
    assert outcome.verdict == "pass"
    assert outcome.message.recipient_addresses == ["<carol@example.org>"]
    assert [r.recipient.address for r in outcome.rejected_recipients] == ["<bob@example.org>"]
    assert outcome.rejected_recipients[0].reply == "550 5.1.1 No such user"


def test_every_recipient_rejected_ends_the_message_and_sendmail_aborts() -> None:
    setup = verdict_at("envelope-recipient", S.TEMPORARY_FAILURE)
    commands, _, result = wire(setup, MESSAGE, profile="sendmail")
    outcome = result.last
    assert (outcome.status, outcome.stage) == (S.TEMPORARY_FAILURE, "envelope-recipient")
    assert "T" not in codes(commands) and codes(commands).endswith("AQ")


def test_skip_at_body_stops_the_chunks() -> None:
    def setup(client: Client) -> None:
        client.connect("body", lambda context, chunk: S.SKIP)
        client.connect("end-of-message", lambda context, chunk: None)

    commands, _, result = wire(setup, [Submission(MESSAGE, chunks=[b"a", b"b", b"c"])])
    assert codes(commands).count("B") == 1
    assert result.last.skipped_body and result.last.verdict == "pass"


def test_unknown_command_status_is_recorded_without_ending_the_message() -> None:
    setup = verdict_at("unknown", S.TEMPORARY_FAILURE)
    result = run_in_process(setup, [Submission(MESSAGE, unknown="XYZZY")])
    assert result.last.unknown_status is S.TEMPORARY_FAILURE
    assert result.last.verdict == "pass"


# ---------------------------------------------------------------------- modifications


def modifying(action: Callable[[ClientContext], None], **client_options: Any
              ) -> Client:
    client = Client(**client_options)
    client.connect("end-of-message", lambda context, chunk: action(context))
    return client


def test_add_insert_change_delete_headers() -> None:
    def act(context: ClientContext) -> None:
        context.add_header("X-Added", "yes")
        context.insert_header(0, "X-Top", "first")
        context.change_header("Subject", 2, "changed")
        context.delete_header("Subject", 1)
        context.change_header("X-Missing", 1, "appended")

    outcome = run_in_process(modifying(act), MESSAGE).last
    assert outcome.message.header_lines() == [
        "X-Top: first", "From: alice@example.net", "Subject: changed", "X-Added: yes",
        "X-Missing: appended",
    ]
    assert outcome.original.header_lines()[0] == "From: alice@example.net"


def test_sendmail_does_not_renumber_after_a_deletion() -> None:
    def act(context: ClientContext) -> None:
        context.delete_header("Subject", 1)
        context.change_header("Subject", 2, "second")

    postfix = run_in_process(modifying(act), MESSAGE).last.message
    sendmail = run_in_process(modifying(act), MESSAGE, profile=SENDMAIL).last.message
    assert postfix.header_values("Subject") == ["again", "second"]
    assert sendmail.header_values("Subject") == ["second"]


def test_leading_space_is_kept_when_negotiated() -> None:
    seen: list[str] = []

    def setup(client: Client) -> None:
        client.connect("header", lambda context, name, value: seen.append(value))
        client.connect("end-of-message", lambda context, chunk: context.add_header("X-A", "b"))

    run_in_process(Client(protocol=P.HEADER_LEADING_SPACE), MESSAGE)
    client = Client(protocol=P.HEADER_LEADING_SPACE)
    setup(client)
    outcome = run_in_process(client, MESSAGE).last
    assert seen[0] == " alice@example.net"
    assert outcome.message.header_lines()[-1] == "X-A:b"  # verbatim: no space added
    seen.clear()
    outcome = run_in_process(setup, MESSAGE).last
    assert seen[0] == "alice@example.net"
    assert outcome.message.header_lines()[-1] == "X-A: b"


def test_envelope_changes() -> None:
    def act(context: ClientContext) -> None:
        context.change_from("<bounce@example.net>", "RET=HDRS")
        context.add_recipient("<dave@example.org>")
        context.add_recipient("<erin@example.org>", "NOTIFY=NEVER")
        context.delete_recipient("<bob@example.org>")

    message = run_in_process(modifying(act), MESSAGE).last.message
    assert (message.sender, message.sender_parameters) == ("<bounce@example.net>", ("RET=HDRS",))
    assert message.recipient_addresses == [
        "<carol@example.org>", "<dave@example.org>", "<erin@example.org>"]
    assert message.recipients[-1].parameters == ("NOTIFY=NEVER",)


def test_body_replacement_over_several_packets_and_quarantine() -> None:
    new_body = bytes(range(256)) * 600  # 153600 bytes: three 'b' packets

    def act(context: ClientContext) -> None:
        context.replace_body(new_body)
        context.quarantine("suspicious")

    outcome = run_in_process(modifying(act), MESSAGE).last
    assert outcome.message.body == new_body
    assert sum(isinstance(m, rep.ReplaceBody) for m in outcome.modifications) == 3
    assert outcome.quarantine_reason == "suspicious"
    assert outcome.original.body == b"line 1\r\nline 2\r\n"


def test_empty_replacement_truncates_the_body() -> None:
    outcome = run_in_process(modifying(lambda c: c.replace_body(b"")), MESSAGE).last
    assert outcome.message.body == b""


# ---------------------------------------------------------------------- async, progress, timeouts


def test_coroutine_handler_runs_on_the_loop() -> None:
    async def slow(context: ClientContext, chunk: bytes) -> Status:
        await asyncio.sleep(0.01)
        context.add_header("X-Async", "done")
        return S.ACCEPT

    outcome = run_in_process(lambda c: c.connect("end-of-message", slow), MESSAGE).last
    assert outcome.verdict == "accept"
    assert outcome.message.header("X-Async") == "done"


def test_progress_then_late_response() -> None:
    def eom(context: ClientContext, chunk: bytes) -> Status:
        context.progress()
        loop = asyncio.get_running_loop()
        loop.call_later(0.01, context.respond, "end-of-message", S.DISCARD)
        return S.PROGRESS

    outcome = run_in_process(lambda c: c.connect("end-of-message", eom), MESSAGE).last
    assert (outcome.verdict, outcome.progress) == ("discard", 1)


def test_a_milter_that_never_answers_times_out() -> None:
    def eom(context: ClientContext, chunk: bytes) -> Status:
        return S.PROGRESS

    runner = InProcess(lambda c: c.connect("end-of-message", eom),
                       timeouts=Timeouts(1, 1, 0.05))
    with pytest.raises(ReplyTimeout, match="end-of-message"):
        runner.run(MESSAGE)
    result = runner.run(MESSAGE, check=False)
    assert isinstance(result.error, ReplyTimeout)
    assert runner.context is not None and runner.context.finished


# ---------------------------------------------------------------------- strictness


def negotiated(reply: rep.NegotiateReply | None = None, profile: str = "postfix"
               ) -> tuple[ServerContext, list[bytes]]:
    """A server past negotiation (and CONNECT sent), fed by hand."""
    written: list[bytes] = []
    server = ServerContext(written.append, profile=profile)
    server.run([MESSAGE])
    server.receive((reply or rep.NegotiateReply(6, ActionFlag.ADD_HEADERS, P.NONE)).to_bytes())
    assert server.awaiting == "connect"
    return server, written


def test_reply_when_none_is_awaited_is_refused() -> None:
    written: list[bytes] = []
    server = ServerContext(written.append)
    server.start()  # no message queued and no close(): the MTA idles after HELO
    server.receive(rep.NegotiateReply(6, ActionFlag.NONE, P.NO_REPLY_CONNECT).to_bytes())
    assert server.awaiting == "helo"
    server.receive(rep.Continue().to_bytes())
    assert server.idle
    with pytest.raises(MilterProtocolViolation, match="no reply was expected"):
        server.receive(rep.Continue().to_bytes())
    assert server.finished and server.result.error is not None


@pytest.mark.parametrize("bad, match", [
    (rep.AddHeader("X", "y"), "modifications belong to end-of-message"),
    (rep.Skip(), "SKIP"),
    (rep.ReplyText("550 4.7.1 mismatched"), "class"),
    (rep.ReplyText("250 ok"), "reply code"),
    (rep.NegotiateReply(6, ActionFlag.NONE, P.NONE), "no MTA takes it"),
    (rep.Discard(), "DISCARD needs a message"),
])
def test_bad_replies_at_connect(bad: rep.AnyReply, match: str) -> None:
    server, _ = negotiated()
    with pytest.raises(MilterProtocolViolation, match=match):
        server.receive(bad.to_bytes())
    assert server.finished


def test_progress_before_end_of_message_is_postfix_only() -> None:
    server, _ = negotiated()
    server.receive(rep.Progress().to_bytes())
    assert server.awaiting == "connect"
    server, _ = negotiated(profile="sendmail")
    with pytest.raises(MilterProtocolViolation, match="only at end-of-message"):
        server.receive(rep.Progress().to_bytes())


def test_negotiation_checks() -> None:
    written: list[bytes] = []
    server = ServerContext(written.append, version=4)
    server.start()
    with pytest.raises(MilterProtocolViolation, match="version 6"):
        server.receive(rep.NegotiateReply(6, ActionFlag.NONE, P.NONE).to_bytes())
    server = ServerContext(written.append, actions=ActionFlag.ADD_HEADERS)
    server.start()
    with pytest.raises(MilterProtocolViolation, match="actions"):
        server.receive(rep.NegotiateReply(6, ActionFlag.CHANGE_BODY, P.NONE).to_bytes())
    server = ServerContext(written.append, profile="sendmail", protocol=P.V2)
    server.start()
    with pytest.raises(MilterProtocolViolation, match="steps"):
        server.receive(rep.NegotiateReply(6, ActionFlag.NONE, P.SKIP).to_bytes())


def at_end_of_message(actions: ActionFlag) -> ServerContext:
    written: list[bytes] = []
    server = ServerContext(written.append)
    server.run([Message.build()])
    steps = P.NO_CONNECT | P.NO_HELO | P.NO_ENVELOPE_FROM | P.NO_ENVELOPE_RECIPIENT | P.NO_DATA
    steps |= P.NO_HEADERS | P.NO_END_OF_HEADER | P.NO_BODY | P.NO_UNKNOWN
    server.receive(rep.NegotiateReply(6, actions, steps).to_bytes())
    assert server.awaiting == "end-of-message"
    return server


def test_modification_needs_its_action() -> None:
    server = at_end_of_message(ActionFlag.ADD_HEADERS)
    server.receive(rep.AddHeader("X", "y").to_bytes())
    with pytest.raises(MilterProtocolViolation, match="CHANGE_BODY"):
        server.receive(rep.ReplaceBody(b"x").to_bytes())


def test_body_replacement_must_be_contiguous() -> None:
    server = at_end_of_message(ActionFlag.ALL)
    server.receive(rep.ReplaceBody(b"a").to_bytes() + rep.AddHeader("X", "y").to_bytes())
    with pytest.raises(MilterProtocolViolation, match="body replacement"):
        server.receive(rep.ReplaceBody(b"b").to_bytes())


def test_milter_hanging_up_mid_session_is_an_error() -> None:
    server, _ = negotiated()
    with pytest.raises(MilterProtocolViolation, match="closed the connection"):
        server.connection_lost()


def test_idle_server_sends_queued_messages_one_by_one() -> None:
    to_milter = bytearray()
    server = ServerContext(to_milter.extend)
    context = ClientContext(server.receive)
    server.start()
    while to_milter:
        data = bytes(to_milter)
        to_milter.clear()
        context.feed(data)
    assert server.idle and not server.finished
    server.send_message(MESSAGE)
    server.close()
    while to_milter:
        data = bytes(to_milter)
        to_milter.clear()
        context.feed(data)
    assert server.finished and context.finished
    assert server.result.last.verdict == "pass"


def test_accept_at_a_recipient_keeps_earlier_refusals() -> None:
    def setup(client: Client) -> None:
        @client.on("envelope-recipient")
        def rcpt(context: ClientContext, address: str) -> Status | None:
            if "bob" in address:
                return context.reject("550", "5.1.1", "No such user")
            return S.ACCEPT if "carol" in address else None

    message = Message.build(recipients=["bob@example.org", "carol@example.org", "dave@x.org"])
    outcome = run_in_process(setup, message).last
    assert (outcome.status, outcome.stage) == (S.ACCEPT, "envelope-recipient")
    # bob was refused at RCPT; carol accepted the message, so dave goes through unfiltered.
    assert outcome.message.recipient_addresses == ["<carol@example.org>", "<dave@x.org>"]
    assert outcome.delivered


@pytest.mark.parametrize("stage", ["connect", "envelope-from", "end-of-message"])
def test_a_421_reply_ends_the_smtp_session(stage: str) -> None:
    setup = verdict_at(stage, S.TEMPORARY_FAILURE, ("421", "4.7.0", "Closing"))
    commands, _, result = wire(setup, [MESSAGE, MESSAGE])
    # The SMTP client is disconnected: the second message never reaches the milter.
    assert codes(commands).count("M") == (0 if stage == "connect" else 1)
    assert len(result.messages) == (0 if stage == "connect" else 1)
    if stage != "connect":
        assert result.last.reply == "421 4.7.0 Closing" and result.last.stage == stage
        assert codes(commands).endswith("AQ")


def test_shutdown_is_a_postfix_verdict_and_a_sendmail_error() -> None:
    server, _ = negotiated()
    server.receive(rep.Shutdown().to_bytes())
    assert server.result.connection_verdict is S.TEMPORARY_FAILURE and server.result.ok
    server, _ = negotiated(profile="sendmail")
    with pytest.raises(MilterProtocolViolation, match="shutdown"):
        server.receive(rep.Shutdown().to_bytes())


def test_skip_needs_the_step_offered_and_requested() -> None:
    steps = P.NO_CONNECT | P.NO_HELO | P.NO_ENVELOPE_FROM | P.NO_ENVELOPE_RECIPIENT | P.NO_DATA
    steps |= P.NO_HEADERS | P.NO_END_OF_HEADER | P.NO_UNKNOWN | P.SKIP
    for version, allowed in ((6, True), (4, False)):  # version 4 offers no SKIP
        server = ServerContext(lambda data: None, version=version)
        server.run([Submission(Message.build(), chunks=[b"a", b"b"])])
        server.receive(rep.NegotiateReply(version, ActionFlag.NONE, steps).to_bytes())
        assert server.awaiting == "body"
        if allowed:
            server.receive(rep.Skip().to_bytes())
            assert server.awaiting == "end-of-message"
        else:
            with pytest.raises(MilterProtocolViolation, match="SKIP step was not negotiated"):
                server.receive(rep.Skip().to_bytes())
