"""Replay a captured session: feed its MTA-to-milter bytes into a ClientContext, trace what
happens, and compare the replies with the ones the milter sent when it was recorded.

The bytes go through ``ClientContext.feed`` one packet at a time, the code path of a live
connection; a coroutine handler or a late ``respond`` is waited for on an event loop before the
next packet, as the MTA would wait for its reply.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ..context import ClientContext
from ..protocol.commands import AnyCommand, decode_command
from ..protocol.errors import ProtocolError
from ..protocol.framing import PacketDecoder, encode_packet
from ..protocol.replies import AnyReply, decode_reply
from ..server.awaiting import await_hook
from ..stages import NOTIFICATIONS, STAGES
from ..status import Status
from .capture_format import FROM_MILTER, FROM_MTA, Capture
from .trace import describe_command, describe_reply

#: Seconds a replay waits for an asynchronous answer before giving up on it.
DEFAULT_TIMEOUT = 10.0


@dataclass(slots=True)
class Step:
    """One MTA packet: when it arrived, what it was, the signals it caused, what was answered."""

    number: int
    time: float
    command: AnyCommand | None
    raw: bytes
    signals: list[str] = field(default_factory=list)
    replies: list[AnyReply] = field(default_factory=list)
    error: str | None = None


@dataclass(slots=True)
class Difference:
    """Reply number ``index`` differs between the recording and the replay."""

    index: int
    recorded: AnyReply | None
    replayed: AnyReply | None
    #: The command the replayed (else recorded) reply answers, described.
    answering: str


@dataclass(slots=True)
class ReplayResult:
    """The trace of a replay and its comparison with the recording."""

    steps: list[Step] = field(default_factory=list)
    replayed: list[AnyReply] = field(default_factory=list)
    #: The recorded milter replies; None when the capture has no milter side.
    recorded: list[AnyReply] | None = None
    differences: list[Difference] = field(default_factory=list)
    error: Exception | None = None
    recorded_error: str | None = None

    @property
    def identical(self) -> bool:
        """True when a milter side was recorded and the replay answered exactly the same."""
        return self.recorded is not None and not self.differences and self.error is None


def _packets(
    capture: Capture,
) -> tuple[list[tuple[float, bytes, bytes]], ProtocolError | None]:
    """The MTA's packets with the time of the record that completed each, and the framing
    error (garbage, or a stream cut inside a packet) that ended them, if any: the packets
    before a break are still worth replaying."""
    decoder = PacketDecoder(0x7FFFFFFE)
    found: list[tuple[float, bytes, bytes]] = []
    for record in capture.records:
        if record.kind == FROM_MTA:
            found.extend((record.time, c, p) for c, p in decoder.decode(record.data))
    if decoder.error is not None:
        assert isinstance(decoder.error, ProtocolError)
        return found, decoder.error
    try:
        decoder.end()
    except ProtocolError as exc:
        return found, exc
    return found, None


def recorded_replies(capture: Capture) -> tuple[list[AnyReply], str | None]:
    """The milter's recorded reply packets (and an error if they do not decode cleanly)."""
    decoder = PacketDecoder(0x7FFFFFFE)
    replies: list[AnyReply] = []
    try:
        for code, payload in decoder.decode(capture.milter_bytes):
            replies.append(decode_reply(code, payload))
    except ProtocolError as exc:
        return replies, str(exc)
    if decoder.error is not None:
        return replies, str(decoder.error)
    if decoder.buffered:
        return replies, f"recording ends inside a reply ({decoder.buffered} bytes)"
    return replies, None


def replay(
    capture: Capture,
    factory: Callable[[Callable[[bytes], object]], ClientContext] | None = None,
    *,
    timeout: float = DEFAULT_TIMEOUT,
) -> ReplayResult:
    """Replay ``capture`` into a context made by ``factory(write)`` (a Client's
    ``create_context``); with no factory, a bare ClientContext that answers CONTINUE."""
    loop = asyncio.new_event_loop()
    try:
        return loop.run_until_complete(replay_async(capture, factory, timeout=timeout))
    finally:
        loop.close()


async def replay_async(
    capture: Capture,
    factory: Callable[[Callable[[bytes], object]], ClientContext] | None = None,
    *,
    timeout: float = DEFAULT_TIMEOUT,
) -> ReplayResult:
    """:func:`replay` inside a running event loop."""
    result = ReplayResult()
    if capture.has_milter_side and any(r.kind == FROM_MILTER for r in capture.records):
        result.recorded, result.recorded_error = recorded_replies(capture)
    elif capture.has_milter_side:
        result.recorded = []
    written: list[AnyReply] = []
    decoder = PacketDecoder(0x7FFFFFFE)
    wake = asyncio.Event()

    def write(data: bytes) -> None:
        written.extend(decode_reply(c, p) for c, p in decoder.feed(data))
        wake.set()

    context = factory(write) if factory is not None else ClientContext(write)
    context.await_hook = await_hook
    current: list[Step] = []

    def note(text: str) -> None:
        if current:
            current[-1].signals.append(text)

    for stage in STAGES.values():
        context.signals.connect(stage.response, _response_recorder(stage.name, note))
    for name in NOTIFICATIONS:
        if name != "define-macro":  # the MACRO line of the trace already shows them
            context.signals.connect(name, _notification_recorder(name, note))

    start = capture.start
    packets, stream_error = _packets(capture)
    for number, (when, code, payload) in enumerate(packets, 1):
        try:
            command: AnyCommand | None = decode_command(code, payload)
        except ProtocolError:
            command = None
        step = Step(number, when - start, command, encode_packet(code, payload))
        result.steps.append(step)
        current.append(step)
        if context.finished:
            step.error = "the context had already finished"
            break
        before = len(written)
        try:
            context.feed(step.raw)
            while context.pending is not None and not context.finished:
                wake.clear()
                await asyncio.wait_for(wake.wait(), timeout)
        except ProtocolError as exc:
            step.error = str(exc)
            result.error = exc
        except asyncio.TimeoutError:
            step.error = f"no answer for {context.pending} within {timeout} s"
            result.error = TimeoutError(step.error)
        step.replies = written[before:]
        if result.error is not None:
            break
    if result.error is None:
        if not context.finished:
            context.connection_lost()
        result.error = stream_error
    result.replayed = written
    if result.recorded is not None:
        result.differences = _compare(result)
    return result


def _response_recorder(stage: str, note: Callable[[str], None]) -> Callable[..., None]:
    def record(context: ClientContext, *args: Any) -> None:
        status: Status = args[-1]  # negotiate-response has the option and requests first
        note(f"{stage} -> {status.nick}")

    return record


def _notification_recorder(name: str, note: Callable[[str], None]) -> Callable[..., None]:
    def record(context: ClientContext, *args: Any) -> None:
        shown = ", ".join(_show(a) for a in args)
        note(f"{name}({shown})" if args else name)

    return record


def _show(value: Any) -> str:
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k}={v}" for k, v in value.items()) + "}"
    if hasattr(value, "status") and hasattr(value, "recipients"):  # a MessageResult
        return f"status={value.status.nick} recipients={len(value.recipients)}"
    return str(value)


def _compare(result: ReplayResult) -> list[Difference]:
    assert result.recorded is not None
    answering: list[str] = []
    for step in result.steps:
        label = f"#{step.number} " + (describe_command(step.command) if step.command else "?")
        answering.extend(label for _ in step.replies)
    differences = []
    pairs = itertools.zip_longest(result.recorded, result.replayed)
    for index, (recorded, replayed) in enumerate(pairs):
        if recorded != replayed:
            label = answering[index] if index < len(answering) else "(after the last command)"
            differences.append(Difference(index, recorded, replayed, label))
    return differences


def trace_lines(result: ReplayResult, *, max_differences: int = 10) -> list[str]:
    """The readable trace: each command, the signals it caused and the replies, then the
    comparison with the recording."""
    lines: list[str] = []
    pad = " " * 14
    for step in result.steps:
        shown = describe_command(step.command) if step.command else f"undecodable {step.raw!r}"
        lines.append(f"{step.time:10.6f} #{step.number:<3d}> {shown}")
        lines.extend(f"{pad}. {signal}" for signal in step.signals)
        lines.extend(f"{pad}< {describe_reply(reply)}" for reply in step.replies)
        if step.error:
            lines.append(f"{pad}! {step.error}")
    lines.append("")
    lines.append(f"commands: {len(result.steps)}, replies: {len(result.replayed)}")
    if result.recorded is None:
        lines.append("no milter side recorded: nothing to compare")
    elif not result.differences:
        lines.append(f"recorded replies: {len(result.recorded)}, identical")
    else:
        lines.append(f"recorded replies: {len(result.recorded)}, "
                     f"{len(result.differences)} differ:")
        for difference in result.differences[:max_differences]:
            recorded = describe_reply(difference.recorded) if difference.recorded else "(none)"
            replayed = describe_reply(difference.replayed) if difference.replayed else "(none)"
            lines.append(f"  reply {difference.index + 1}, answering {difference.answering}:")
            lines.append(f"    recorded: {recorded}")
            lines.append(f"    replayed: {replayed}")
        if len(result.differences) > max_differences:
            lines.append(f"  ... and {len(result.differences) - max_differences} more")
    if result.recorded_error:
        lines.append(f"recording: {result.recorded_error}")
    if result.error is not None:
        lines.append(f"error: {result.error}")
    return lines
