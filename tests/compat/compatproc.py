"""``milterkit compat pymilter COMMAND`` as a real subprocess, like milterproc's ``run``."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence

from milterproc import ROOT, MilterProcess, MilterStartError

COMPAT_FILTERS = ROOT / "tests" / "compat" / "filters"


class CompatProcess(MilterProcess):
    """Serves ``command`` (words after FLAVOUR) on ``spec``: the application gets ``spec``
    as its own socket argument when ``pass_spec``; milterkit's ``--listen`` is never used, so
    the application's own ``setconn`` is what is tested."""

    def __init__(
        self, command: Sequence[str], spec: str, options: Sequence[str] = (),
        env: Mapping[str, str] | None = None, start_timeout: float = 20.0,
        flavour: str = "pymilter",
    ) -> None:
        super().__init__(" ".join(command), spec, options, env, start_timeout)
        self.command = list(command)
        self.flavour = flavour
        #: Descriptors the process inherits (a listening socket for ``fd:N``).
        self.pass_fds: tuple[int, ...] = ()

    def __enter__(self) -> CompatProcess:
        if not self.running:
            self.start()
        return self

    def argv(self) -> list[str]:
        """The command line that serves the application."""
        return [sys.executable, "-m", "milterkit", "compat", self.flavour, "--log-level",
                "debug", *self.options, *self.command]

    def start(self) -> CompatProcess:
        if self.process is not None and self.process.poll() is None:
            raise MilterStartError("already running")
        argv = self.argv()
        env = {**os.environ, **self.env}
        env.pop("LISTEN_FDS", None)
        env.pop("LISTEN_PID", None)
        with open(self.log_path, "ab") as log:
            log.write(f"--- start: {' '.join(argv)}\n".encode())
            log.flush()
            self.process = subprocess.Popen(
                argv, stdin=subprocess.DEVNULL, stdout=log, stderr=log, env=env, cwd=ROOT,
                pass_fds=self.pass_fds,
            )
        self.starts += 1
        deadline = time.monotonic() + self.start_timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise MilterStartError(
                    f"milterkit compat exited with {self.process.returncode}\n{self.log()}")
            if self._probe():
                return self
            time.sleep(0.02)
        self.stop()
        raise MilterStartError(f"milterkit compat did not listen in time\n{self.log()}")


class PlainProcess(CompatProcess):
    """``command`` run as it is (the real pymilter's interpreter and a script), no milterkit."""

    def argv(self) -> list[str]:
        return list(self.command)
