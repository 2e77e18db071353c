"""``milterkit run`` as a real subprocess, with its log in a file the test can wait on."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import TracebackType

ROOT = Path(__file__).resolve().parents[2]


class RunningServer:
    """``python -m milterkit run ARGS``; ``prefix`` replaces the interpreter command (for a
    wrapper that sets up file descriptors and the environment, then execs); ``new_session``
    makes the server a process group of its own, for ``os.killpg``."""

    def __init__(
        self, args: Sequence[str], *, env: Mapping[str, str] | None = None,
        pass_fds: Sequence[int] = (), prefix: Sequence[str] | None = None,
        new_session: bool = False,
    ) -> None:
        self.log_file = tempfile.NamedTemporaryFile(prefix="mk-log-", suffix=".txt", delete=False)
        command = [*(prefix or [sys.executable]), "-m", "milterkit", "run", *args]
        environment = dict(os.environ if env is None else env)
        environment.setdefault("PYTHONUNBUFFERED", "1")
        self.process = subprocess.Popen(
            command, stdout=self.log_file, stderr=subprocess.STDOUT, cwd=ROOT, env=environment,
            pass_fds=tuple(pass_fds), start_new_session=new_session,
        )

    @property
    def log(self) -> str:
        return Path(self.log_file.name).read_text(errors="replace")

    def wait_for(
        self, pattern: str, timeout: float = 15.0, after: int = 0, *, outlives: bool = False,
    ) -> re.Match[str]:
        """Wait until the log (from character ``after``) matches ``pattern``.

        The wait fails early if the server process exits, unless ``outlives``: the line comes
        from a process that goes on after it (a worker whose master was killed).
        """
        deadline = time.monotonic() + timeout
        regex = re.compile(pattern)
        while True:
            match = regex.search(self.log, after)
            if match:
                return match
            if not outlives and self.process.poll() is not None:
                match = regex.search(self.log, after)
                if match:
                    return match
                raise AssertionError(
                    f"server exited ({self.process.returncode}) before {pattern!r}:\n{self.log}"
                )
            if time.monotonic() > deadline:
                raise AssertionError(f"{pattern!r} did not appear in time:\n{self.log}")
            time.sleep(0.02)

    def stop(self, signum: int = signal.SIGTERM, timeout: float = 20.0) -> int:
        """Send ``signum`` and wait for the exit code."""
        if self.process.poll() is None:
            self.process.send_signal(signum)
        return self.process.wait(timeout)

    def __enter__(self) -> RunningServer:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(10)
        self.log_file.close()
        os.unlink(self.log_file.name)
