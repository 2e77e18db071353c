"""The admin's log: one INFO line per message (early verdicts and aborts too), DEBUG stage lines,
JSON lines with ``--log-format json``, and a session summary that counts every message."""

from __future__ import annotations

import json
import logging
from typing import Any

import pytest
from runner import RunningServer
from serverlib import MTA, run, serving, short_tmpdir

from milterkit import ClientContext, Status
from milterkit.compose import compose
from milterkit.protocol import commands as cmd
from milterkit.server import Client
from milterkit.server.messagelog import JsonFormatter


def _filter(client: Client) -> None:
    @client.on("envelope-from")
    def sender(context: ClientContext, address: str) -> Status | None:
        if "spam" in address:
            return context.reject("550", "5.7.1", "Go away")
        return None

    @client.on("envelope-recipient")
    def recipient(context: ClientContext, address: str) -> Status | None:
        if "nobody" in address:
            return context.reject("550", "5.1.1", "No such user")
        return None


async def _messages(spec: str, *messages: dict[str, Any], abort_last: bool = False) -> None:
    mta = await MTA.open(spec)
    try:
        await mta.negotiate()
        await mta.connect()
        await mta.helo()
        for number, message in enumerate(messages):
            mta.send_nowait(cmd.DefineMacro(b"M", {"i": f"QID{number}"}))
            if abort_last and number == len(messages) - 1:
                await mta.step(cmd.Mail(message.get("sender", "<a@example.org>")))
                await mta.step(cmd.Rcpt("<b@example.com>"))
                mta.send_nowait(cmd.Abort())
                continue
            await mta.message(**message)
            mta.send_nowait(cmd.Abort())  # Postfix's ABORT after every message
        mta.send_nowait(cmd.Quit())
        assert await mta.at_eof()
    finally:
        await mta.close()


def _lines(caplog: pytest.LogCaptureFixture, name: str) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name == name]


def test_one_line_per_message_and_a_summary_that_counts_them_all(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, "milterkit")

    async def scenario() -> None:
        async with serving(setup=_filter) as client:
            await _messages(
                client.address_spec,
                {"sender": "<spam@spam.example>"},
                {"recipients": ("<nobody@example.com>", "<b@example.com>")},
                {}, abort_last=True)

    run(scenario())
    lines = [r.getMessage() for r in _lines(caplog, "milterkit.messages")]
    assert len(lines) == 3, lines
    assert lines[0].endswith("ms")
    assert ' '.join(lines[0].split()[:-1]).split("] ", 1)[1] == (
        'message queue_id=QID0 from=<spam@spam.example> recipients=0 verdict=reject '
        'stage=envelope-from reply="550 5.7.1 Go away"')
    assert "queue_id=QID1 from=<sender@example.org> recipients=1 refused=1 verdict=continue " \
           "stage=end-of-message" in lines[1]
    assert "queue_id=QID2 from=<a@example.org> recipients=1 verdict=aborted " \
           "stage=envelope-recipient" in lines[2]
    fields = _lines(caplog, "milterkit.messages")[0].milterkit  # type: ignore[attr-defined]
    assert fields["verdict"] == "reject" and fields["queue_id"] == "QID0"
    summary = [r.getMessage() for r in _lines(caplog, "milterkit.server")
               if "session ended" in r.getMessage()]
    assert len(summary) == 1
    assert "3 messages (aborted 1, continue 1, reject 1)" in summary[0]


def test_debug_has_a_line_per_stage(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, "milterkit")

    async def scenario() -> None:
        async with serving(setup=_filter) as client:
            await _messages(client.address_spec,
                            {"recipients": ("<nobody@example.com>",)})

    run(scenario())
    lines = [r.getMessage().split("] ", 1)[1] for r in _lines(caplog, "milterkit.stages")]
    assert "envelope-from <sender@example.org>: continue" in lines
    assert 'envelope-recipient <nobody@example.com>: reject reply="550 5.1.1 No such user"' \
        in lines
    # Only the events the MTA sends: nobody handles connect and helo, so they are skipped.
    assert not any(line.startswith(("connect", "helo")) for line in lines), lines


def test_each_composed_filters_verdict_is_on_the_line(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, "milterkit")
    with short_tmpdir() as tmp:
        (tmp / "strict.py").write_text(
            "from milterkit import Status\n"
            "def setup(client):\n"
            "    client.connect('envelope-from', lambda c, a: Status.REJECT if 'spam' in a "
            "else None)\n")
        (tmp / "relaxed.py").write_text("def setup(client):\n"
                                        "    client.connect('header', lambda c, n, v: None)\n")
        setup = compose(str(tmp / "strict.py"), str(tmp / "relaxed.py"))

        async def scenario() -> None:
            async with serving(setup=setup) as client:
                await _messages(client.address_spec, {"sender": "<spam@x.example>"}, {})

        run(scenario())
    lines = [r.getMessage() for r in _lines(caplog, "milterkit.messages")]
    assert len(lines) == 2, lines
    assert "verdict=reject stage=envelope-from" in lines[0]
    assert 'filters="strict=reject, relaxed=continue"' in lines[0]
    assert "verdict=continue stage=end-of-message" in lines[1]
    assert 'filters="strict=continue, relaxed=continue"' in lines[1]


def test_json_formatter_puts_the_fields_at_the_top_level() -> None:
    record = logging.LogRecord("milterkit.messages", logging.INFO, __file__, 1, "%s", ("x",),
                               None)
    record.milterkit = {"event": "message", "verdict": "reject"}
    data = json.loads(JsonFormatter().format(record))
    assert data["message"] == "x" and data["verdict"] == "reject"
    assert data["level"] == "INFO" and data["logger"] == "milterkit.messages"


def test_run_log_format_json() -> None:
    with short_tmpdir() as tmp:
        (tmp / "f.py").write_text("def setup(client):\n"
                                  "    client.connect('header', lambda c, n, v: None)\n")
        spec = f"unix:{tmp}/m.sock"
        with RunningServer([f"{tmp}/f.py", "-l", spec, "--log-format", "json"]) as server:
            server.wait_for('"listening on')
            run(_messages(spec, {}))  # no MAIL and RCPT sent: the filter handles none
            server.wait_for('"event": "session"')
            assert server.stop() == 0
            records = [json.loads(line) for line in server.log.splitlines() if line.strip()]
    messages = [r for r in records if r.get("event") == "message"]
    assert len(messages) == 1
    assert messages[0]["queue_id"] == "QID0" and messages[0]["verdict"] == "continue"
    assert messages[0]["recipients"] is None  # no RCPT handler: the MTA sent no RCPT
    assert messages[0]["from"] is None
    (session,) = [r for r in records if r.get("event") == "session"]
    assert session["messages"] == 1 and session["verdicts"] == {"continue": 1}


def test_the_log_is_connected_once_per_client_and_runs_between_client_and_context_handlers(
    caplog: pytest.LogCaptureFixture,
) -> None:
    # Issue 15: the runtime's handlers sit on one table per Client (none on each context),
    # in the order they had when each connection connected its own.
    caplog.set_level(logging.INFO, "milterkit")
    order: list[str] = []
    own_signals: list[int] = []

    def setup(client: Client) -> None:
        @client.on("envelope-from-response")
        def first(context: ClientContext, status: Status) -> None:
            order.append(f"client {len(_lines(caplog, 'milterkit.messages'))}")

        @client.on("connection-established")
        def established(client: Client, context: ClientContext) -> None:
            own_signals.append(len(context.signals._signals))

            @context.on("envelope-from-response")
            def last(context: ClientContext, status: Status) -> None:
                order.append(f"context {len(_lines(caplog, 'milterkit.messages'))}")

        _filter(client)

    async def scenario() -> None:
        async with serving(setup=setup) as client:
            await _messages(client.address_spec, {"sender": "<spam@spam.example>"})
            assert len(client.session_signals._connections) == 0  # forgotten when lost

    run(scenario())
    assert own_signals == [0]
    assert order == ["client 0", "context 1"]  # the message line between the two


def test_a_context_with_another_parent_table_is_logged_too(
    caplog: pytest.LogCaptureFixture,
) -> None:
    # A create_context override may give its contexts a table of its own between theirs and
    # the Client's: the runtime's handlers then go below that one, for that connection.
    from milterkit.signals import SignalTable
    from milterkit.stages import SIGNAL_NAMES

    class OwnTable(Client):
        def create_context(self, write: Any) -> ClientContext:
            context = super().create_context(write)
            context.signals.parent = SignalTable(SIGNAL_NAMES, parent=self.signals)
            return context

    caplog.set_level(logging.INFO, "milterkit")

    async def scenario() -> None:
        client = OwnTable("inet:0@127.0.0.1", socket_activation=False, timeout=30.0)
        _filter(client)
        async with client:
            await _messages(client.address_spec, {"sender": "<spam@spam.example>"})

    run(scenario())
    (line,) = [r.getMessage() for r in _lines(caplog, "milterkit.messages")]
    assert "verdict=reject stage=envelope-from" in line
    assert any("session ended (finished)" in r.getMessage() for r in caplog.records)
