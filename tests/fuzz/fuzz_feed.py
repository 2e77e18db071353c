"""The fuzz target: bytes in, a ClientContext (or a PacketDecoder) must never crash.

``one_input(data)`` reads a plan from the first bytes (which handler kind each stage gets: none,
None, a status, an exception, a coroutine answered later, PROGRESS answered later with
``respond``, an action at end-of-message; the exception policy; how to split the stream), then
feeds the rest to a fresh context in pieces. Coroutines and PROGRESS replies complete between
pieces, so commands queue in the backlog as they do behind a slow handler at run time.

Allowed outcomes of ``feed``: nothing, a :exc:`~milterkit.RemoteProtocolError` (the stream is
broken), a :exc:`~milterkit.errors.NegotiationError`, or, with no exception policy, the
handler's own error (:class:`Planned`, or a :exc:`~milterkit.errors.LocalError` for a status or
action it got wrong). Anything else is a crash. Every byte written must frame as
whole reply packets.

Run it long with atheris (coverage-guided), see ``atheris_run.py``:
    python tests/fuzz/atheris_run.py -max_total_time=300 -print_final_stats=1 CORPUS_COPY
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Generator
from pathlib import Path
from typing import Any

from milterkit import ClientContext, Status
from milterkit.errors import LocalError, NegotiationError, RemoteProtocolError
from milterkit.protocol.framing import PacketDecoder
from milterkit.stages import STAGES

CORPUS = Path(__file__).resolve().parent / "corpus"
_STAGE_NAMES = sorted(STAGES)
_STATUSES = list(Status)
_POLICIES = [Status.TEMPORARY_FAILURE, Status.REJECT, Status.ACCEPT, Status.CONTINUE, None]
PLAN = len(_STAGE_NAMES) + 3  # bytes of plan before the stream


class Planned(Exception):
    """The exception a planned handler raises."""


class _Later:
    """An awaitable that completes when the harness says so (between two pieces)."""

    def __init__(self, value: Any) -> None:
        self.value = value

    def __await__(self) -> Generator[Any, None, Any]:
        yield self
        return self.value


class Harness:
    """One fuzzed session: a context, its handlers by plan, a deferred await hook."""

    def __init__(self, plan: bytes) -> None:
        self.output = bytearray()
        policy = _POLICIES[plan[0] % len(_POLICIES)]
        self.context = ClientContext(self.output.extend, exception_policy=policy,
                                     max_payload=65535 if plan[1] & 1 else 1024 * 1024 - 1,
                                     max_backlog=(64, 4096) if plan[1] & 2 else (65536, 1 << 24))
        self.waiting: list[tuple[Awaitable[Any], Callable[[Any, BaseException | None], None]]]
        self.waiting = []
        self.progress_owed = False
        self.context.await_hook = lambda awaitable, done: self.waiting.append((awaitable, done))
        connect: Any = self.context.connect  # by a name chosen at run time
        for index, name in enumerate(_STAGE_NAMES):
            handler = self._handler(name, plan[3 + index])
            if handler is not None:
                connect(name, handler)

    def _handler(self, stage: str, kind: int) -> Callable[..., Any] | None:
        choice = kind % 8
        status = _STATUSES[(kind >> 3) % len(_STATUSES)]
        if choice == 0:
            return None
        if choice == 1:
            return lambda context, *args: None
        if choice == 2:
            return lambda context, *args: status
        if choice == 3:
            def fail(context: ClientContext, *args: Any) -> None:
                raise Planned(stage)
            return fail
        if choice == 4:
            return lambda context, *args: _Later(status)
        if choice == 5:
            def later(context: ClientContext, *args: Any) -> Status:
                self.progress_owed = True
                return Status.PROGRESS
            return later
        if choice == 6:
            def act(context: ClientContext, *args: Any) -> Status:
                context.add_header("X-Fuzz", "1")  # ActionError outside EOM: the policy answers
                return status
            return act
        return lambda context, *args: "not a status"  # StatusError: the policy answers

    def settle(self) -> None:
        """Complete what waits: coroutines, then a PROGRESS owed."""
        while self.waiting:
            awaitable, done = self.waiting.pop(0)
            try:
                iterator = awaitable.__await__()
                try:
                    while True:
                        next(iterator)
                except StopIteration as stop:
                    done(stop.value, None)
            except (RemoteProtocolError, NegotiationError, Planned, LocalError):
                if self.context.exception_policy is not None and not self.context.finished:
                    raise
                return
        if self.progress_owed and self.context.pending is not None:
            self.progress_owed = False
            try:
                self.context.progress()
                self.context.respond(None, Status.CONTINUE)
            except (RemoteProtocolError, NegotiationError, Planned):
                return
            except LocalError:
                pass  # a stage that takes no PROGRESS or no reply: refused locally, as it should


def one_input(data: bytes) -> None:
    """The fuzz target (atheris's TestOneInput)."""
    if len(data) < PLAN:
        decoder = PacketDecoder()
        decoder.decode(data)  # the framing alone
        return
    plan, stream = data[:PLAN], data[PLAN:]
    harness = Harness(plan)
    pieces = 1 + plan[2] % 7
    step = max(1, len(stream) // pieces)
    context = harness.context
    try:
        for start in range(0, len(stream), step):
            context.feed(stream[start : start + step])
            harness.settle()
        if plan[2] & 0x80:
            context.handle_timeout()
        context.connection_lost()
    except (RemoteProtocolError, NegotiationError):
        assert context.finished, "a protocol error left the session open"
    except (Planned, LocalError):
        # A handler's own error, or a status or action it got wrong: re-raised by design with
        # no exception policy, a crash with one.
        if context.exception_policy is not None:
            raise
    replies = PacketDecoder(0x7FFFFFFE)
    replies.decode(bytes(harness.output))
    assert replies.error is None and replies.buffered == 0, "a reply packet is cut or broken"


def seeds() -> list[bytes]:
    """The corpus: real Postfix sessions and protocol edge cases, each with a plan prefix."""
    return [path.read_bytes() for path in sorted(CORPUS.iterdir()) if path.is_file()]
