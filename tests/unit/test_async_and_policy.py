"""Coroutine handlers on a real asyncio loop, PROGRESS answered later, and the exception policy.

The ``await_hook`` here is what a runtime does, on a real event loop: run the awaitable as a
task and call ``done(result, error)`` from the task's done-callback.
"""

from __future__ import annotations

import asyncio
import warnings
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

import pytest
from unitlib import (
    FULL_PROTOCOL,
    C,
    R,
    SignalLog,
    Wire,
    negotiated,
    new_context,
    packet,
    strings,
    y,
)

from milterkit import ClientContext, State, StateError, Status
from milterkit.protocol import ActionFlag, ProtocolFlag
from milterkit.protocol import commands as cmd

CONNECT = packet(b"C", b"client.example\x004\x00\x19192.0.2.7\0")
HELO = packet(b"H", b"client.example\0")
MAIL = packet(b"M", b"<a@example.org>\0")
RCPT = packet(b"R", b"<b@example.net>\0")
TEMPFAIL_451 = y(b"451 4.3.0 Temporary failure in the mail filter")


class Boom(RuntimeError):
    """What the failing handlers raise."""


def run(body: Callable[[], Coroutine[Any, Any, None]], timeout: float = 5.0) -> None:
    """Run ``body()`` on a fresh event loop; a bug that stalls it fails instead of hanging."""
    loop = asyncio.new_event_loop()
    try:
        loop.run_until_complete(asyncio.wait_for(body(), timeout))
    finally:
        loop.close()


def install_hook(context: ClientContext) -> list[BaseException]:
    """Give ``context`` a real asyncio await_hook; returns where errors out of ``done`` land."""
    loop = asyncio.get_running_loop()
    escaped: list[BaseException] = []

    def hook(awaitable: Awaitable[Any], done: Callable[[Any, BaseException | None], None]) -> None:
        task = loop.create_task(_as_coroutine(awaitable))

        def finished(task: asyncio.Task[Any]) -> None:
            if task.cancelled():
                error: BaseException | None = asyncio.CancelledError()
                result = None
            else:
                error = task.exception()
                result = None if error is not None else task.result()
            try:
                done(result, error)
            except BaseException as exc:  # what a runtime would log and close on
                escaped.append(exc)

        task.add_done_callback(finished)

    context.await_hook = hook
    return escaped


async def _as_coroutine(awaitable: Awaitable[Any]) -> Any:
    return await awaitable


async def settle(predicate: Callable[[], bool]) -> None:
    """Let the loop run until ``predicate()`` holds (the caller's timeout bounds it)."""
    while not predicate():
        await asyncio.sleep(0.001)


def ready(**kwargs: Any) -> tuple[ClientContext, Wire, SignalLog]:
    context, wire = new_context(**kwargs)
    log = SignalLog(context)
    negotiated(context, wire)
    log.take()
    return context, wire, log


# --------------------------------------------------------------------------- coroutine handlers


def test_coroutine_status_is_written_only_when_it_finishes() -> None:
    async def body() -> None:
        context, wire, _log = ready()
        install_hook(context)
        release = asyncio.Event()

        async def helo(ctx: ClientContext, fqdn: str) -> Status:
            await release.wait()
            return ctx.reject("550", "5.7.1", f"{fqdn} is not welcome")

        context.connect("helo", helo)
        context.feed(CONNECT + HELO)
        assert wire.take() == C  # CONNECT only: HELO's answer waits for the coroutine
        assert context.pending == "helo"
        await asyncio.sleep(0.01)
        assert wire.data == b""
        release.set()
        await settle(lambda: bool(wire.writes))
        assert wire.data == y(b"550 5.7.1 client.example is not welcome")
        assert context.pending is None and context.state is State.HELO_REPLIED

    run(body)


def test_commands_fed_meanwhile_wait_their_turn_in_order() -> None:
    async def body() -> None:
        context, wire, log = ready()
        install_hook(context)
        release = asyncio.Event()

        async def helo(ctx: ClientContext, fqdn: str) -> None:
            await release.wait()

        context.connect("helo", helo)
        context.feed(CONNECT + HELO)
        wire.take()
        # The MTA pipelines; milterkit must not run MAIL or RCPT before HELO is answered.
        context.feed(MAIL)
        context.feed(RCPT + packet(b"T"))
        await asyncio.sleep(0.01)
        assert log.names == ["connect", "helo"]
        assert wire.data == b""
        release.set()
        await settle(lambda: len(wire.writes) == 4)
        assert log.names == ["connect", "helo", "envelope-from", "envelope-recipient", "data"]
        assert wire.data == C * 4

    run(body)


def test_a_passing_coroutine_lets_later_handlers_decide() -> None:
    async def body() -> None:
        context, wire, _log = ready()
        install_hook(context)
        order: list[str] = []

        async def first(ctx: ClientContext, address: str) -> None:
            await asyncio.sleep(0)
            order.append("async")

        def second(ctx: ClientContext, address: str) -> Status:
            order.append("sync")
            return Status.REJECT

        context.connect("envelope-from", first)
        context.connect("envelope-from", second)
        context.feed(CONNECT + HELO + MAIL)
        await settle(lambda: len(wire.writes) == 3)
        assert order == ["async", "sync"]
        assert wire.writes[-1] == R

    run(body)


def test_a_decisive_coroutine_stops_the_emission() -> None:
    async def body() -> None:
        context, wire, _log = ready()
        install_hook(context)
        later: list[str] = []

        async def first(ctx: ClientContext, address: str) -> Status:
            await asyncio.sleep(0)
            return Status.DISCARD

        context.connect("envelope-from", first)
        context.connect("envelope-from", lambda _c, _a: later.append("ran"))
        context.feed(CONNECT + HELO + MAIL)
        await settle(lambda: len(wire.writes) == 3)
        assert wire.writes[-1] == b"\x00\x00\x00\x01d"
        assert later == []

    run(body)


def test_progress_then_respond_from_the_loop() -> None:
    async def body() -> None:
        context, wire, _log = ready()
        loop = asyncio.get_running_loop()

        def rcpt(ctx: ClientContext, address: str) -> Status:
            loop.call_later(0.01, ctx.respond, "envelope-recipient", Status.TEMPORARY_FAILURE)
            return Status.PROGRESS

        context.connect("envelope-recipient", rcpt)
        context.feed(CONNECT + HELO + MAIL + RCPT + packet(b"T"))
        assert wire.take() == C * 3
        assert context.pending == "envelope-recipient"
        with pytest.raises(StateError, match="no reply is owed for 'helo'"):
            context.respond("helo", Status.CONTINUE)
        await settle(lambda: len(wire.writes) == 2)
        assert wire.data == b"\x00\x00\x00\x01t" + C  # then DATA, which waited
        with pytest.raises(StateError, match="a reply is owed for nothing"):
            context.respond(None, Status.CONTINUE)

    run(body)


def test_a_late_result_after_the_connection_is_gone_is_dropped() -> None:
    async def body() -> None:
        context, wire, log = ready()
        install_hook(context)
        release = asyncio.Event()

        async def helo(ctx: ClientContext, fqdn: str) -> Status:
            await release.wait()
            return Status.REJECT

        context.connect("helo", helo)
        context.feed(CONNECT + HELO)
        wire.take()
        context.connection_lost()
        release.set()
        await asyncio.sleep(0.01)
        assert wire.data == b""
        assert log.names[-1] == "finished"

    run(body)


def test_an_abort_coroutine_runs_detached_and_is_never_answered() -> None:
    async def body() -> None:
        context, wire, _log = ready()
        install_hook(context)
        done = asyncio.Event()

        async def abort(ctx: ClientContext, state: State) -> None:
            await asyncio.sleep(0.005)
            done.set()

        context.connect("abort", abort)
        context.feed(CONNECT + HELO + MAIL + packet(b"A") + MAIL)
        # ABORT holds nothing up: the next MAIL was answered at once.
        assert wire.data == C * 4
        await done.wait()
        assert wire.data == C * 4

    run(body)


def test_a_coroutine_without_a_runtime_is_refused_by_the_policy() -> None:
    context, wire, log = ready()

    async def helo(ctx: ClientContext, fqdn: str) -> None: ...

    context.connect("helo", helo)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the coroutine is closed, never left un-awaited
        context.feed(CONNECT + HELO)
    assert wire.data == C + TEMPFAIL_451
    (error,) = [args[0] for name, args in log.events if name == "error"]
    assert isinstance(error, TypeError) and "no await_hook" in str(error)


# --------------------------------------------------------------------------- exception policy

POLICIES: list[tuple[Status, str | None, bytes]] = [
    (Status.TEMPORARY_FAILURE, "451 4.3.0 Temporary failure in the mail filter", TEMPFAIL_451),
    (Status.TEMPORARY_FAILURE, None, b"\x00\x00\x00\x01t"),
    # A 4xx text does not fit a REJECT: plain 'r' rather than a reply the MTA would refuse.
    (Status.REJECT, "451 4.3.0 Temporary failure in the mail filter", R),
    (Status.REJECT, "550 5.7.0 Filter error", y(b"550 5.7.0 Filter error")),
    (Status.ACCEPT, "451 4.3.0 Temporary failure in the mail filter", b"\x00\x00\x00\x01a"),
    (Status.CONTINUE, "451 4.3.0 Temporary failure in the mail filter", C),
]
POLICY_IDS = [f"{p.name}-{'text' if t else 'plain'}" for p, t, _ in POLICIES]


@pytest.mark.parametrize(("policy", "reply", "expected"), POLICIES, ids=POLICY_IDS)
def test_exception_policy_of_a_plain_handler(
    policy: Status, reply: str | None, expected: bytes
) -> None:
    context, wire, log = ready(exception_policy=policy, exception_reply=reply)

    def rcpt(ctx: ClientContext, address: str) -> None:
        raise Boom("database down")

    context.connect("envelope-recipient", rcpt)
    context.feed(CONNECT + HELO + MAIL)
    wire.take()
    context.feed(RCPT)
    assert wire.data == expected
    errors = [args[0] for name, args in log.events if name == "error"]
    assert [type(e) for e in errors] == [Boom]
    assert not context.finished


@pytest.mark.parametrize(("policy", "reply", "expected"), POLICIES, ids=POLICY_IDS)
def test_exception_policy_of_a_coroutine_handler(
    policy: Status, reply: str | None, expected: bytes
) -> None:
    async def body() -> None:
        context, wire, log = ready(exception_policy=policy, exception_reply=reply)
        install_hook(context)

        async def rcpt(ctx: ClientContext, address: str) -> None:
            await asyncio.sleep(0)
            raise Boom("database down")

        context.connect("envelope-recipient", rcpt)
        context.feed(CONNECT + HELO + MAIL)
        wire.take()
        context.feed(RCPT + packet(b"T"))
        await settle(lambda: len(wire.writes) == 2)
        assert wire.writes == [expected, C]
        assert [type(args[0]) for name, args in log.events if name == "error"] == [Boom]

    run(body)


def test_no_policy_reraises_from_feed() -> None:
    context, wire, _log = ready(exception_policy=None)
    context.connect("helo", lambda _c, _f: (_ for _ in ()).throw(Boom("bug")))
    context.feed(CONNECT)
    wire.take()
    with pytest.raises(Boom, match="bug"):
        context.feed(HELO)
    assert wire.data == b""


def test_no_policy_hands_a_coroutine_error_back_to_the_runtime() -> None:
    async def body() -> None:
        context, wire, _log = ready(exception_policy=None)
        escaped = install_hook(context)

        async def helo(ctx: ClientContext, fqdn: str) -> None:
            raise Boom("bug")

        context.connect("helo", helo)
        context.feed(CONNECT + HELO)
        wire.take()
        await settle(lambda: bool(escaped))
        assert [type(e) for e in escaped] == [Boom]
        assert wire.data == b""

    run(body)


def test_policy_at_end_of_message_drops_queued_modifications() -> None:
    async def body() -> None:
        context, wire, _log = ready()
        install_hook(context)

        async def end(ctx: ClientContext, chunk: bytes) -> None:
            ctx.add_header("X-Half", "done")
            ctx.quarantine("half")
            await asyncio.sleep(0)
            raise Boom("scanner crashed")

        context.connect("end-of-message", end)
        context.feed(CONNECT + HELO + MAIL + RCPT)
        wire.take()
        context.feed(packet(b"E"))
        await settle(lambda: bool(wire.writes))
        assert wire.data == TEMPFAIL_451

    run(body)


def test_nothing_is_written_for_a_no_reply_stage() -> None:
    async def body() -> None:
        context, wire = new_context(protocol=ProtocolFlag.NO_REPLY_HEADER)
        log = SignalLog(context, ["error", "end-of-header"])
        install_hook(context)
        negotiated(context, wire, protocol=FULL_PROTOCOL)

        async def header(ctx: ClientContext, name: str, value: str) -> None:
            await asyncio.sleep(0)
            if name == "Async":
                raise Boom("async")

        def sync_header(ctx: ClientContext, name: str, value: str) -> None:
            if name == "Sync":
                raise Boom("sync")

        context.connect("header", sync_header)
        context.connect("header", header)
        context.feed(CONNECT + HELO + MAIL + RCPT + packet(b"T"))
        wire.take()
        context.feed(packet(b"L", strings(b"Sync", b"1")) + packet(b"L", strings(b"Async", b"2"))
                     + packet(b"N"))
        await settle(lambda: bool(wire.writes))
        assert wire.data == C  # end-of-header's answer, and nothing for either header
        assert log.names == ["error", "error", "end-of-header"]

    run(body)


def test_exception_policy_is_validated() -> None:
    with pytest.raises(ValueError, match="exception_policy must be"):
        ClientContext(lambda data: None, exception_policy=Status.DISCARD)


def test_a_handler_that_responds_and_returns_a_status_writes_one_reply() -> None:
    # respond() inside the handler answers the stage; the status it then returns must not
    # produce a second reply (the MTA would take it as the answer to its next command).
    written: list[bytes] = []
    context = ClientContext(written.append)

    def answer_now(ctx: ClientContext, hostname: str, address: object) -> Status:
        ctx.respond("connect", Status.REJECT)
        return Status.CONTINUE

    context.connect("connect", answer_now)
    context.feed(
        cmd.Negotiate(6, ActionFlag.ALL, ProtocolFlag.ALL).to_bytes()
        + cmd.Connect("client.example", cmd.SocketAddress("4", "192.0.2.1", 25)).to_bytes()
        + cmd.Helo("client.example").to_bytes()
    )
    assert written[1:] == [b"\x00\x00\x00\x01r", b"\x00\x00\x00\x01c"]
