"""Blocking handlers in the runtime's thread pool: ``milterkit.blocking`` and ``threads=N``.

No timing: a handler that blocked the loop is caught by a barrier that two connections' handlers
must reach together (on the loop the second never comes, the barrier breaks, the verdict is a
tempfail), and thread names show where each handler ran.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from typing import Any

import pytest
from runner import RunningServer
from serverlib import EXAMPLES, MTA, Outcome, run, serving, session, short_tmpdir

import milterkit
from milterkit import Status
from milterkit.compose import compose
from milterkit.protocol.replies import Accept, AddHeader, Continue, ReplyText
from milterkit.server import Client
from milterkit.server.target import load_setup
from milterkit.testing import InProcess, Message

BARRIER_GUARD = 10.0  # seconds: only how long a broken run takes to fail


def _in_pool() -> bool:
    return threading.current_thread().name.startswith("milterkit-handler")


def _blocking_lookup(
    where: list[bool], verdict: Status, barrier: threading.Barrier | None = None,
) -> Callable[[Client], None]:
    """A setup with a ``milterkit.blocking`` MAIL handler that records whether it ran in the
    pool, waits at ``barrier`` (when given) and answers ``verdict``."""

    def setup(client: Client) -> None:
        @client.on("envelope-from")
        @milterkit.blocking
        def lookup(context: Any, address: str) -> Status:
            where.append(_in_pool())
            if barrier is not None:
                barrier.wait()  # every connection's handler is blocked here together
            return verdict

    return setup


async def _served_session(setup: Callable[[Client], None], **options: Any) -> list[Outcome]:
    """One session against a Client set up by ``setup`` with ``options``."""
    async with serving(setup=setup, **options) as client:
        return await session(client.address_spec)


async def _two_at_once(client: Client) -> list[Any]:
    spec = client.address_spec
    both = await asyncio.gather(session(spec), session(spec))
    return [outcomes[0].steps["envelope-from"].final for outcomes in both]


def test_marked_handlers_of_two_connections_block_at_the_same_time() -> None:
    barrier = threading.Barrier(2, timeout=BARRIER_GUARD)
    where: list[bool] = []

    async def scenario() -> list[Any]:
        async with serving(setup=_blocking_lookup(where, Status.ACCEPT, barrier)) as client:
            return await _two_at_once(client)

    finals = run(scenario())
    assert [type(f) for f in finals] == [Accept, Accept], finals
    assert where == [True, True]


def test_unmarked_handlers_stay_on_the_loop_without_threads() -> None:
    where: list[bool] = []

    def setup(client: Client) -> None:
        client.connect("envelope-from", lambda context, address: where.append(_in_pool()))

    async def scenario() -> None:
        async with serving(setup=setup) as client:
            await session(client.address_spec)
            assert not client.handler_threads.started  # nothing asked for a thread

    run(scenario())
    assert where == [False]


def test_threads_runs_every_plain_def_but_not_coroutines_or_on_loop() -> None:
    barrier = threading.Barrier(2, timeout=BARRIER_GUARD)
    seen: dict[str, list[bool]] = {"plain": [], "async": [], "on_loop": []}

    def setup(client: Client) -> None:
        @client.on("envelope-from")
        def plain(context: Any, address: str) -> None:
            seen["plain"].append(_in_pool())
            barrier.wait()

        @client.on("envelope-recipient")
        async def coroutine(context: Any, address: str) -> None:
            seen["async"].append(_in_pool())

        @client.on("data")
        @milterkit.on_loop
        def quick(context: Any) -> None:
            seen["on_loop"].append(_in_pool())

    async def scenario() -> list[Any]:
        async with serving(setup=setup, threads=4) as client:
            return await _two_at_once(client)

    finals = run(scenario())
    assert [type(f) for f in finals] == [Continue, Continue], finals
    assert seen == {"plain": [True, True], "async": [False, False], "on_loop": [False, False]}


def test_each_connections_handlers_run_in_order_one_at_a_time() -> None:
    # Many headers, each a threaded handler; two handlers per stage. Per connection the calls
    # must come in the MTA's order with never two of them in flight at once.
    events: dict[int, list[str]] = {}
    busy: dict[int, bool] = {}
    overlaps: list[str] = []
    lock = threading.Lock()

    def record(context: Any, what: str) -> None:
        with lock:
            if busy.get(context.tag):
                overlaps.append(what)
            busy[context.tag] = True
            events.setdefault(context.tag, []).append(what)
        threading.Event().wait(0.001)  # give another thread the chance to overlap
        with lock:
            busy[context.tag] = False

    def setup(client: Client) -> None:
        client.connect("header", lambda c, name, value: record(c, f"a:{name}"))
        client.connect("header", lambda c, name, value: record(c, f"b:{name}"))
        client.connect("end-of-message", lambda c, chunk: record(c, "eom"))

    headers = [(f"X-H{i}", "v") for i in range(20)]
    expected = [f"{who}:X-H{i}" for i in range(20) for who in "ab"] + ["eom"]

    async def scenario() -> None:
        async with serving(setup=setup, threads=8) as client:
            await asyncio.gather(*(session(client.address_spec, headers=headers)
                                   for _ in range(3)))

    run(scenario())
    assert overlaps == []
    assert len(events) == 3
    for calls in events.values():
        assert calls == expected


def test_a_blocking_class_handler_and_its_error_follow_the_policy() -> None:
    class Checker(milterkit.ClientContext):
        @milterkit.blocking
        def do_envelope_from(self, address: str) -> Status | None:
            assert _in_pool()
            if "bad" in address:
                raise RuntimeError("lookup failed")
            return Status.ACCEPT

    async def scenario() -> list[Any]:
        async with serving(context_class=Checker) as client:
            good = await session(client.address_spec)
            bad = await session(client.address_spec, sender="<bad@example.org>")
            return [good[0].steps["envelope-from"].final, bad[0].steps["envelope-from"].final]

    finals = run(scenario())
    assert [type(f) for f in finals] == [Accept, ReplyText], finals
    assert finals[1].text.startswith("451 "), finals


def test_a_plain_def_that_returns_a_coroutine_is_awaited_on_the_loop() -> None:
    def setup(client: Client) -> None:
        async def later() -> Status:
            assert not _in_pool()
            return Status.ACCEPT

        @client.on("envelope-from")
        def start(context: Any, address: str) -> Any:
            assert _in_pool()
            return later()

    (outcome,) = run(_served_session(setup, threads=1))
    assert isinstance(outcome.steps["envelope-from"].final, Accept)


def test_shutdown_stops_the_pool_and_its_threads() -> None:
    def setup(client: Client) -> None:
        client.connect("envelope-from", lambda context, address: None)

    async def scenario() -> Client:
        async with serving(setup=setup, threads=3) as client:
            await session(client.address_spec)
            assert client.handler_threads.started
            assert any(t.name.startswith("milterkit-handler") for t in threading.enumerate())
        return client

    client = run(scenario())
    assert not client.handler_threads.started
    assert not any(t.name.startswith("milterkit-handler") for t in threading.enumerate())


def test_a_progress_from_a_thread_is_written_by_the_loop() -> None:
    def setup(client: Client) -> None:
        @client.on("envelope-from")
        @milterkit.blocking
        def slow(context: Any, address: str) -> Status:
            context.progress()  # from the pool's thread
            return Status.ACCEPT

    async def scenario() -> Any:
        async with serving(setup=setup) as client:
            mta = await MTA.open(client.address_spec)
            try:
                await mta.negotiate()
                await mta.connect()
                await mta.helo()
                return await mta.message()
            finally:
                await mta.close()

    outcome = run(scenario())
    answer = outcome.steps["envelope-from"]
    assert isinstance(answer.final, Accept)
    assert len(answer.before) == 1, answer.before  # the progress packet, then the verdict


def test_blocking_refuses_a_coroutine_function() -> None:
    async def handler(context: Any, address: str) -> None:
        return None

    with pytest.raises(TypeError, match="coroutine function"):
        milterkit.blocking(handler)


def test_threads_must_be_positive() -> None:
    with pytest.raises(ValueError, match="at least 1"):
        Client("inet:0@127.0.0.1", threads=0)


def test_without_a_runtime_a_marked_handler_runs_where_it_is_called() -> None:
    where: list[bool] = []
    result = InProcess(_blocking_lookup(where, Status.REJECT)).run(Message())
    assert result.last.status is Status.REJECT
    assert where == [False]


# ------------------------------------------------------------------ the example, the command


def test_the_blocking_lookup_example_serves_connections_together() -> None:
    # The pretend blocklist answers only once four lookups are blocked in it at the same time:
    # had the example's handler run on the loop, the first would hold it and the barrier break.
    setup = load_setup(str(EXAMPLES / "blocking_lookup.py"))
    barrier = threading.Barrier(4, timeout=BARRIER_GUARD)

    def listed(domain: str) -> bool:
        barrier.wait()
        return domain in {"spam.example"}

    setup.__globals__["listed"] = listed

    async def scenario() -> list[list[Any]]:
        async with serving(setup=setup) as client:
            spec = client.address_spec
            senders = ["<a@ok.example>", "<b@spam.example>", "<c@ok.example>", "<d@ok.example>"]
            return list(await asyncio.gather(*(session(spec, sender=s) for s in senders)))

    results = run(scenario())
    outcomes = [outcomes[0] for outcomes in results]
    assert outcomes[1].steps["envelope-from"].final == ReplyText(
        "550 5.7.1 Sender domain is blocklisted")
    for outcome in (outcomes[0], outcomes[2], outcomes[3]):
        assert outcome.modifications == [AddHeader("X-Blocklist", "checked")]


THREAD_FILTER = '''
import threading

def setup(client):
    @client.on("end-of-message")
    def name(context, chunk):
        context.add_header("X-Thread", threading.current_thread().name.rstrip("_0123456789"))
'''


@pytest.mark.parametrize(("options", "thread"), [
    ([], "MainThread"), (["--threads", "2"], "milterkit-handler"),
])
def test_run_threads_option(options: list[str], thread: str) -> None:
    with short_tmpdir() as tmp:
        (tmp / "threadname.py").write_text(THREAD_FILTER)
        path = f"unix:{tmp}/m.sock"
        with RunningServer([f"{tmp}/threadname.py", "-l", path, *options]) as server:
            server.wait_for("listening on")
            (outcome,) = run(session(path))
            assert outcome.modifications == [AddHeader("X-Thread", thread)]
            assert server.stop() == 0


def test_threads_reach_composed_filters_while_the_composer_stays_on_the_loop() -> None:
    with short_tmpdir() as tmp:
        for name in ("first", "second"):
            (tmp / f"{name}.py").write_text(THREAD_FILTER)
        setup = compose(str(tmp / "first.py"), str(tmp / "second.py"))

        (outcome,) = run(_served_session(setup, threads=2))
    assert outcome.modifications == [AddHeader("X-Thread", "milterkit-handler")] * 2
