"""The runtime under bad peers and failing handlers, over real sockets: silent and stuck MTAs,
broken packets, exceptions in coroutine and notification handlers, and many short-lived
connections leaving nothing behind."""

from __future__ import annotations

import asyncio
import gc
import logging
import os
import weakref
from collections.abc import Callable
from typing import Any

import pytest
from serverlib import MTA, run, serving, session

from milterkit import ClientContext, Status
from milterkit.protocol import commands as cmd
from milterkit.protocol.replies import Continue, Reject, ReplyText
from milterkit.server import Client

BIG = 20_000_000  # far more than the socket buffers hold, so an MTA that never reads blocks us


def _finished_event(client: Client) -> asyncio.Event:
    """Set when a connection has ended on our side (``connection-finished``)."""
    event = asyncio.Event()
    client.connect("connection-finished", lambda c, context: event.set())
    return event


def _big_body(client: Client) -> None:
    client.connect("end-of-message", lambda ctx, chunk: ctx.replace_body(b"x" * BIG))


async def _stuck_after_big_reply(client: Client) -> MTA:
    """An MTA that asks for a message, gets a huge reply and never reads it."""
    mta = await MTA.open(client.address_spec)
    await mta.negotiate()
    await mta.connect()
    mta.send_nowait(cmd.Mail("<a@b>"), cmd.Rcpt("<c@d>"), cmd.Data(), cmd.EndOfHeader(),
                    cmd.EndOfMessage())
    return mta


def test_timeout_ends_a_session_whose_peer_never_reads() -> None:
    # The replies we queued cannot be flushed to an MTA that reads nothing: a graceful close
    # would wait for ever, so the timed-out connection must still end.
    async def scenario() -> None:
        async with serving("inet:0@127.0.0.1", _big_body, timeout=0.3,
                           shutdown_timeout=0.1) as client:
            ended = _finished_event(client)
            mta = await _stuck_after_big_reply(client)
            await asyncio.wait_for(ended.wait(), 10.0)
            assert not client.connections and client.served == 1
            await mta.close()

    run(scenario())


def test_a_close_that_cannot_flush_is_aborted_after_the_timeout(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async def scenario() -> None:
        async with serving("inet:0@127.0.0.1", _big_body, timeout=0.3,
                           shutdown_timeout=0.1) as client:
            ended = _finished_event(client)
            mta = await _stuck_after_big_reply(client)
            mta.send_nowait(b"\x00\x00\x00\x01Z")  # then a protocol error: we close
            await asyncio.wait_for(ended.wait(), 10.0)
            assert not client.connections
            await mta.close()

    caplog.set_level(logging.INFO, "milterkit")
    run(scenario())
    lines = [r.getMessage() for r in caplog.records if r.name == "milterkit.server"]
    assert any("session ended (protocol error)" in line for line in lines)


def test_a_client_that_sends_nothing_is_timed_out() -> None:
    # The timer is armed when the connection is made, not on the first byte.
    async def scenario() -> None:
        async with serving("inet:0@127.0.0.1", timeout=0.2) as client:
            ended = _finished_event(client)
            mta = await MTA.open(client.address_spec)
            assert await mta.at_eof()
            await asyncio.wait_for(ended.wait(), 5.0)
            assert not client.connections
            await mta.close()

    run(scenario())


@pytest.mark.parametrize(
    ("data", "logged"),
    [
        (b"\x7f\xff\xff\xffO", "over the limit"),  # a huge length, refused before allocating
        (b"\x00\x00\x00\x01Z", "unknown command"),
        (b"\x00\x00\x00\x00", "length 0"),
    ],
)
def test_bad_packets_end_only_that_connection(
    data: bytes, logged: str, caplog: pytest.LogCaptureFixture,
) -> None:
    async def scenario() -> None:
        async with serving("inet:0@127.0.0.1") as client:
            bad = await MTA.open(client.address_spec)
            bad.send_nowait(data)
            assert await bad.at_eof()
            await bad.close()
            assert (await session(client.address_spec))[0].verdict == Continue()

    caplog.set_level(logging.INFO, "milterkit")
    run(scenario())
    lines = [r.getMessage() for r in caplog.records if r.name == "milterkit.server"]
    assert any("after a protocol error" in line and logged in line for line in lines)


def test_eof_inside_a_packet_aborts_and_finishes(caplog: pytest.LogCaptureFixture) -> None:
    events: list[str] = []

    def setup(client: Client) -> None:
        client.connect("envelope-from", lambda ctx, address: None)
        client.connect("abort", lambda ctx, state: events.append("abort"))
        client.connect("finished", lambda ctx: events.append("finished"))

    async def scenario() -> None:
        async with serving("inet:0@127.0.0.1", setup) as client:
            ended = _finished_event(client)
            mta = await MTA.open(client.address_spec)
            await mta.negotiate()
            await mta.connect()
            await mta.step(cmd.Mail("<a@b>"))
            mta.send_nowait(b"\x00\x00\x00\x10R<c")  # 16 bytes announced, 3 sent
            await mta.writer.drain()
            await mta.close()
            await asyncio.wait_for(ended.wait(), 5.0)

    caplog.set_level(logging.INFO, "milterkit")
    run(scenario())
    assert events == ["abort", "finished"]
    messages = [r.getMessage() for r in caplog.records]
    assert any("connection closed inside a packet (7 bytes dropped)" in m for m in messages)
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]


def test_an_exception_in_a_coroutine_handler_gets_the_policy() -> None:
    async def failing(context: ClientContext, address: str) -> Status | None:
        await asyncio.sleep(0)
        if "boom" in address:
            raise RuntimeError("async handler failed on purpose")
        return None

    async def scenario() -> None:
        async with serving("inet:0@127.0.0.1", lambda c: c.connect("envelope-from", failing),
                           exception_policy=Status.REJECT,
                           exception_reply="550 5.7.0 Filter broke") as client:
            mta = await MTA.open(client.address_spec)
            await mta.negotiate()
            await mta.connect()
            first = await mta.message(sender="<boom@example.org>")
            assert first.steps["envelope-from"].final == ReplyText("550 5.7.0 Filter broke")
            assert (await mta.message()).verdict == Continue()  # the connection lives on
            await mta.close()

    run(scenario())


def test_exceptions_in_response_and_finished_handlers_are_logged_not_fatal(
    caplog: pytest.LogCaptureFixture,
) -> None:
    def boom(context: ClientContext, *args: object) -> None:
        raise RuntimeError("notification handler failed")

    def setup(client: Client) -> None:
        client.connect("helo", lambda ctx, name: None)  # so that HELO is sent at all
        client.connect("helo-response", boom)
        client.connect("finished", boom)
        client.connect("connection-finished", boom)

    async def scenario() -> None:
        async with serving("inet:0@127.0.0.1", setup) as client:
            for _ in range(2):  # the server lives on
                (outcome,) = await session(client.address_spec)
                assert outcome.verdict == Continue()
            assert not client.connections

    caplog.set_level(logging.INFO, "milterkit")
    run(scenario())
    failures = [r for r in caplog.records if r.exc_info and "notification handler" in
                str(r.exc_info[1])]
    assert len(failures) == 6  # three handlers, two sessions


def test_thousands_of_connections_leave_nothing_behind() -> None:
    # Contexts, connections, timers, tasks and descriptors of ended sessions must all go: a
    # timer or a task left behind would keep its connection (and context) alive.
    contexts: weakref.WeakSet[ClientContext] = weakref.WeakSet()

    def setup(client: Client) -> None:
        client.connect("connection-established", lambda c, context: contexts.add(context))

        async def slow(context: ClientContext, address: str) -> None:
            if "slow" in address:
                await asyncio.sleep(60)  # still running when the MTA goes away

        client.connect("envelope-recipient", slow)

    async def one(spec: str, kind: int) -> None:
        mta = await MTA.open(spec)
        if kind == 1:
            await mta.negotiate()
        elif kind == 2:
            await mta.session()
        elif kind == 3:
            await mta.negotiate()
            await mta.connect()
            mta.send_nowait(cmd.Mail("<a@b>"), cmd.Rcpt("<slow@d>"))
        elif kind == 4:
            mta.send_nowait(b"\x00\x00")  # EOF inside the length prefix
        await mta.close()

    async def scenario() -> None:
        async with serving("inet:0@127.0.0.1", setup, progress_interval=5.0) as client:
            tasks = len(asyncio.all_tasks())
            ended = {100: asyncio.Event(), 2000: asyncio.Event()}

            def count(c: Client, context: ClientContext) -> None:
                if c.served in ended:
                    ended[c.served].set()

            client.connect("connection-finished", count)
            # A first round, so that descriptors the loop opens once are counted in the baseline.
            await asyncio.gather(*(one(client.address_spec, i % 5) for i in range(100)))
            await asyncio.wait_for(ended[100].wait(), 30.0)
            descriptors = len(os.listdir("/proc/self/fd"))
            for _ in range(19):
                await asyncio.gather(*(one(client.address_spec, i % 5) for i in range(100)))
            await asyncio.wait_for(ended[2000].wait(), 30.0)
            assert not client.connections
            for _ in range(3):  # cancelled tasks finish on the next loop iterations
                await asyncio.sleep(0)
            assert len(asyncio.all_tasks()) == tasks
            gc.collect()
            assert len(contexts) == 0
            assert len(os.listdir("/proc/self/fd")) <= descriptors

    run(scenario(), timeout=120)


def _peer_line(caplog: pytest.LogCaptureFixture, text: str) -> logging.LogRecord:
    (record,) = [r for r in caplog.records
                 if r.name == "milterkit.server" and text in r.getMessage()]
    return record


def test_a_context_class_that_raises_closes_only_that_connection(
    caplog: pytest.LogCaptureFixture,
) -> None:
    failures = ["no database"]

    class Flaky(ClientContext):
        def __init__(self, write: Callable[[bytes], object], **options: Any) -> None:
            # The Client builds one with tag=0 to check its options; fail on a connection only.
            if options.get("tag") is None and failures:
                raise RuntimeError(failures.pop())
            super().__init__(write, **options)

    async def scenario() -> int:
        async with serving("inet:0@127.0.0.1", context_class=Flaky) as client:
            broken = await MTA.open(client.address_spec, timeout=3.0)
            local_port: int = broken.writer.get_extra_info("sockname")[1]
            assert await broken.at_eof(), "the connection whose context failed was left open"
            await broken.close()
            assert (await session(client.address_spec))[0].verdict == Continue()
            return local_port

    caplog.set_level(logging.INFO, "milterkit")
    port = run(scenario())
    record = _peer_line(caplog, "cannot set up the connection")
    assert f"[127.0.0.1]:{port}" in record.getMessage()
    assert record.levelno == logging.ERROR and record.exc_info is not None
    assert "no database" in str(record.exc_info[1])


def test_a_connection_established_handler_that_raises_closes_that_connection(
    caplog: pytest.LogCaptureFixture,
) -> None:
    # Such a handler is where per-connection filters are connected: serving the connection
    # without them would let its mail through unfiltered.
    failures = ["plugin broke"]

    def plug(client: Client, context: ClientContext) -> None:
        if failures:
            raise RuntimeError(failures.pop())
        context.connect("envelope-from", lambda ctx, address: Status.REJECT)

    async def scenario() -> int:
        async with serving("inet:0@127.0.0.1",
                           lambda c: c.connect("connection-established", plug)) as client:
            finished = _finished_event(client)
            broken = await MTA.open(client.address_spec, timeout=3.0)
            local_port: int = broken.writer.get_extra_info("sockname")[1]
            assert await broken.at_eof(), "the connection whose setup failed was left open"
            await broken.close()
            await asyncio.wait_for(finished.wait(), 5.0)
            (outcome,) = await session(client.address_spec)
            assert outcome.steps["envelope-from"].final == Reject()  # its filter is there
            return local_port

    caplog.set_level(logging.INFO, "milterkit")
    port = run(scenario())
    record = _peer_line(caplog, "cannot set up the connection")
    assert f"[127.0.0.1]:{port}" in record.getMessage()
    assert record.levelno == logging.ERROR and record.exc_info is not None
    assert "plugin broke" in str(record.exc_info[1])


def test_a_session_whose_ending_raises_is_still_reported_closed(
    caplog: pytest.LogCaptureFixture,
) -> None:
    # A context whose connection_lost raises must still leave the Client's books (the error is
    # logged), so it counts against nothing and shutdown ends at once rather than after the
    # abort_timeout guard.
    class Leaky(ClientContext):
        def connection_lost(self) -> None:
            raise RuntimeError("cleanup failed")

    async def scenario() -> None:
        client = Client("inet:0@127.0.0.1", context_class=Leaky, socket_activation=False,
                        shutdown_timeout=0.1)
        client.abort_timeout = 30.0
        await client.start()
        serving = asyncio.ensure_future(client.serve_forever())
        mta = await MTA.open(client.address_spec)
        await mta.negotiate()  # a session in flight: the shutdown's deadline will close it
        try:
            client.request_shutdown()
            await asyncio.wait_for(serving, 10.0)  # well before abort_timeout
        finally:
            await mta.close()
        assert not client.connections

    caplog.set_level(logging.INFO, "milterkit")
    run(scenario(), timeout=20.0)
    messages = [r.getMessage() for r in caplog.records]
    assert not [m for m in messages if "did not report" in m]
    (record,) = [r for r in caplog.records if "ending the session raised" in r.getMessage()]
    assert record.exc_info is not None and "cleanup failed" in str(record.exc_info[1])
