"""examples/embedded_server.py run for real: a subprocess on a unix socket, on a TCP port the
kernel picks, on a socket passed as systemd does (LISTEN_FDS), with bad specs and unusable
sockets, and stopped by SIGTERM with a session in flight."""

from __future__ import annotations

import importlib.util
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from types import ModuleType, TracebackType
from typing import IO

import pytest

from milterkit.server import CLIENT_SIGNAL_NAMES, DEFAULT_SPEC, parse_spec
from milterkit.testing import (
    Message,
    ServerContext,
    SessionResult,
    assert_header_added,
    assert_not_modified,
    assert_verdict,
    run_session,
)

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "embedded_server.py"
#: Seconds any wait in these tests may take before the test fails instead of hanging.
WAIT = 15.0

CLEAN = Message.build(sender="alice@example.net", recipients=["bob@example.org"],
                      headers=[("Subject", "Lunch?")], body="Friday at noon?\n")
BLOCKED = Message.build(sender="offers@Spam.Example", recipients=["bob@example.org"],
                        headers=[("Subject", "Buy now")], body="Cheap!\n")


class Example:
    """``python examples/embedded_server.py ARGS`` with stdout and stderr in files."""

    def __init__(
        self, args: Sequence[str], *, env: Mapping[str, str] | None = None,
        prefix: Sequence[str] | None = None, pass_fds: Sequence[int] = (),
    ) -> None:
        self._stdout: IO[bytes] = tempfile.TemporaryFile()
        self._stderr: IO[bytes] = tempfile.TemporaryFile()
        environment = {k: v for k, v in os.environ.items() if k != "MILTER_SPEC"}
        environment.update(env or {})
        self.process = subprocess.Popen(
            [*(prefix or [sys.executable]), str(EXAMPLE), *args], cwd=ROOT, env=environment,
            stdout=self._stdout, stderr=self._stderr, pass_fds=tuple(pass_fds),
        )

    @staticmethod
    def _read(file: IO[bytes]) -> str:
        # pread, not seek+read: the child writes through the same open file, so moving its
        # shared offset would make the child's next line overwrite the start of the file.
        fd = file.fileno()
        return os.pread(fd, os.fstat(fd).st_size, 0).decode("utf-8", "replace")

    @property
    def stdout(self) -> str:
        return self._read(self._stdout)

    @property
    def stderr(self) -> str:
        return self._read(self._stderr)

    def wait_for(self, pattern: str, *, stream: str = "stdout") -> re.Match[str]:
        """Wait until ``stream`` matches ``pattern``; fail if the process exits first."""
        deadline = time.monotonic() + WAIT
        regex = re.compile(pattern, re.MULTILINE)
        while True:
            exited = self.process.poll() is not None
            match = regex.search(self.stdout if stream == "stdout" else self.stderr)
            if match:
                return match
            if exited or time.monotonic() > deadline:
                raise AssertionError(
                    f"{pattern!r} not on {stream} (exit status {self.process.returncode}):\n"
                    f"stdout:\n{self.stdout}\nstderr:\n{self.stderr}"
                )
            time.sleep(0.02)

    def listening_spec(self) -> str:
        """The spec of the first socket the example says it listens on."""
        return self.wait_for(r"^listening on (.+)$").group(1)

    def signal(self, signum: int = signal.SIGTERM) -> None:
        self.process.send_signal(signum)

    def wait(self) -> int:
        return self.process.wait(WAIT)

    def __enter__(self) -> Example:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(WAIT)
        self._stdout.close()
        self._stderr.close()


def _finished(args: Sequence[str], env: Mapping[str, str] | None = None) -> Example:
    """Run the example to its end (for the cases where it must not start)."""
    example = Example(args, env=env)
    example.wait()
    return example


@pytest.fixture
def tmp() -> Iterator[Path]:
    """A directory with a short path: unix socket paths are limited to ~107 bytes."""
    path = tempfile.mkdtemp(prefix="mk-emb-")
    yield Path(path)
    shutil.rmtree(path, ignore_errors=True)


def _check_clean(result: SessionResult, pid: int) -> None:
    assert_verdict(result, "pass")
    assert_header_added(result, "X-Checked-By", f"embedded_server pid={pid}")
    assert result.last.message.header("X-Checked-By") == f"embedded_server pid={pid}"


def _check_blocked(result: SessionResult) -> None:
    assert_verdict(result, "reject", code="550", xcode="5.7.1",
                   text="Mail from spam.example is refused here", stage="envelope-from")
    assert_not_modified(result)


def test_unix_socket_from_the_command_line(tmp: Path) -> None:
    path = tmp / "embedded.sock"
    with Example([f"unix:{path}"]) as example:
        assert example.listening_spec() == f"unix:{path}"
        assert f"spec unix:{path} from the command line: unix socket {path}\n" in example.stdout
        _check_clean(run_session(f"unix:{path}", CLEAN), example.process.pid)
        _check_blocked(run_session(f"unix:{path}", BLOCKED))
        example.signal(signal.SIGTERM)
        assert example.wait() == 0
        assert example.stdout.endswith(
            "stopping: letting 0 session(s) finish\n"
            "stopped: 2 connection(s), 1 message(s) passed, 1 sender(s) refused\n"
        )
        # The logger connected to every client signal: one line each, with the context's tag.
        log = example.stderr
        assert f"embedded_server: listen-started '{path}'\n" in log
        for tag in (1, 2):
            assert f"embedded_server: connection-established [{tag}]\n" in log
            assert f"embedded_server: connection-finished [{tag}]\n" in log
        assert {name for name in CLIENT_SIGNAL_NAMES if f"embedded_server: {name} " in log} == set(
            CLIENT_SIGNAL_NAMES
        )
    assert not path.exists()  # ours: removed on shutdown


def test_tcp_port_from_the_environment() -> None:
    with Example([], env={"MILTER_SPEC": "inet:0@127.0.0.1"}) as example:
        spec = example.listening_spec()
        parsed = parse_spec(spec)  # the listener's name is a spec a client can connect to
        assert parsed.family == "inet" and parsed.host == "127.0.0.1" and parsed.port > 0
        assert ("spec inet:0@[127.0.0.1] from $MILTER_SPEC: IPv4 a free port on 127.0.0.1\n"
                in example.stdout)
        assert f"embedded_server: listen-started ('127.0.0.1', {parsed.port})" in example.wait_for(
            r"listen-started .*$", stream="stderr").string
        _check_clean(run_session(spec, [CLEAN, CLEAN]), example.process.pid)
        example.signal(signal.SIGINT)
        assert example.wait() == 0
        assert "stopped: 1 connection(s), 2 message(s) passed, 0 sender(s) refused\n" in (
            example.stdout
        )


def test_the_command_line_wins_over_the_environment(tmp: Path) -> None:
    path = tmp / "arg.sock"
    with Example([f"unix:{path}"], env={"MILTER_SPEC": "nonsense"}) as example:
        assert example.listening_spec() == f"unix:{path}"
        example.signal()
        assert example.wait() == 0


def test_the_spec_comes_from_argument_then_environment_then_default() -> None:
    loaded = importlib.util.spec_from_file_location("embedded_server_under_test", EXAMPLE)
    assert loaded is not None and loaded.loader is not None
    module: ModuleType = importlib.util.module_from_spec(loaded)
    sys.modules[loaded.name] = module  # dataclasses look their module up there
    try:
        loaded.loader.exec_module(module)
    finally:
        del sys.modules[loaded.name]
    env = {"MILTER_SPEC": "unix:/run/env.sock"}
    assert module.choose_spec("inet:1@[::1]", env) == ("inet:1@[::1]", "the command line")
    assert module.choose_spec(None, env) == ("unix:/run/env.sock", "$MILTER_SPEC")
    assert module.choose_spec(None, {}) == (DEFAULT_SPEC, "the default")


@pytest.mark.parametrize(("args", "env", "message"), [
    (["inet:25x"], None, "embedded_server: bad connection spec from the command line: "
                         "port number has invalid character 'x': 'inet:25x'\n"),
    ([], {"MILTER_SPEC": "tcp:25"}, "embedded_server: bad connection spec from $MILTER_SPEC: "
                                    "protocol must be 'unix', 'local', 'inet', 'inet6' or "
                                    "'fd', not 'tcp': 'tcp:25'\n"),
    (["inet6:25@[127.0.0.1]"], None, "embedded_server: bad connection spec from the command "
                                     "line: an IPv4 address in an inet6 spec: "
                                     "'inet6:25@[127.0.0.1]'\n"),
])
def test_a_bad_spec_is_a_usage_error(
    args: list[str], env: dict[str, str] | None, message: str
) -> None:
    example = _finished(args, env)
    assert example.process.returncode == 2
    assert example.stderr == message
    assert example.stdout == ""


def test_a_socket_that_cannot_be_opened(tmp: Path) -> None:
    missing = _finished([f"unix:{tmp}/no-such-dir/x.sock"])
    assert missing.process.returncode == 1
    assert missing.stderr == (f"embedded_server: cannot listen: cannot bind "
                              f"unix:{tmp}/no-such-dir/x.sock: the directory {tmp}/no-such-dir "
                              "does not exist (create it, writable by the user the milter runs "
                              "as, e.g. with systemd's RuntimeDirectory=)\n")
    assert "listening on" not in missing.stdout

    precious = tmp / "data.txt"
    precious.write_text("not a socket")
    refused = _finished([f"unix:{precious}"])
    assert refused.process.returncode == 1
    assert refused.stderr == (f"embedded_server: cannot listen: {precious} exists and is not a "
                              "socket; refusing to remove it\n")
    assert precious.read_text() == "not a socket"


# Stands in for systemd: put the listening socket on fd 3, say so in LISTEN_PID/LISTEN_FDS
# (LISTEN_PID must be the example's pid, hence the exec), then run the example.
SYSTEMD = (
    "import os, sys; fd = int(sys.argv[1]); os.dup2(fd, 3); os.close(fd); "
    "os.environ['LISTEN_PID'] = str(os.getpid()); os.environ['LISTEN_FDS'] = '1'; "
    "os.execv(sys.executable, [sys.executable, *sys.argv[2:]])"
)


def test_socket_activation_listen_fds(tmp: Path) -> None:
    path = tmp / "activated.sock"
    sock = socket.socket(socket.AF_UNIX)
    try:
        sock.bind(str(path))
        sock.listen(16)  # systemd binds and listens; the service only accepts
        prefix = [sys.executable, "-c", SYSTEMD, str(sock.fileno())]
        # The spec points nowhere usable: only the passed socket can make this work.
        with Example(["unix:/nonexistent-dir/x.sock"], prefix=prefix,
                     pass_fds=[sock.fileno()]) as example:
            assert example.listening_spec() == f"fd:3 (unix:{path})"
            assert ("using 1 socket(s) passed by systemd; ignoring unix:/nonexistent-dir/x.sock\n"
                    in example.stdout)
            _check_clean(run_session(f"unix:{path}", CLEAN), example.process.pid)
            example.signal()
            assert example.wait() == 0
        assert path.exists()  # systemd's socket: not the example's to remove
    finally:
        sock.close()


def _start_session(path: Path) -> tuple[socket.socket, ServerContext]:
    """An MTA connection that has negotiated and waits: a session in flight."""
    sock = socket.socket(socket.AF_UNIX)
    sock.settimeout(WAIT)
    sock.connect(str(path))
    server = ServerContext(sock.sendall)
    server.run([CLEAN])
    server.receive(sock.recv(65536))  # the negotiate reply; CONNECT is sent
    assert server.result.negotiation is not None
    return sock, server


def test_sigterm_lets_the_session_in_flight_finish(tmp: Path) -> None:
    path = tmp / "drain.sock"
    with Example([f"unix:{path}"]) as example:
        example.listening_spec()
        sock, server = _start_session(path)
        with sock:
            example.wait_for(r"connection-established \[1\]", stream="stderr")
            example.signal(signal.SIGTERM)
            example.wait_for(r"^stopping: letting 1 session\(s\) finish$")
            example.wait_for(r"waiting up to 10 s for 1 session\(s\) in flight", stream="stderr")
            # No longer accepting: the socket file is gone, the process still runs.
            assert not path.exists() and example.process.poll() is None
            while not server.finished:
                data = sock.recv(65536)
                if not data:
                    server.connection_lost()
                    break
                server.receive(data)
        assert server.result.ok, server.result.error
        _check_clean(server.result, example.process.pid)
        assert example.wait() == 0
        assert "stopped: 1 connection(s), 1 message(s) passed" in example.stdout


def test_a_second_signal_closes_the_open_sessions(tmp: Path) -> None:
    path = tmp / "abort.sock"
    with Example([f"unix:{path}"]) as example:
        example.listening_spec()
        sock, _ = _start_session(path)
        with sock:
            example.wait_for(r"connection-established \[1\]", stream="stderr")
            example.signal(signal.SIGTERM)
            example.wait_for(r"waiting up to 10 s for 1 session\(s\) in flight", stream="stderr")
            example.signal(signal.SIGTERM)
            example.wait_for(r"^SIGTERM again: closing the open sessions now$")
            # The milter closes the connection instead of answering the rest of the session.
            data = sock.recv(65536)
            while data:
                data = sock.recv(65536)
        assert example.wait() == 0
        assert "stopped: 1 connection(s), 0 message(s) passed" in example.stdout
        assert "embedded_server: connection-finished [1]" in example.stderr
