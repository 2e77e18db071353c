"""Auto-start of a child milter's command: :class:`ChildProcess`.

The manager starts the command when it is set up and waits (at most the child's
``start-timeout``) until its connection spec accepts connections. When the child has exited, the
next MTA connection that needs it starts it again, at most ``max-restarts`` times; each start
and each exit is logged. The processes are terminated when the manager's process exits. With
``--workers N`` the parent starts them and only the parent restarts them.
"""

from __future__ import annotations

import atexit
import logging
import os
import socket
import subprocess
import time
from collections.abc import Sequence

from ..compose.unit import FilterLoadError
from ..server.spec import parse_spec

log = logging.getLogger("milterkit.manager")


class ChildStartError(FilterLoadError):
    """A child's command cannot be started or never listened."""


class ChildProcess:
    """The process of one auto-started child milter."""

    def __init__(self, name: str, command: Sequence[str], connection: str,
                 start_timeout: float, max_restarts: int) -> None:
        self.name = name
        self.command = list(command)
        self.connection = connection
        self.start_timeout = start_timeout
        self.max_restarts = max_restarts
        #: How many times the command was started again after it exited.
        self.restarts = 0
        self.process: subprocess.Popen[bytes] | None = None
        self._owner = os.getpid()
        self._gave_up = False
        atexit.register(self.stop)

    def start(self, wait: bool = True) -> None:
        """Run the command; with ``wait``, until the child accepts connections."""
        try:
            self.process = subprocess.Popen(self.command, stdin=subprocess.DEVNULL,
                                            start_new_session=True)
        except OSError as exc:
            raise ChildStartError(f"milter {self.name}: cannot run {self.command[0]!r}: "
                                  f"{exc.strerror or exc}") from None
        log.info("milter %s: started %s (pid %d)", self.name, " ".join(self.command),
                 self.process.pid)
        if wait:
            self.wait_listening()

    def wait_listening(self) -> None:
        """Wait until the child's connection spec accepts a connection."""
        deadline = time.monotonic() + self.start_timeout
        while time.monotonic() < deadline:
            if self.process is not None and self.process.poll() is not None:
                raise ChildStartError(f"milter {self.name}: {self.command[0]} exited with "
                                      f"status {self.process.returncode} at start-up")
            if _accepts(self.connection):
                return
            time.sleep(0.05)
        raise ChildStartError(f"milter {self.name}: {self.command[0]} did not listen on "
                              f"{self.connection} within {self.start_timeout:g} s")

    def ensure_running(self) -> None:
        """Start the command again if it has exited (bounded by ``max_restarts``)."""
        process = self.process
        if process is None or os.getpid() != self._owner or process.poll() is None:
            return  # not started, not ours to watch (a forked worker), or running
        if self.restarts >= self.max_restarts:
            if not self._gave_up:
                self._gave_up = True
                log.error("milter %s: its process %d exited with status %s; not starting it "
                          "again (max-restarts %d reached)", self.name, process.pid,
                          process.returncode, self.max_restarts)
            return
        self.restarts += 1
        log.warning("milter %s: its process %d exited with status %s; starting it again "
                    "(restart %d of %d)", self.name, process.pid, process.returncode,
                    self.restarts, self.max_restarts)
        try:
            self.start(wait=False)
        except ChildStartError as exc:
            log.error("%s", exc)

    def stop(self) -> None:
        """Terminate the process (and wait a little for it)."""
        process = self.process
        if process is None or os.getpid() != self._owner or process.poll() is not None:
            return
        process.terminate()
        try:
            process.wait(5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _accepts(connection: str) -> bool:
    spec = parse_spec(connection)
    try:
        address = spec.resolve()
        with socket.socket(spec.socket_family, socket.SOCK_STREAM) as sock:
            sock.settimeout(1.0)
            sock.connect(address)
        return True
    except (OSError, ValueError):
        return False
