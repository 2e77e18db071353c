"""Pre-forked workers, as milter-manager's ``n-workers``: the master binds the sockets, forks N
workers that all accept on them, restarts a worker that dies, and drains them on SIGTERM.

The master runs no event loop (forking a process with a running loop is unsafe); it waits on a
self-pipe fed by ``signal.set_wakeup_fd``. Each worker reads a pipe of its own from the master:
``d`` asks it to drain, ``n`` to close its sessions at once, and EOF means the master is gone
(the worker drains rather than live on as an orphan).

Why a pipe and not a forwarded SIGTERM: Ctrl-C in a terminal and systemd's default
``KillMode=control-group`` signal every worker as well as the master. A worker counts only the
signals it receives (the first drains, a second closes at once), and a ``d`` from the master
drains at most once, so a signal sent to the whole group is one request, never two.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import select
import signal
import time
from dataclasses import dataclass
from types import FrameType
from typing import TYPE_CHECKING

from .loop import run as run_loop

if TYPE_CHECKING:
    from .client import Client

log = logging.getLogger("milterkit.server.workers")

#: A worker that dies sooner than this after its start is restarted with a growing delay.
MIN_HEALTHY_LIFETIME = 1.0
MAX_BACKOFF = 10.0
# Even a healthy worker is replaced after a short pause: when a service manager signals the
# whole process group, a worker may exit before the master has seen its own SIGTERM.
MIN_RESTART_DELAY = 0.1


@dataclass
class Worker:
    """One worker slot: its id (1..N), its process and its restart bookkeeping."""

    id: int
    pid: int = 0
    started: float = 0.0
    backoff: float = 0.0
    restart_at: float | None = None
    #: The master's end of this worker's pipe (see the module's docstring); -1 when closed.
    pipe: int = -1


class Supervisor:
    """Runs ``client`` in ``workers`` pre-forked processes until SIGTERM or SIGINT."""

    def __init__(self, client: Client, workers: int, *, loop: str = "auto") -> None:
        if workers < 1:
            raise ValueError(f"workers must be at least 1, not {workers}")
        self.client = client
        self.loop = loop
        self.workers = [Worker(i) for i in range(1, workers + 1)]
        self._stop_signal: int | None = None
        self._hurry = False  # a second SIGTERM/SIGINT: workers close their sessions at once
        self._wakeup: tuple[int, int] | None = None

    # ------------------------------------------------------------------ master

    def run(self) -> None:
        """Bind, fork, supervise; returns when every worker has exited after a stop signal."""
        client = self.client
        client.bind()
        wake_r, wake_w = self._wakeup = os.pipe()
        os.set_blocking(wake_r, False)
        os.set_blocking(wake_w, False)
        previous_fd = signal.set_wakeup_fd(wake_w)
        previous = {
            signum: signal.signal(signum, self._on_signal)
            for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGCHLD)
        }
        try:
            log.info("master %d: starting %d workers on %s", os.getpid(), len(self.workers),
                     ", ".join(listener.name for listener in client.listeners))
            for worker in self.workers:
                self._spawn(worker)
            while self._stop_signal is None:
                self._reap()
                self._wait(self._next_restart())
                self._restart_due()
            log.info("master: %s received, draining %d workers",
                     signal.Signals(self._stop_signal).name, self._alive())
            self._drain()
        finally:
            signal.set_wakeup_fd(previous_fd)
            for signum, handler in previous.items():
                signal.signal(signum, handler)
            for worker in self.workers:
                _close_pipe(worker)
            for fd in (wake_r, wake_w):
                with contextlib.suppress(OSError):
                    os.close(fd)
            for listener in client.listeners:
                listener.close(unlink=client.unlink_on_close)
        log.info("master: all workers exited")

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        if signum in (signal.SIGTERM, signal.SIGINT):
            if self._stop_signal is None:
                self._stop_signal = signum
            else:
                self._hurry = True
        # SIGCHLD needs no work here: the wakeup fd ends the wait and _reap runs.

    def _wait(self, timeout: float | None) -> None:
        assert self._wakeup is not None
        if self._stop_signal is not None:
            return
        ready, _, _ = select.select([self._wakeup[0]], [], [], timeout)
        if ready:
            with contextlib.suppress(BlockingIOError):
                while os.read(self._wakeup[0], 512):
                    pass

    def _alive(self) -> int:
        return sum(1 for worker in self.workers if worker.pid)

    def _reap(self) -> None:
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            worker = next((w for w in self.workers if w.pid == pid), None)
            if worker is None:
                continue
            worker.pid = 0
            _close_pipe(worker)
            how = _describe_exit(status)
            if self._stop_signal is not None:
                log.info("worker %d (pid %d) exited: %s", worker.id, pid, how)
                continue
            lived = time.monotonic() - worker.started
            if lived < MIN_HEALTHY_LIFETIME:
                worker.backoff = min(MAX_BACKOFF, max(MIN_RESTART_DELAY * 2, worker.backoff * 2))
            else:
                worker.backoff = MIN_RESTART_DELAY
            worker.restart_at = time.monotonic() + worker.backoff
            log.warning("worker %d (pid %d) died (%s) after %.1f s; restarting in %.1f s",
                        worker.id, pid, how, lived, worker.backoff)

    def _next_restart(self) -> float | None:
        due = [w.restart_at for w in self.workers if w.restart_at is not None]
        return max(0.0, min(due) - time.monotonic()) if due else None

    def _restart_due(self) -> None:
        now = time.monotonic()
        for worker in self.workers:
            if self._stop_signal is not None:
                return
            if worker.restart_at is not None and worker.restart_at <= now:
                worker.restart_at = None
                self._spawn(worker)

    def _drain(self) -> None:
        for worker in self.workers:
            worker.restart_at = None
        self._tell(b"d")
        hurried = False
        deadline = time.monotonic() + self.client.shutdown_timeout + 5.0
        while self._alive() and time.monotonic() < deadline:
            if self._hurry and not hurried:
                hurried = True
                log.info("master: second signal: workers close their sessions now")
                self._tell(b"n")
            self._reap()
            if self._alive():
                assert self._wakeup is not None
                select.select([self._wakeup[0]], [], [], 0.1)
                with contextlib.suppress(BlockingIOError):
                    while os.read(self._wakeup[0], 512):
                        pass
        for worker in self.workers:
            if worker.pid:
                log.warning("worker %d (pid %d) did not stop in time: killing it",
                            worker.id, worker.pid)
                with contextlib.suppress(ProcessLookupError):
                    os.kill(worker.pid, signal.SIGKILL)
                with contextlib.suppress(ChildProcessError):
                    os.waitpid(worker.pid, 0)
                worker.pid = 0

    def _tell(self, message: bytes) -> None:
        for worker in self.workers:
            if worker.pid and worker.pipe >= 0:
                with contextlib.suppress(OSError):  # it died meanwhile: _reap will see it
                    os.write(worker.pipe, message)

    def _spawn(self, worker: Worker) -> None:
        _close_pipe(worker)
        read_end, worker.pipe = os.pipe()
        pid = os.fork()
        if pid == 0:  # pragma: no cover - runs in the child, which never returns
            self._worker_main(worker.id, read_end)
        os.close(read_end)
        worker.pid = pid
        worker.started = time.monotonic()
        log.info("worker %d started (pid %d)", worker.id, pid)

    # ------------------------------------------------------------------ worker

    def _worker_main(self, worker_id: int, pipe: int) -> None:  # pragma: no cover - child
        code = 1
        try:
            signal.set_wakeup_fd(-1)
            for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGCHLD):
                signal.signal(signum, signal.SIG_DFL)
            assert self._wakeup is not None
            for fd in self._wakeup:
                os.close(fd)
            # Every worker's pipe to the master but our own read end: a worker holding another's
            # write end would hide the master's death from it.
            for worker in self.workers:
                _close_pipe(worker)
            client = self.client
            client.become_worker(worker_id)
            run_loop(self._serve(pipe), self.loop, serving=True)
            code = 0
        except BaseException:
            log.exception("worker %d failed", worker_id)
        finally:
            logging.shutdown()
            os._exit(code)

    async def _serve(self, pipe: int) -> None:  # pragma: no cover - child process
        client = self.client
        loop = asyncio.get_running_loop()
        draining = False
        signals = 0

        def stop(now: bool) -> None:
            # Client.shutdown drains on its first call and closes the sessions on the next.
            nonlocal draining
            if not draining:
                draining = True
                client.request_shutdown()
            if now:
                client.request_shutdown()

        def on_signal(signum: int) -> None:
            nonlocal signals
            signals += 1
            log.info("worker %d: received %s", client.worker_id, signal.Signals(signum).name)
            stop(now=signals > 1)

        def on_message() -> None:
            try:
                data = os.read(pipe, 64)
            except OSError:
                data = b""
            if not data:
                loop.remove_reader(pipe)
                log.error("worker %d: the master is gone; shutting down", client.worker_id)
                stop(now=False)
                return
            stop(now=b"n" in data)

        loop.add_reader(pipe, on_message)
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, on_signal, signum)
        await client.serve_forever()


def _close_pipe(worker: Worker) -> None:
    if worker.pipe >= 0:
        with contextlib.suppress(OSError):
            os.close(worker.pipe)
        worker.pipe = -1


def _describe_exit(status: int) -> str:
    if os.WIFSIGNALED(status):
        return f"killed by {signal.Signals(os.WTERMSIG(status)).name}"
    return f"exit code {os.waitstatus_to_exitcode(status)}"
