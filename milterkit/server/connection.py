"""One MTA connection in the asyncio runtime: moves bytes between a transport and a
:class:`~milterkit.context.ClientContext`, arms the inactivity timer and runs coroutine handlers.

It never parses a packet: everything protocol-shaped happens in ``ClientContext.feed``.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, cast

from ..context import ClientContext, StateError
from ..protocol.errors import NegotiationError, ProtocolError
from .awaiting import DeadlineExceeded, task_outcome
from .awaiting import HandlerCancelled as HandlerCancelled  # its home was here
from .tcp import rearm_quickack, tune_tcp

if TYPE_CHECKING:
    from .client import Client
    from .messagelog import MessageLog

log = logging.getLogger("milterkit.server")

Done = Callable[[Any, "BaseException | None"], None]
#: At most so many bytes of one read are fed per turn of the event loop (the rest on the next
#: turns, reading paused meanwhile): fairness towards a peer flooding tiny packets.
FEED_SLICE = 16 * 1024


@dataclass(frozen=True)
class ConnectionHooks:
    """What a :class:`Connection` tells the server that accepted it, and nothing else: the
    Client hands these to each connection, so the connection never reaches into the Client."""

    #: Called once the connection's context exists (counted, ``connection-established``).
    opened: Callable[[Connection], None]
    #: Called once the session has ended (uncounted, ``connection-finished``).
    closed: Callable[[Connection], None]


class Connection(asyncio.Protocol):
    """The asyncio protocol of one MTA connection (one :class:`ClientContext`)."""

    def __init__(self, client: Client, hooks: ConnectionHooks) -> None:
        self.client = client
        self._hooks = hooks
        self.context: ClientContext | None = None
        self.transport: asyncio.Transport | None = None
        #: Why the session ended: finished (QUIT), eof, timeout, protocol error, shutdown, error.
        self.reason: str | None = None
        #: The connection's per-message log (None until the context exists).
        self.message_log: MessageLog | None = None
        self._loop = asyncio.get_running_loop()
        self._tasks: dict[asyncio.Future[Any], asyncio.TimerHandle | None] = {}
        self._deadlines: dict[asyncio.Future[Any], asyncio.TimerHandle] = {}
        self._expired: set[asyncio.Future[Any]] = set()  # answered at their deadline
        # Why reading is paused: "backlog" (commands wait for a pending handler) and/or
        # "writing" (the MTA does not read our replies). Empty while reading.
        self._paused: set[str] = set()
        self._rest: bytes | None = None  # of a read, fed on the next turns (see FEED_SLICE)
        self._reading = True
        self._timeout = client.timeout or 0.0
        self._last_activity = self._loop.time()
        self._timer: asyncio.TimerHandle | None = None
        self._closed = False
        self._started = time.monotonic()  # uvloop's loop.time() has only millisecond steps
        # TCP_QUICKACK (issue 15): the bound setsockopt of a TCP socket, or None (see tcp.py).
        self._quickack: Callable[[int, int, int], None] | None = None
        # Replies written while one data_received runs, sent in one transport.write at its end
        # (issue 15); None outside data_received, where _write writes at once.
        self._batch: list[bytes] | None = None
        self._loop_thread = threading.get_ident()

    # -------------------------------------------------------------- transport events

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # A stream transport; uvloop's do not subclass asyncio.Transport, hence no isinstance.
        self.transport = cast(asyncio.Transport, transport)
        peer = self.transport.get_extra_info("peername")
        self._quickack = tune_tcp(self.transport, quickack=self.client.quickack)
        try:
            self._set_up(peer)
        except Exception:
            # A broken context class or connection-established handler: this connection cannot
            # be filtered as configured, so the MTA gets a closed connection (its default
            # action applies) rather than a session without the filter. Others go on.
            tag = self.context.tag if self.context is not None else "-"
            log.exception("[%s] cannot set up the connection from %s; closing it", tag,
                          _peer(peer))
            self.abort("setup error")

    def _set_up(self, peer: object) -> None:
        client = self.client
        context = client.create_context(self._write)
        self.context = context
        context.peer = peer
        context.await_hook = self._await
        context.offload_hook = client.handler_threads.hook(self._loop)
        context.offload_all = client.handler_threads.every_plain_handler
        # The runtime's handlers (``finished`` closes, the message log) are connected once per
        # Client, on a table between the Client's and the context's (issue 15): they run after
        # the Client's handlers (parent first), so theirs see an open transport.
        self.message_log = client.session_signals.attach(self, context)
        log.debug("[%s] connection from %s", context.tag, _peer(context.peer))
        if self._timeout:
            self._timer = self._loop.call_at(self._last_activity + self._timeout, self._on_timer)
        self._hooks.opened(self)

    def data_received(self, data: bytes) -> None:
        if self._rest is not None:  # a read while slices wait (reading was paused): keep order
            self._rest += data
            return
        if len(data) > FEED_SLICE:
            # Feed one slice now and the rest on later turns of the loop, not reading meanwhile:
            # one read of tiny packets (tens of thousands) must not hold every connection up.
            data, self._rest = data[:FEED_SLICE], data[FEED_SLICE:]
            self._sync_reading()
            self._loop.call_soon(self._next_slice)
        self._feed(data)

    def _next_slice(self) -> None:
        rest, self._rest = self._rest, None
        if rest is None or self._closed or self.transport is None or self.transport.is_closing():
            return  # closed meanwhile (a protocol error in an earlier slice): drop the rest
        if len(rest) > FEED_SLICE:
            rest, self._rest = rest[:FEED_SLICE], rest[FEED_SLICE:]
            self._loop.call_soon(self._next_slice)
        else:
            self._sync_reading()
        self._feed(rest)

    def _feed(self, data: bytes) -> None:
        context = self.context
        assert context is not None
        # Only a whole command is activity: a peer trickling the bytes of one packet
        # (slowloris) must not keep the connection past the inactivity timeout.
        partial = context.buffered
        # Replies this read produces are batched into one write (issue 15).
        batch: list[bytes] = []
        self._batch = batch
        try:
            context.feed(data)
        except (ProtocolError, NegotiationError) as exc:
            self._protocol_error(exc)
            self._flush()  # stop batching (a close has flushed already; an abort dropped it)
            return
        except Exception:
            # Only reachable with exception_policy=None: the handler's error is re-raised.
            log.exception("[%s] unhandled error; closing the connection", context.tag)
            self.close("error")
            self._flush()
            return
        self._flush()  # a reply written is activity: _flush stamps it
        if not batch:
            if self._quickack is not None and not context.finished:
                # Nothing to send back (a macro packet, a no-reply event, a handler still
                # running): ACK now rather than after the kernel's ~40 ms delayed-ACK timer,
                # which a Nagle-delayed MTA write would wait for. A reply carries the ACK by
                # itself, and a finished session (QUIT) is closing: its FIN does.
                rearm_quickack(self._quickack)
            if context.buffered < partial + len(data):  # whole commands with no reply
                self._last_activity = self._loop.time()
        packets, size = context.backlog
        if packets:
            limit_packets, limit_bytes = self.client.backlog_pause
            if packets >= limit_packets or size >= limit_bytes:
                log.debug("[%s] %d commands (%d bytes) wait for %s: pausing reading",
                          context.tag, packets, size, context.pending)
                context.drain_hook = self._on_drain
                self._pause("backlog")

    def pause_writing(self) -> None:
        # The MTA is not reading our replies: read no more commands, which would only make more.
        self._pause("writing")

    def resume_writing(self) -> None:
        self._resume("writing")

    def eof_received(self) -> bool | None:
        return None  # let the transport close; connection_lost finishes the session

    def connection_lost(self, exc: Exception | None) -> None:
        context = self.context
        self._closed = True
        if context is None:
            return  # the context could not be created: nothing was registered or started
        if self._timer is not None:
            self._timer.cancel()
        if self.reason is None:
            self.reason = "eof" if exc is None else f"connection lost ({exc})"
        try:
            context.connection_lost()
        except Exception:
            # A subclass's hook failed: log it, but the client must still hear the connection
            # is gone, or it would count against max_connections and hold up shutdown for ever.
            log.exception("[%s] ending the session raised", context.tag)
        finally:
            for task, keepalive in list(self._tasks.items()):
                if keepalive is not None:
                    keepalive.cancel()
                task.cancel()
            for deadline in self._deadlines.values():
                deadline.cancel()
            self._deadlines.clear()
            self.client.session_signals.detach(context)
            self._summary()
            self._hooks.closed(self)

    # -------------------------------------------------------------- flow control

    @property
    def paused(self) -> frozenset[str]:
        """Why reading is paused: ``backlog`` (commands wait for a pending handler), ``writing``
        (the MTA does not read our replies); empty while reading."""
        return frozenset(self._paused)

    def _pause(self, reason: str) -> None:
        if reason in self._paused or self._closed:
            return
        first = not self._paused
        self._paused.add(reason)
        if first:
            self._sync_reading()
            self.client.emit("backlog-paused", self.context)

    def _resume(self, reason: str) -> None:
        if reason not in self._paused:
            return
        self._paused.discard(reason)
        if not self._paused and not self._closed:
            self._sync_reading()
            self.client.emit("backlog-resumed", self.context)

    def _sync_reading(self) -> None:
        # Read while nothing holds us: no pause reason and no slice of a read left to feed.
        wanted = not self._paused and self._rest is None
        transport = self.transport
        if wanted != self._reading and transport is not None and not transport.is_closing():
            if wanted:
                transport.resume_reading()
            else:
                transport.pause_reading()
            self._reading = wanted

    def _on_drain(self) -> None:
        # The context's drain_hook while paused for its backlog: resume at half the bound.
        context = self.context
        assert context is not None
        packets, size = context.backlog
        limit_packets, limit_bytes = self.client.backlog_pause
        if packets <= limit_packets // 2 and size <= limit_bytes // 2:
            context.drain_hook = None
            log.debug("[%s] backlog down to %d commands: reading again", context.tag, packets)
            self._resume("backlog")

    # -------------------------------------------------------------- writing, closing

    def _write(self, data: bytes) -> None:
        if threading.get_ident() != self._loop_thread:
            # A blocking handler in a thread sent something (a progress): the loop writes it.
            self._loop.call_soon_threadsafe(self._write, data)
            return
        if self._closed:
            return
        if self._batch is not None:
            self._batch.append(data)
            return
        self._last_activity = self._loop.time()
        assert self.transport is not None
        self.transport.write(data)

    def _flush(self) -> None:
        """Write what this data_received produced, in one write, and stop batching."""
        batch, self._batch = self._batch, None
        if batch and not self._closed:
            self._last_activity = self._loop.time()
            assert self.transport is not None
            self.transport.write(batch[0] if len(batch) == 1 else b"".join(batch))

    def close(self, reason: str) -> None:
        """Close after flushing what is written; the session ends (``finished``) when it is lost.

        If the MTA reads nothing for a whole inactivity timeout meanwhile, the close is aborted.
        """
        if self.reason is None:
            self.reason = reason
        self._flush()  # replies of the read that ended the session go out before the close
        if self.transport is not None and not self.transport.is_closing():
            self.transport.close()

    def abort(self, reason: str) -> None:
        """Close at once, dropping unwritten replies."""
        if self.reason is None:
            self.reason = reason
        self._batch = None  # replies batched by this read are dropped too
        if self.transport is not None:
            self.transport.abort()

    def on_finished(self) -> None:
        """The session is over (the context emitted ``finished``): close the connection."""
        if not self._closed:
            self.close("finished")

    @property
    def verdicts(self) -> Counter[str]:
        """The connection's messages by verdict nick (rejected early and aborted ones too)."""
        return self.message_log.verdicts if self.message_log is not None else Counter()

    def _protocol_error(self, exc: Exception) -> None:
        assert self.context is not None
        log.warning("[%s] closing the connection from %s after a protocol error: %s",
                    self.context.tag, _peer(self.context.peer), exc)
        self.reason = "protocol error"
        self.close(self.reason)

    # -------------------------------------------------------------- timeout

    def _on_timer(self) -> None:
        due = self._last_activity + self._timeout
        if self._loop.time() < due:
            # Activity since the timer was set: re-arm rather than re-create a timer per packet.
            self._timer = self._loop.call_at(due, self._on_timer)
            return
        self._timer = None
        context = self.context
        assert context is not None
        assert self.transport is not None
        if self.transport.is_closing():
            # A close has waited a whole timeout for the MTA to read what we wrote: drop it,
            # or a peer that never reads would keep the connection for ever.
            log.info("[%s] the peer read nothing for %g s while we closed: aborting",
                     context.tag, self._timeout)
            self.abort("timeout")
            return
        if context.pending is not None:
            # A handler owes the MTA its reply: the silence is ours, not the MTA's (libmilter
            # times only the MTA's I/O; the handler deadline bounds a slow handler). Writing
            # the reply counts as activity, so the MTA gets a whole timeout from there.
            self._timer = self._loop.call_at(self._loop.time() + self._timeout, self._on_timer)
            return
        log.info("[%s] no activity for %g s: timing out", context.tag, self._timeout)
        self.reason = "timeout"
        context.handle_timeout()
        # Abort, not close: anything still queued has gone unread for the whole timeout.
        self.abort(self.reason)

    # -------------------------------------------------------------- coroutine handlers

    def _await(self, awaitable: Awaitable[Any], done: Done) -> None:
        """The context's ``await_hook``: run ``awaitable`` as a task, answer when it is done."""
        task = asyncio.ensure_future(awaitable)
        interval = self.client.progress_interval
        keepalive = None
        if interval and self.context is not None and self.context.pending is not None:
            keepalive = self._loop.call_later(interval, self._keepalive, task)
        self._tasks[task] = keepalive
        deadline = self.client.handler_deadline
        if deadline:
            self._deadlines[task] = self._loop.call_later(deadline, self._deadline, task, done)
        task.add_done_callback(lambda finished: self._task_done(finished, done))

    def _deadline(self, task: asyncio.Future[Any], done: Done) -> None:
        # Answer now (the exception policy) and cancel the task; a task that ignores the
        # cancellation can no longer hold the session. Keep-alives never move this timer.
        self._deadlines.pop(task, None)
        if task.done() or self._closed:
            return
        keepalive = self._tasks.pop(task, None)
        if keepalive is not None:
            keepalive.cancel()
        self._expired.add(task)
        task.cancel()
        context = self.context
        assert context is not None
        deadline = self.client.handler_deadline
        log.warning("[%s] a handler of %s ran past its deadline (%g s): cancelled", context.tag,
                    context.pending or "a detached abort", deadline)
        self._answer(done, None, DeadlineExceeded(
            f"the coroutine handler ran past its {deadline:g} s deadline"))

    def _keepalive(self, task: asyncio.Future[Any]) -> None:
        if task.done() or task not in self._tasks or self._closed:
            return
        context = self.context
        assert context is not None
        try:
            context.progress()
        except StateError:
            pass  # nothing owed (a detached abort handler) or a no-reply stage
        else:
            log.debug("[%s] progress sent while %s is pending", context.tag, context.pending)
        interval = self.client.progress_interval
        assert interval
        self._tasks[task] = self._loop.call_later(interval, self._keepalive, task)

    def _task_done(self, task: asyncio.Future[Any], done: Done) -> None:
        keepalive = self._tasks.pop(task, None)
        if keepalive is not None:
            keepalive.cancel()
        deadline = self._deadlines.pop(task, None)
        if deadline is not None:
            deadline.cancel()
        context = self.context
        assert context is not None
        if task in self._expired:
            self._expired.discard(task)  # answered at its deadline already
            return
        if self._closed:
            if not task.cancelled() and task.exception() is not None:
                log.debug("[%s] a handler failed after the connection closed: %r",
                          context.tag, task.exception())
            return
        self._answer(done, *task_outcome(task))

    def _answer(self, done: Done, result: Any, error: BaseException | None) -> None:
        context = self.context
        assert context is not None
        try:
            done(result, error)
        except ProtocolError as exc:
            self._protocol_error(exc)
        except Exception:
            log.exception("[%s] unhandled error; closing the connection", context.tag)
            self.close("error")

    # -------------------------------------------------------------- logging

    def describe(self) -> str:
        """``[tag] peer ADDRESS``: this connection in a log line."""
        tag = self.context.tag if self.context is not None else "-"
        peer = self.context.peer if self.context is not None else None
        return f"[{tag}] peer {_peer(peer)}"

    def _summary(self) -> None:
        if not log.isEnabledFor(logging.INFO):
            return  # nothing to format (a server run at --log-level warning)
        context = self.context
        assert context is not None
        counts = self.verdicts
        messages = sum(counts.values())
        verdicts = ", ".join(f"{name} {count}" for name, count in sorted(counts.items()))
        seconds = time.monotonic() - self._started
        notes = "".join(f"; {part}" for part in context.summary_parts)
        log.info(
            "[%s] session ended (%s): %d message%s%s, %.3f s, peer %s%s",
            context.tag, self.reason, messages, "" if messages == 1 else "s",
            f" ({verdicts})" if verdicts else "", seconds, _peer(context.peer), notes,
            extra={"milterkit": {"event": "session", "tag": context.tag, "reason": self.reason,
                                 "messages": messages, "verdicts": dict(counts),
                                 "seconds": round(seconds, 3), "peer": _peer(context.peer),
                                 "notes": list(context.summary_parts)}},
        )


def _peer(peer: object) -> str:
    if isinstance(peer, tuple) and len(peer) >= 2:
        return f"[{peer[0]}]:{peer[1]}"
    if peer in (None, "", b""):
        return "unix"
    return str(peer)
