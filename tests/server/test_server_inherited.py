"""Sockets a server inherits instead of binding: systemd's (``LISTEN_FDS``) following
``sd_listen_fds(3)``, the ``fd:N`` spec, and what happens when an inherited descriptor is not a
usable listening socket."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import tempfile

import pytest
from runner import ROOT, RunningServer
from serverlib import run, session, short_tmpdir

from milterkit.protocol.replies import AddHeader
from milterkit.server.listen import systemd_listeners

# Puts the descriptor given as argv[1] at fd 3, sets LISTEN_PID/LISTEN_FDS for the process it
# becomes, then execs the rest of argv: what systemd does before starting a service.
ACTIVATE = (
    "import os, sys; fd = int(sys.argv[1]); os.dup2(fd, 3); os.close(fd); "
    "os.environ['LISTEN_PID'] = str(os.getpid()); os.environ['LISTEN_FDS'] = '1'; "
    "os.execv(sys.executable, [sys.executable, *sys.argv[2:]])"
)


def _run_activated(fd: int) -> subprocess.CompletedProcess[str]:
    """``milterkit run`` socket-activated with ``fd`` as its fd 3."""
    command = [sys.executable, "-c", ACTIVATE, str(fd), "-m", "milterkit", "run",
               "examples/add_header.py", "-l", "unix:/nonexistent-dir/x.sock"]
    return subprocess.run(command, capture_output=True, text=True, cwd=ROOT, pass_fds=[fd],
                          timeout=30)


@pytest.mark.parametrize(
    "env",
    [
        {"LISTEN_FDS": "1"},
        {"LISTEN_PID": "1"},
        {"LISTEN_FDNAMES": "milter"},
        {"LISTEN_PID": "x", "LISTEN_FDS": "1", "LISTEN_FDNAMES": "milter"},
    ],
)
def test_the_variables_are_unset_whenever_they_were_looked_at(env: dict[str, str]) -> None:
    # sd_listen_fds(unset_environment=1) unsets them on every path, not only a complete one.
    assert systemd_listeners(env) == []
    assert env == {}


def test_unset_false_leaves_the_variables() -> None:
    env = {"LISTEN_FDS": "1"}
    assert systemd_listeners(env, unset=False) == []
    assert env == {"LISTEN_FDS": "1"}


def test_a_pipe_passed_as_fd_3_is_a_clear_error() -> None:
    read_end, write_end = os.pipe()
    try:
        result = _run_activated(read_end)
    finally:
        os.close(read_end)
        os.close(write_end)
    assert result.returncode == 1, result.stderr
    assert "fd 3 passed by systemd is not a socket but a pipe" in result.stderr
    assert "Traceback" not in result.stderr


def test_a_regular_file_passed_as_fd_3_is_a_clear_error() -> None:
    with tempfile.TemporaryFile() as file:
        result = _run_activated(file.fileno())
    assert result.returncode == 1, result.stderr
    assert "fd 3 passed by systemd is not a socket but a regular file" in result.stderr
    assert "Traceback" not in result.stderr


def test_a_connected_socket_passed_as_fd_3_is_a_clear_error() -> None:
    # systemd's Accept=yes passes a connection, not a listener: accept() on it could never work.
    ours, theirs = socket.socketpair()
    try:
        result = _run_activated(theirs.fileno())
    finally:
        ours.close()
        theirs.close()
    assert result.returncode == 1, result.stderr
    assert "fd 3 passed by systemd is a socket nobody called listen() on" in result.stderr
    assert "Traceback" not in result.stderr


# Puts the descriptor given as argv[1] at fd 5 (as a parent that set up its milter's socket
# would), then execs the rest of argv.
AT_FD_5 = (
    "import os, sys; fd = int(sys.argv[1]); "
    "fd != 5 and (os.dup2(fd, 5), os.close(fd)); "
    "os.execv(sys.executable, [sys.executable, *sys.argv[2:]])"
)


def test_fd_spec_serves_an_inherited_listening_socket() -> None:
    with short_tmpdir() as tmp:
        path = f"{tmp}/inherited.sock"
        sock = socket.socket(socket.AF_UNIX)
        sock.bind(path)
        sock.listen(16)
        try:
            prefix = [sys.executable, "-c", AT_FD_5, str(sock.fileno())]
            args = ["examples/add_header.py", "-l", "fd:5"]
            with RunningServer(args, prefix=prefix, pass_fds=[sock.fileno()]) as server:
                server.wait_for(rf"listening on fd:5 \(unix:{path}\)")
                (outcome,) = run(session(f"unix:{path}"))
                assert outcome.modifications == [AddHeader("X-Milterkit", "yes")]
                assert server.stop() == 0
            assert os.path.exists(path)  # whoever made the socket file owns it
        finally:
            sock.close()


def test_fd_spec_over_tcp_with_workers() -> None:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(16)
    port = sock.getsockname()[1]
    try:
        prefix = [sys.executable, "-c", AT_FD_5, str(sock.fileno())]
        args = ["examples/add_header.py", "-l", "fd:5", "--workers", "2"]
        with RunningServer(args, prefix=prefix, pass_fds=[sock.fileno()]) as server:
            server.wait_for(rf"listening on fd:5 \(inet:{port}@\[127.0.0.1\]\)")
            outcomes = run(session(f"inet:{port}@127.0.0.1", messages=2))
            assert [o.modifications for o in outcomes] == [[AddHeader("X-Milterkit", "yes")]] * 2
            assert server.stop() == 0
    finally:
        sock.close()


def _run_fd_5(fd: int) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-c", AT_FD_5, str(fd), "-m", "milterkit", "run",
               "examples/add_header.py", "-l", "fd:5"]
    return subprocess.run(command, capture_output=True, text=True, cwd=ROOT, pass_fds=[fd],
                          timeout=30)


def test_fd_spec_that_is_not_a_listening_socket_is_a_clear_error() -> None:
    read_end, write_end = os.pipe()
    try:
        result = _run_fd_5(read_end)
    finally:
        os.close(read_end)
        os.close(write_end)
    assert result.returncode == 1, result.stderr
    assert "fd:5: fd 5 is not a socket but a pipe" in result.stderr
    assert "Traceback" not in result.stderr

    unbound = socket.socket()  # a socket, but listen() was never called
    try:
        result = _run_fd_5(unbound.fileno())
    finally:
        unbound.close()
    assert result.returncode == 1, result.stderr
    assert "fd:5: fd 5 is a socket nobody called listen() on" in result.stderr


def test_fd_spec_that_is_not_open_is_a_clear_error() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "milterkit", "run", "examples/add_header.py", "-l", "fd:57"],
        capture_output=True, text=True, cwd=ROOT, timeout=30,
    )
    assert result.returncode == 1, result.stderr
    assert "fd:57: fd 57 is not an open file descriptor" in result.stderr
    assert "Traceback" not in result.stderr


def test_run_help_documents_the_fd_spec() -> None:
    result = subprocess.run([sys.executable, "-m", "milterkit", "run", "--help"],
                            capture_output=True, text=True, cwd=ROOT, timeout=30)
    assert "fd:N" in result.stdout
