"""pytest fixtures for testing milters (loaded through the ``pytest11`` entry point, so
installing milterkit is enough).

- ``milter``: a factory, ``milter(target, handler_errors="raise", **server_options)``, giving
  an :class:`~milterkit.testing.inprocess.InProcess` runner: the filter runs in the test's
  process against :class:`~milterkit.testing.ServerContext`, with no socket. An exception a
  handler raises is re-raised from ``run()`` (so a test never passes over a crashing handler);
  ``handler_errors="policy"`` lets the exception policy answer it instead (a tempfail by
  default), to test that answer.
- ``milter_server``: a factory, ``milter_server(target, family="unix", args=())``, that starts
  ``milterkit run TARGET`` as a real subprocess on a temporary unix socket (or a free TCP port on
  127.0.0.1 with ``family="inet"``), waits until it accepts, and stops it after the test. The
  returned :class:`MilterProcess` has ``spec`` and ``run(messages, **server_options)``.

A relative file ``target`` (``milter("myfilter.py")``) is found next to the test file first,
then in the current directory.
- ``message``: a factory for :class:`~milterkit.testing.message.Message` (``Message.build``).

Assertion helpers live in :mod:`milterkit.testing.assertions` (``assert_verdict``,
``assert_header_added`` …); their failures say what the milter did instead.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest

from .inprocess import InProcess, Messages
from .message import Message
from .results import SessionResult
from .sockets import run_session
from .target import Target

#: Seconds a started ``milterkit run`` gets to accept connections.
START_TIMEOUT = 15.0


class MilterProcess:
    """A ``milterkit run`` subprocess serving a filter on :attr:`spec`."""

    def __init__(self, target: str, spec: str, args: Sequence[str] = (),
                 env: dict[str, str] | None = None) -> None:
        self.target = target
        self.spec = spec
        self._log = tempfile.TemporaryFile()
        self._final_output = ""
        command = [sys.executable, "-m", "milterkit", "run", target, "--listen", spec, *args]
        self.process = subprocess.Popen(
            command, stdout=self._log, stderr=subprocess.STDOUT, env=env,
        )

    @property
    def output(self) -> str:
        """What the process printed so far (its log; all of it once stopped)."""
        if self._log.closed:
            return self._final_output
        # pread leaves the file's offset alone: the child writes through the same open file.
        fd = self._log.fileno()
        return os.pread(fd, os.fstat(fd).st_size, 0).decode("utf-8", "replace")

    def wait_ready(self, timeout: float = START_TIMEOUT) -> None:
        """Poll the socket until the milter accepts a connection."""
        deadline = time.monotonic() + timeout
        while True:
            if self.process.poll() is not None:
                raise RuntimeError(
                    f"milterkit run exited with {self.process.returncode}:\n{self.output}"
                )
            try:
                with _connect(self.spec, 1.0):
                    return
            except OSError:
                if time.monotonic() > deadline:
                    self.stop()  # closes the log: its text was kept by stop()
                    raise TimeoutError(
                        f"milterkit run did not listen on {self.spec} within {timeout} s:\n"
                        f"{self.output}"
                    ) from None
                time.sleep(0.02)

    def run(self, messages: Messages = (), *, check: bool = True,
            **server_options: Any) -> SessionResult:
        """One MTA session against the process (see :func:`~milterkit.testing.sockets.
        run_session`)."""
        return run_session(self.spec, messages, check=check, **server_options)

    def stop(self, timeout: float = 10.0) -> int:
        """SIGTERM, wait, then SIGKILL if needed; returns the exit status."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout)
        if not self._log.closed:
            self._final_output = self.output
            self._log.close()
        return self.process.returncode


def _connect(spec: str, timeout: float) -> socket.socket:
    from ..server.spec import parse_spec

    parsed = parse_spec(spec)
    if parsed.family == "unix":
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        address: Any = parsed.path
    else:
        sock = socket.socket(parsed.socket_family, socket.SOCK_STREAM)
        address = (parsed.host or "127.0.0.1", parsed.port)
    sock.settimeout(timeout)
    try:
        sock.connect(address)
    except OSError:
        sock.close()
        raise
    return sock


def free_tcp_port(host: str = "127.0.0.1") -> int:
    """A TCP port nobody listens on right now (the kernel's pick)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def resolve_target(target: Target, test_file: Path) -> Target:
    """A relative file target found next to ``test_file`` (kept as it is otherwise)."""
    if not isinstance(target, (str, Path)):
        return target
    text = str(target)
    name, colon, function = text.rpartition(":")
    if not (colon and name and function.isidentifier()):
        name, colon, function = text, "", ""
    path = Path(name)
    if path.is_absolute() or not (name.endswith(".py") or "/" in name):
        return target
    beside = test_file.parent / path
    if beside.is_file():
        return f"{beside}{colon}{function}"
    return target


@pytest.fixture
def milter(request: pytest.FixtureRequest) -> Callable[..., InProcess]:
    """``milter(target, handler_errors="raise", **server_options)`` -> an in-process runner
    for ``target``; a handler's exception is re-raised unless ``handler_errors="policy"``."""
    test_file = Path(request.path)

    def make(target: Target, *, handler_errors: str = "raise",
             **server_options: Any) -> InProcess:
        return InProcess(resolve_target(target, test_file), handler_errors=handler_errors,
                         **server_options)

    return make


@pytest.fixture
def milter_server(request: pytest.FixtureRequest) -> Iterator[Callable[..., MilterProcess]]:
    """``milter_server(target, family="unix", args=())`` -> a running ``milterkit run``."""
    started: list[MilterProcess] = []
    directory = tempfile.mkdtemp(prefix="milterkit-")
    test_file = Path(request.path)

    def start(target: str | Path, family: str = "unix", args: Sequence[str] = (),
              env: dict[str, str] | None = None) -> MilterProcess:
        if family == "unix":
            spec = f"unix:{directory}/milter-{len(started)}.sock"
        elif family == "inet":
            spec = f"inet:{free_tcp_port()}@127.0.0.1"
        else:
            raise ValueError(f"family must be 'unix' or 'inet', not {family!r}")
        process = MilterProcess(str(resolve_target(target, test_file)), spec, args, env)
        started.append(process)
        process.wait_ready()
        return process

    try:
        yield start
    finally:
        try:
            for process in started:
                process.stop()
        finally:
            # Whatever a milter left there (sockets, files), the directory goes.
            shutil.rmtree(directory, ignore_errors=True)


@pytest.fixture
def message() -> Callable[..., Message]:
    """``message(sender=..., recipients=[...], headers=[...], body=...)`` -> Message.build."""
    return Message.build
