"""The asyncio Client over real sockets: sessions, concurrency, coroutines, timeouts, the
exception policy, protocol errors, limits, shutdown and logging."""

from __future__ import annotations

import asyncio
import logging
import socket
from typing import Any

import pytest
from serverlib import MTA, run, serving, session, short_tmpdir

from milterkit import ActionFlag, ClientContext, ProtocolFlag, State, Status
from milterkit.protocol import commands as cmd
from milterkit.protocol.replies import (
    Accept,
    AddHeader,
    Continue,
    NegotiateReply,
    Reject,
    ReplyText,
    TempFail,
)
from milterkit.server import Client


def add_header(client: Client) -> None:
    client.connect("end-of-message", lambda ctx, chunk: ctx.add_header("X-Seen", str(ctx.tag)))


@pytest.mark.parametrize("family", ["unix", "inet"])
def test_full_session_two_messages(family: str) -> None:
    with short_tmpdir() as tmp:
        spec = f"unix:{tmp}/m.sock" if family == "unix" else "inet:0@127.0.0.1"
        seen: list[tuple[str, Any]] = []

        def setup(client: Client) -> None:
            add_header(client)
            client.connect("connect", lambda ctx, host, addr: seen.append(("connect", host)))
            client.connect("envelope-from", lambda ctx, a: seen.append(("from", a)))
            client.connect("header", lambda ctx, n, v: seen.append(("header", n)))
            client.connect("body", lambda ctx, chunk: seen.append(("body", chunk)))

        async def scenario() -> None:
            async with serving(spec, setup) as client:
                outcomes = await session(client.address_spec, messages=2, body=b"x" * 70000)
                assert client.served == 1
            for outcome in outcomes:
                assert outcome.verdict == Continue()
                assert len(outcome.modifications) == 1
                assert isinstance(outcome.modifications[0], AddHeader)
            assert seen.count(("connect", "client.example")) == 1
            assert seen.count(("from", "<sender@example.org>")) == 2
            assert seen.count(("header", "Subject")) == 2
            bodies = [chunk for kind, chunk in seen if kind == "body"]
            assert b"".join(bodies) == b"x" * 140000
            assert len(bodies) == 4  # 65535 + 4465 per message

        run(scenario())


def test_hundred_concurrent_connections() -> None:
    with short_tmpdir() as tmp:
        async def scenario() -> None:
            for spec in (f"unix:{tmp}/m.sock", "inet:0@127.0.0.1"):
                async with serving(spec, add_header) as client:
                    results = await asyncio.gather(
                        *(session(client.address_spec, messages=2) for _ in range(100))
                    )
                    assert client.served == 100
                tags = set()
                for outcomes in results:
                    assert [o.verdict for o in outcomes] == [Continue(), Continue()]
                    (header,) = outcomes[0].modifications
                    assert isinstance(header, AddHeader)
                    tags.add(header.value)
                assert len(tags) == 100  # one context per connection

        run(scenario(), timeout=60)


def test_handlers_on_client_and_per_context_via_connection_established() -> None:
    events: list[str] = []

    def setup(client: Client) -> None:
        @client.on("listen-started")
        def started(c: Client, address: Any) -> None:
            events.append(f"listen-started {address[0]}")

        @client.on("connection-established")
        def established(c: Client, context: ClientContext) -> None:
            events.append("established")
            context.connect("helo", lambda ctx, name: events.append(f"helo {name}"))

        @client.on("connection-finished")
        def finished(c: Client, context: ClientContext) -> None:
            events.append(f"finished {context.state.nick}")

    async def scenario() -> None:
        async with serving("inet:0@127.0.0.1", setup) as client:
            await session(client.address_spec)
            await session(client.address_spec)

    run(scenario())
    assert events == [
        "listen-started 127.0.0.1", "established", "helo client.example", "finished finished",
        "established", "helo client.example", "finished finished",
    ]


def test_coroutine_handler_answers_later_while_others_are_served() -> None:
    release = asyncio.Event()

    async def slow_sender(context: ClientContext, address: str) -> Status | None:
        if "slow" in address:
            await release.wait()
            return context.reject("550", "5.7.1", "slow and rejected")
        return None

    async def scenario() -> None:
        async with serving("inet:0@127.0.0.1", lambda c: c.connect("envelope-from", slow_sender),
                           progress_interval=None) as client:
            slow = await MTA.open(client.address_spec)
            await slow.negotiate()
            await slow.connect()
            await slow.helo()
            pending = asyncio.ensure_future(slow.step(cmd.Mail("<slow@example.org>")))
            await asyncio.sleep(0.05)
            assert not pending.done()
            # Another connection is served from start to end meanwhile.
            outcomes = await session(client.address_spec, sender="<fast@example.org>")
            assert outcomes[0].verdict == Continue()
            assert not pending.done()
            release.set()
            step = await pending
            assert step.final == ReplyText("550 5.7.1 slow and rejected")
            await slow.close()

    run(scenario())


def test_progress_keepalives_while_a_coroutine_runs() -> None:
    async def slow(context: ClientContext, chunk: bytes) -> None:
        await asyncio.sleep(0.35)
        context.add_header("X-Slow", "done")

    async def scenario() -> None:
        async with serving("inet:0@127.0.0.1", lambda c: c.connect("end-of-message", slow),
                           progress_interval=0.1) as client:
            (outcome,) = await session(client.address_spec)
            step = outcome.steps["end-of-message"]
            assert 1 <= step.progress <= 4
            assert outcome.modifications == [AddHeader("X-Slow", "done")]
            assert outcome.verdict == Continue()

    run(scenario())


def test_inactivity_timeout_aborts_and_closes(caplog: pytest.LogCaptureFixture) -> None:
    events: list[str] = []

    def setup(client: Client) -> None:
        client.connect("envelope-from", lambda ctx, address: None)  # so MAIL is sent
        client.connect("timeout", lambda ctx: events.append("timeout"))
        client.connect("abort", lambda ctx, state: events.append(f"abort {state.nick}"))
        client.connect("finished", lambda ctx: events.append("finished"))

    async def scenario() -> float:
        async with serving("inet:0@127.0.0.1", setup, timeout=0.3) as client:
            mta = await MTA.open(client.address_spec)
            await mta.negotiate()
            await mta.connect()
            await mta.step(cmd.Mail("<a@example.org>"))
            started = asyncio.get_running_loop().time()
            assert await mta.at_eof()
            waited = asyncio.get_running_loop().time() - started
            await mta.close()
            return waited

    caplog.set_level(logging.INFO, "milterkit")
    waited = run(scenario())
    assert waited >= 0.25  # not before the timeout (run() bounds it from above)
    assert events == ["timeout", "abort envelope-from-replied", "finished"]
    assert any("no activity for 0.3 s" in r.getMessage() for r in caplog.records)
    assert any("session ended (timeout)" in r.getMessage() for r in caplog.records)


def test_the_timeout_does_not_run_while_a_handler_owes_the_reply() -> None:
    """libmilter times only the MTA's I/O: a slow handler is the milter's own business (the
    handler deadline bounds it), so the inactivity timer waits for its reply."""
    events: list[str] = []

    def setup(client: Client) -> None:
        async def slow(ctx: ClientContext, address: str) -> None:
            await asyncio.sleep(0.8)  # well past the 0.3 s inactivity timeout

        client.connect("envelope-from", slow)
        client.connect("timeout", lambda ctx: events.append("timeout"))

    async def scenario() -> None:
        async with serving("inet:0@127.0.0.1", setup, timeout=0.3) as client:
            mta = await MTA.open(client.address_spec)
            await mta.negotiate()
            await mta.connect()
            assert (await mta.step(cmd.Mail("<a@example.org>"))).final == Continue()
            # Measured again from the reply: the MTA's silence still times out.
            started = asyncio.get_running_loop().time()
            assert await mta.at_eof()
            assert asyncio.get_running_loop().time() - started >= 0.25
            await mta.close()

    run(scenario())
    assert events == ["timeout"]


def test_activity_rearms_the_timeout() -> None:
    async def scenario() -> None:
        async with serving("inet:0@127.0.0.1", timeout=0.3) as client:
            mta = await MTA.open(client.address_spec)
            await mta.negotiate()
            await mta.connect()
            for _ in range(5):  # 0.75 s in all, never 0.3 s idle
                await asyncio.sleep(0.15)
                assert (await mta.helo()).passed
            await mta.close()

    run(scenario())


@pytest.mark.parametrize(
    ("policy", "reply", "expected"),
    [
        (Status.TEMPORARY_FAILURE, None,
         ReplyText("451 4.3.0 Temporary failure in the mail filter")),
        (Status.TEMPORARY_FAILURE, "", TempFail()),
        (Status.REJECT, None, Reject()),
        (Status.REJECT, "550 5.7.0 Filter broke", ReplyText("550 5.7.0 Filter broke")),
        (Status.ACCEPT, None, Accept()),
        (Status.CONTINUE, None, Continue()),
    ],
)
def test_exception_policy(
    policy: Status, reply: str | None, expected: object, caplog: pytest.LogCaptureFixture
) -> None:
    def boom(context: ClientContext, address: str) -> None:
        if "boom" in address:
            raise RuntimeError("handler failed on purpose")

    options: dict[str, Any] = {"exception_policy": policy}
    if reply is not None:
        options["exception_reply"] = reply or None

    async def scenario() -> tuple[object, object]:
        async with serving("inet:0@127.0.0.1", lambda c: c.connect("envelope-from", boom),
                           **options) as client:
            mta = await MTA.open(client.address_spec)
            await mta.negotiate()
            await mta.connect()
            await mta.helo()
            first = await mta.message(sender="<boom@example.org>")
            # The connection lives on: the next message is handled normally.
            second = await mta.message(sender="<fine@example.org>")
            mta.send_nowait(cmd.Quit())
            assert await mta.at_eof()
            await mta.close()
            return first.steps["envelope-from"].final, second.verdict

    caplog.set_level(logging.INFO, "milterkit")
    first, second = run(scenario())
    assert first == expected
    assert second == Continue()
    (record,) = [r for r in caplog.records if "raised" in r.getMessage()]
    assert record.exc_info is not None and "handler failed on purpose" in str(record.exc_info[1])
    assert record.getMessage().startswith("[")  # the connection's tag
    assert policy.name in record.getMessage()


def test_exception_in_a_no_reply_stage_writes_nothing() -> None:
    def boom(context: ClientContext, name: str, value: str) -> None:
        raise RuntimeError("header handler failed")

    async def scenario() -> None:
        async with serving(
            "inet:0@127.0.0.1", lambda c: c.connect("header", boom),
            protocol=ProtocolFlag.NO_REPLY_HEADER,
        ) as client:
            mta = await MTA.open(client.address_spec)
            reply = await mta.negotiate()
            assert reply.protocol & ProtocolFlag.NO_REPLY_HEADER
            await mta.connect()
            mta.send_nowait(cmd.Mail("<a@b>"), cmd.Rcpt("<c@d>"), cmd.Data())
            for _ in range(3):
                assert await mta.read_reply() == Continue()
            mta.send_nowait(cmd.Header("Subject", "one"), cmd.Header("Subject", "two"))
            mta.send_nowait(cmd.EndOfHeader())
            # The first packet after the headers is the end-of-header reply: nothing was
            # written for the two failed headers.
            assert await mta.read_reply() == Continue()
            await mta.close()

    run(scenario())


def test_protocol_error_closes_only_that_connection(caplog: pytest.LogCaptureFixture) -> None:
    events: list[str] = []

    def setup(client: Client) -> None:
        client.connect("envelope-from", lambda ctx, address: None)  # so MAIL is sent
        client.connect("abort", lambda ctx, state: events.append(f"abort {ctx.tag}"))
        client.connect("finished", lambda ctx: events.append(f"finished {ctx.tag}"))
        client.connect("error", lambda ctx, exc: events.append(f"error {ctx.tag}"))

    async def scenario() -> None:
        async with serving("inet:0@127.0.0.1", setup) as client:
            good = await MTA.open(client.address_spec)
            await good.negotiate()
            await good.connect()
            bad = await MTA.open(client.address_spec)
            await bad.negotiate()
            await bad.connect()
            await bad.step(cmd.Mail("<a@b>"))
            bad_tag = max(c.context.tag for c in client.connections if c.context is not None)
            bad.send_nowait(b"\x00\x00\x00\x00")  # a zero-length packet
            assert await bad.at_eof()
            # The other connection is still served, and new ones are accepted.
            outcome = await good.message()
            assert outcome.verdict == Continue()
            assert (await session(client.address_spec))[0].verdict == Continue()
            await good.close()
            await bad.close()
            assert events[:3] == [f"error {bad_tag}", f"abort {bad_tag}", f"finished {bad_tag}"]

    caplog.set_level(logging.INFO, "milterkit")
    run(scenario())
    lines = [r.getMessage() for r in caplog.records if r.name == "milterkit.server"]
    assert any("protocol error" in line and "length 0" in line for line in lines)
    assert any("session ended (protocol error)" in line for line in lines)


def test_max_connections_holds_accept_without_blocking_the_loop() -> None:
    async def scenario() -> None:
        async with serving("inet:0@127.0.0.1", max_connections=2) as client:
            first, second, third = [await MTA.open(client.address_spec) for _ in range(3)]
            assert isinstance(await first.negotiate(), NegotiateReply)
            assert isinstance(await second.negotiate(), NegotiateReply)
            third.send_nowait(cmd.Negotiate(6, ActionFlag(0x1FF), ProtocolFlag(0x1FFFFF)))
            third.timeout = 0.3
            with pytest.raises(asyncio.TimeoutError):
                await third.read_reply()  # waits in the backlog, unanswered
            # The loop is not blocked: the two admitted connections still work.
            assert (await first.connect()).passed
            assert (await second.connect()).passed
            assert len(client.connections) == 2
            await first.close()
            third.timeout = 5.0
            assert isinstance(await third.read_reply(), NegotiateReply)
            await second.close()
            await third.close()

    run(scenario())


def test_graceful_shutdown_drains_a_slow_session() -> None:
    started = asyncio.Event()

    async def slow(context: ClientContext, chunk: bytes) -> None:
        started.set()
        await asyncio.sleep(0.4)
        context.add_header("X-Drained", "yes")

    async def scenario() -> None:
        with short_tmpdir() as tmp:
            path = f"{tmp}/m.sock"
            client = Client(path, socket_activation=False)
            client.connect("end-of-message", slow)
            await client.start()
            mta = await MTA.open(path)
            await mta.negotiate()
            await mta.connect()
            await mta.helo()
            message = asyncio.ensure_future(mta.message())
            await started.wait()
            shutdown = asyncio.ensure_future(client.shutdown(5.0))
            await asyncio.sleep(0.05)
            # No longer accepting: the socket file is gone.
            with pytest.raises(OSError):
                await MTA.open(path)
            assert not shutdown.done()
            outcome = await message
            assert outcome.modifications == [AddHeader("X-Drained", "yes")]
            mta.send_nowait(cmd.Quit())
            assert await mta.at_eof()
            await asyncio.wait_for(shutdown, 2.0)
            await mta.close()

    run(scenario())


def test_shutdown_deadline_closes_sessions_still_open() -> None:
    events: list[str] = []

    async def scenario() -> None:
        client = Client("inet:0@127.0.0.1", socket_activation=False)
        client.connect("envelope-from", lambda ctx, address: None)  # so MAIL is sent
        client.connect("abort", lambda ctx, state: events.append(f"abort {state.nick}"))
        client.connect("finished", lambda ctx: events.append("finished"))
        await client.start()
        mta = await MTA.open(client.address_spec)
        await mta.negotiate()
        await mta.connect()
        await mta.step(cmd.Mail("<a@b>"))  # a message in progress, then silence
        loop = asyncio.get_running_loop()
        begun = loop.time()
        await client.shutdown(0.3)
        assert loop.time() - begun >= 0.25  # the deadline was waited for
        assert await mta.at_eof()
        await mta.close()

    run(scenario())
    assert events == ["abort envelope-from-replied", "finished"]


def test_every_connection_log_line_carries_its_tag(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, "milterkit")

    async def scenario() -> int:
        async with serving("inet:0@127.0.0.1", add_header) as client:
            outcomes = await session(client.address_spec, messages=2)
            header = outcomes[0].modifications[0]
            assert isinstance(header, AddHeader)
            return int(header.value)

    tag = run(scenario())
    connection_lines = [
        r.getMessage() for r in caplog.records
        if r.name == "milterkit.server"
        and not r.getMessage().startswith(("listening", "shut down", "event loop"))
    ]
    assert connection_lines
    assert all(line.startswith(f"[{tag}] ") for line in connection_lines)
    summary = [line for line in connection_lines if "session ended" in line]
    assert len(summary) == 1
    assert "session ended (finished): 2 messages (continue 2)" in summary[0]


def test_state_after_quit_and_eof() -> None:
    states: list[State] = []

    async def scenario() -> None:
        async with serving("inet:0@127.0.0.1") as client:
            client.connect("connection-finished", lambda c, ctx: states.append(ctx.state))
            mta = await MTA.open(client.address_spec)
            await mta.negotiate()
            await mta.close()  # EOF without QUIT
            for _ in range(50):
                if states:
                    break
                await asyncio.sleep(0.01)

    run(scenario())
    assert states == [State.FINISHED]


def test_client_rejects_bad_options() -> None:
    with pytest.raises(ValueError, match="max_connections"):
        Client(max_connections=0)
    with pytest.raises(ValueError, match="exception_policy"):
        Client(exception_policy=Status.DISCARD)
    with pytest.raises(ValueError, match="unknown signal 'envelope_from'"):
        Client().connect("envelope_from", lambda ctx, a: None)
    with pytest.raises(RuntimeError, match="not listening"):
        _ = Client().address
    assert socket.SOMAXCONN == Client().backlog


@pytest.mark.parametrize("as_worker", [False, True])
def test_a_worker_leaves_the_socket_file_to_its_master(as_worker: bool) -> None:
    with short_tmpdir() as tmp:
        path = tmp / "m.sock"

        async def scenario() -> None:
            client = Client(f"unix:{path}", socket_activation=False)
            if as_worker:
                client.become_worker(2)
            async with client:
                assert client.worker_id == (2 if as_worker else 0)
                assert path.exists()
                await session(client.address_spec)

        run(scenario())
        assert path.exists() == as_worker


def test_a_worker_id_is_one_or_more() -> None:
    with pytest.raises(ValueError, match="a worker's id is 1 or more, not 0"):
        Client("inet:0@127.0.0.1").become_worker(0)
