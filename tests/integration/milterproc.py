"""``milterkit run`` as a real subprocess, for the tests that put it behind a real MTA.

:class:`MilterProcess` starts ``python -m milterkit run TARGET --listen SPEC ...``, waits until
the socket accepts connections, and stops it with SIGTERM. Its stderr (milterkit's log) goes to
a file so a long-running milter can never block on a full pipe, and :meth:`MilterProcess.log`
returns it for failure reports. The same spec can be served again after :meth:`stop` (a restart),
which is how a test swaps the filter behind a Postfix that keeps running.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import TracebackType

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples"
FILTERS = Path(__file__).resolve().parent / "filters"

__all__ = ["EXAMPLES", "FILTERS", "MilterProcess", "MilterStartError"]


class MilterStartError(RuntimeError):
    """``milterkit run`` exited or did not listen in time; the message carries its log."""


class MilterProcess:
    """One ``milterkit run`` process serving ``target`` on ``spec``.

    ``spec`` is a milterkit connection spec (``unix:/path`` or ``inet:PORT@127.0.0.1``);
    :attr:`postfix_spec` is the same address in Postfix's ``smtpd_milters`` syntax.
    ``options`` are further command-line words (``--workers 2``...); ``env`` adds environment
    variables (filters in ``tests/integration/filters`` read their knobs from there).
    """

    def __init__(
        self,
        target: str | os.PathLike[str],
        spec: str,
        options: Sequence[str] = (),
        env: Mapping[str, str] | None = None,
        start_timeout: float = 15.0,
    ) -> None:
        self.target = str(target)
        self.spec = spec
        self.options = list(options)
        self.env = dict(env or {})
        self.start_timeout = start_timeout
        self.process: subprocess.Popen[bytes] | None = None
        fd, name = tempfile.mkstemp(prefix="milterkit-run-", suffix=".log")
        os.close(fd)
        self.log_path = Path(name)
        self.starts = 0

    # ------------------------------------------------------------------ addresses

    @property
    def postfix_spec(self) -> str:
        """The address as Postfix writes it: ``unix:/path`` or ``inet:127.0.0.1:PORT``."""
        family, _, rest = self.spec.partition(":")
        if family == "unix":
            return self.spec
        port, _, host = rest.partition("@")
        return f"inet:{host.strip('[]') or '127.0.0.1'}:{port}"

    def _probe(self) -> bool:
        """True once something accepts a connection on the spec."""
        family, _, rest = self.spec.partition(":")
        try:
            if family == "unix":
                with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
                    sock.settimeout(1.0)
                    sock.connect(rest)
            else:
                port, _, host = rest.partition("@")
                with socket.create_connection((host.strip("[]"), int(port)), timeout=1.0):
                    pass
        except OSError:
            return False
        return True

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> MilterProcess:
        """Start the process and wait until its socket accepts connections."""
        if self.process is not None and self.process.poll() is None:
            raise MilterStartError("already running")
        argv = [sys.executable, "-m", "milterkit", "run", self.target, "--listen", self.spec,
                "--log-level", "debug", *self.options]
        env = {**os.environ, **self.env}
        # A stray LISTEN_FDS would make the server use sockets that are not ours.
        env.pop("LISTEN_FDS", None)
        env.pop("LISTEN_PID", None)
        with open(self.log_path, "ab") as log:
            log.write(f"--- start {self.starts + 1}: {' '.join(argv)}\n".encode())
            log.flush()
            self.process = subprocess.Popen(
                argv, stdin=subprocess.DEVNULL, stdout=log, stderr=log, env=env, cwd=ROOT,
            )
        self.starts += 1
        deadline = time.monotonic() + self.start_timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise MilterStartError(
                    f"milterkit run exited with {self.process.returncode}\n{self.log()}"
                )
            # An earlier start of ours has exited (stop() waits for it), so whatever accepts
            # on the spec now is this process.
            if self._probe():
                return self
            time.sleep(0.02)
        self.stop()
        raise MilterStartError(f"milterkit run did not listen within {self.start_timeout}s\n"
                               f"{self.log()}")

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 10.0) -> int | None:
        """Signal the process (SIGTERM: graceful shutdown) and wait; SIGKILL if it hangs.

        Returns the exit status, or None if it was not running.
        """
        proc = self.process
        if proc is None:
            return None
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(sig)
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)
        self.process = None
        return proc.returncode

    def restart(self) -> MilterProcess:
        """Stop and start again on the same spec."""
        self.stop()
        return self.start()

    @property
    def running(self) -> bool:
        """Whether the process is alive."""
        return self.process is not None and self.process.poll() is None

    def log(self) -> str:
        """Everything the process logged so far (all starts)."""
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def close(self) -> None:
        """Stop the process and remove its log file."""
        self.stop()
        with contextlib.suppress(FileNotFoundError):
            self.log_path.unlink()

    def __enter__(self) -> MilterProcess:
        if not self.running:
            self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
