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
from typing import TYPE_CHECKING, Any, cast

from ..context import ClientContext, StateError
from ..protocol.errors import NegotiationError, ProtocolError
from .awaiting import HandlerCancelled as HandlerCancelled  # its home was here
from .awaiting import task_outcome
from .messagelog import MessageLog
from .tcp import rearm_quickack, tune_tcp

if TYPE_CHECKING:
    from .client import Client

log = logging.getLogger("milterkit.server")

Done = Callable[[Any, "BaseException | None"], None]


class Connection(asyncio.Protocol):
    """The asyncio protocol of one MTA connection (one :class:`ClientContext`)."""

    def __init__(self, client: Client) -> None:
        self.client = client
        self.context: ClientContext | None = None
        self.transport: asyncio.Transport | None = None
        #: Why the session ended: finished (QUIT), eof, timeout, protocol error, shutdown, error.
        self.reason: str | None = None
        #: The connection's per-message log (None until the context exists).
        self.message_log: MessageLog | None = None
        self._loop = asyncio.get_running_loop()
        self._tasks: dict[asyncio.Future[Any], asyncio.TimerHandle | None] = {}
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
        # Ours run after the Client's handlers (parent first), so theirs see an open transport.
        context.connect("finished", self._on_finished)
        self.message_log = MessageLog(context)
        log.debug("[%s] connection from %s", context.tag, _peer(context.peer))
        if self._timeout:
            self._timer = self._loop.call_at(self._last_activity + self._timeout, self._on_timer)
        client._connection_made(self)

    def data_received(self, data: bytes) -> None:
        context = self.context
        assert context is not None
        self._last_activity = self._loop.time()
        batch: list[bytes] = []
        self._batch = batch
        try:
            context.feed(data)
        except (ProtocolError, NegotiationError) as exc:
            self._protocol_error(exc)
        except Exception:
            # Only reachable with exception_policy=None: the handler's error is re-raised.
            log.exception("[%s] unhandled error; closing the connection", context.tag)
            self.close("error")
        self._flush()
        if self._quickack is not None and not batch:
            # Nothing to send back (a macro packet, a no-reply event, a handler still
            # running): ACK now rather than after the kernel's ~40 ms delayed-ACK timer, which
            # a Nagle-delayed MTA write would wait for. A reply carries the ACK by itself.
            rearm_quickack(self._quickack)

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
            self._summary()
            self.client._connection_lost(self)

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
        if self.transport is not None:
            self.transport.abort()

    def _on_finished(self, context: ClientContext) -> None:
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
        task.add_done_callback(lambda finished: self._task_done(finished, done))

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
        context = self.context
        assert context is not None
        if self._closed:
            if not task.cancelled() and task.exception() is not None:
                log.debug("[%s] a handler failed after the connection closed: %r",
                          context.tag, task.exception())
            return
        result, error = task_outcome(task)
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
        context = self.context
        assert context is not None
        counts = self.verdicts
        messages = sum(counts.values())
        verdicts = ", ".join(f"{name} {count}" for name, count in sorted(counts.items()))
        seconds = time.monotonic() - self._started
        log.info(
            "[%s] session ended (%s): %d message%s%s, %.3f s, peer %s",
            context.tag, self.reason, messages, "" if messages == 1 else "s",
            f" ({verdicts})" if verdicts else "", seconds, _peer(context.peer),
            extra={"milterkit": {"event": "session", "tag": context.tag, "reason": self.reason,
                                 "messages": messages, "verdicts": dict(counts),
                                 "seconds": round(seconds, 3), "peer": _peer(context.peer)}},
        )


def _peer(peer: object) -> str:
    if isinstance(peer, tuple) and len(peer) >= 2:
        return f"[{peer[0]}]:{peer[1]}"
    if peer in (None, "", b""):
        return "unix"
    return str(peer)
