"""Accepting MTA connections on one listening socket, from a reader callback.

The event loop's own servers (``loop.create_server``) cannot hold ``accept()`` back at a
connection limit, and uvloop's stops for good on an ``accept()`` error it cannot handle. So
milterkit accepts by itself, with what it needs and no more per connection (issue 15):

* the listener is watched with ``loop.add_reader`` once, not once per connection, and every
  connection already waiting is taken in that turn (up to :data:`ACCEPT_BATCH` and the room
  left), so new MTAs do not wait a turn of a loaded loop each (fair accept);
* at the connection limit the listener is no longer watched: further MTAs wait in the kernel's
  listen backlog, as libmilter's do, until :meth:`Acceptor.resume` is called;
* an ``accept()`` that fails (out of file descriptors, a listener the kernel stopped) is
  logged and retried with a back-off doubling up to :data:`ACCEPT_RETRY_MAX`, never given up.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import socket
from collections.abc import Callable

log = logging.getLogger("milterkit.server")

__all__ = ["ACCEPT_BATCH", "ACCEPT_RETRY_FIRST", "ACCEPT_RETRY_MAX", "Acceptor"]

#: Back-off between failed accept() calls on one listener: doubles from the first to the last.
ACCEPT_RETRY_FIRST = 0.1
ACCEPT_RETRY_MAX = 2.0
#: At most so many connections are accepted per readiness of a listener (then other work runs).
ACCEPT_BATCH = 128
# A failure that goes on is logged again at error level every so many retries (~1 minute).
_RELOGGED_EVERY = 30
# accept() errors that say "not now" rather than "this socket is broken".
_TRANSIENT = frozenset({
    errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM, errno.ECONNABORTED, errno.EPROTO,
})


class Acceptor:
    """Accepts connections on ``sock`` (named ``name`` in logs) and starts each with
    ``loop.connect_accepted_socket(factory, ...)``.

    ``room()`` says how many more connections may be opened now (None: no limit); it is asked
    before each batch, and counts those this acceptor is still starting (:attr:`starting`).
    When it says 0, ``on_full()`` is called and the listener is left alone until
    :meth:`resume`. ``closing()`` says whether a failing listener is being closed on purpose.
    """

    def __init__(
        self, sock: socket.socket, name: str, factory: Callable[[], asyncio.Protocol], *,
        room: Callable[[], int | None], on_full: Callable[[], None],
        closing: Callable[[], bool],
    ) -> None:
        self._loop = asyncio.get_running_loop()
        self._sock = sock
        self._name = name
        self._factory = factory
        self._room = room
        self._on_full = on_full
        self._closing = closing
        self._watching = False
        self._closed = False
        self._retry: asyncio.TimerHandle | None = None
        self._delay = 0.0  # the current back-off; 0 while accept() works
        self._failures = 0
        #: Connections accepted whose transport is still being made (not yet counted open).
        self._starting: set[asyncio.Task[None]] = set()

    @property
    def starting(self) -> int:
        """How many accepted connections are still being started."""
        return len(self._starting)

    def start(self) -> None:
        """Start watching the listener."""
        self._watch()

    def resume(self) -> None:
        """A slot may have freed: watch the listener again if the limit was what stopped it."""
        if not self._watching and self._retry is None and not self._closed:
            self._watch()

    def close(self) -> None:
        """Accept no more; connections still being started are cancelled (and closed)."""
        self._closed = True
        self._unwatch()
        if self._retry is not None:
            self._retry.cancel()
            self._retry = None
        for task in list(self._starting):
            task.cancel()

    # ---------------------------------------------------------------- internals

    def _watch(self) -> None:
        if not self._watching and not self._closed and self._sock.fileno() != -1:
            self._loop.add_reader(self._sock.fileno(), self._on_readable)
            self._watching = True

    def _unwatch(self) -> None:
        if self._watching:
            self._watching = False
            if self._sock.fileno() != -1:
                self._loop.remove_reader(self._sock.fileno())

    def _on_readable(self) -> None:
        room = self._room()
        batch = ACCEPT_BATCH if room is None else min(room, ACCEPT_BATCH)
        if batch <= 0:
            self._unwatch()  # the MTAs wait in the kernel's backlog until resume()
            self._on_full()
            return
        sock = self._sock
        for _ in range(batch):
            try:
                conn, _ = sock.accept()
            except (BlockingIOError, InterruptedError):
                return  # none (more) waiting
            except OSError as exc:
                self._failed(exc)
                return
            if self._failures:
                log.info("accepting again on %s after %d failed accept()", self._name,
                         self._failures)
                self._delay, self._failures = 0.0, 0
            self._start_connection(conn)
        if room is not None and room <= batch:  # the limit is reached: leave the rest waiting
            self._unwatch()
            self._on_full()

    def _failed(self, exc: OSError) -> None:
        self._unwatch()
        if self._closing() or self._sock.fileno() == -1:
            log.debug("accept() on %s failed while closing: %s", self._name, exc)
            return  # the listener was closed under us: nothing more to accept
        # Never give up while the process runs: a listener that silently stopped would leave
        # the MTA's connections queueing in the backlog for ever.
        delay = min(self._delay * 2, ACCEPT_RETRY_MAX) if self._delay else ACCEPT_RETRY_FIRST
        self._delay = delay
        self._failures += 1
        failures = self._failures
        if failures == 1 or failures % _RELOGGED_EVERY == 0:
            kind = "out of resources" if exc.errno in _TRANSIENT else "error"
            log.error("accept() on %s failed (%s, %d time%s in a row): %s; retrying, backing "
                      "off up to %g s", self._name, kind, failures, "" if failures == 1 else "s",
                      exc, ACCEPT_RETRY_MAX)
        else:
            log.debug("accept() on %s failed again: %s", self._name, exc)
        self._retry = self._loop.call_later(delay, self._retry_now)

    def _retry_now(self) -> None:
        self._retry = None
        if self._closed:
            return
        # Try at once rather than waiting for readiness: a listener the kernel stopped may
        # never be reported readable again, and its error must be seen (and logged) again.
        self._watch()
        self._on_readable()

    def _start_connection(self, conn: socket.socket) -> None:
        task = self._loop.create_task(self._connect(conn))
        self._starting.add(task)
        task.add_done_callback(self._started)

    def _started(self, task: asyncio.Task[None]) -> None:
        self._starting.discard(task)
        self.resume()  # one that failed to start left its slot free

    async def _connect(self, conn: socket.socket) -> None:
        try:
            conn.setblocking(False)
            await self._loop.connect_accepted_socket(self._factory, conn)
        except OSError as exc:  # the peer went away between accept() and now
            log.debug("dropping a connection that failed at once: %s", exc)
            conn.close()
        except asyncio.CancelledError:  # the listener is closing: this one is not served
            conn.close()
            raise
