"""``milterkit run`` as a real process: loading targets, SIGTERM draining, pre-forked workers
restarted after a kill, and systemd socket activation (LISTEN_FDS)."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import pytest
from runner import ROOT, RunningServer
from serverlib import MTA, MTAError, run, session, short_tmpdir

from milterkit.protocol.replies import AddHeader, Continue
from milterkit.server.listen import systemd_listeners

PID_FILTER = textwrap.dedent('''
    import asyncio, os

    DELAY = float(os.environ.get("MK_TEST_DELAY", "0"))

    def setup(client):
        async def stamp(context, chunk):
            if DELAY:
                print("stamp: sleeping", flush=True)
                await asyncio.sleep(DELAY)
            context.add_header("X-Pid", str(os.getpid()))
        client.connect("end-of-message", stamp)
''')


def _milterkit(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "milterkit", *args], capture_output=True, text=True, cwd=ROOT,
        timeout=30,
    )


def _pid_of(outcome_header: object) -> int:
    assert isinstance(outcome_header, AddHeader) and outcome_header.name == "X-Pid"
    return int(outcome_header.value)


def test_version_and_help() -> None:
    result = _milterkit("--version")
    assert result.returncode == 0 and result.stdout.startswith("milterkit ")
    result = _milterkit("run", "--help")
    assert result.returncode == 0
    for option in ("--listen", "--workers", "--timeout", "--exception-policy", "--socket-mode",
                   "--socket-group", "--log-level", "--loop", "--max-connections"):
        assert option in result.stdout
    assert "run" in _milterkit("--help").stdout


def test_bad_target_and_spec_are_clear_errors() -> None:
    result = _milterkit("run", "no/such/filter.py")
    assert result.returncode == 2 and "no such file: no/such/filter.py" in result.stderr
    result = _milterkit("run", "examples/add_header.py:nothing")
    assert result.returncode == 2 and "defines no nothing(client)" in result.stderr
    result = _milterkit("run", "examples/add_header.py", "-l", "tcp:25")
    assert result.returncode == 2 and "protocol must be" in result.stderr
    # A host that does not resolve is found only when binding: still one clear line.
    result = _milterkit("run", "examples/add_header.py", "-l", "inet:0@no-such-host.invalid")
    assert result.returncode == 1 and "cannot resolve host 'no-such-host.invalid'" in result.stderr
    assert "Traceback" not in result.stderr


def test_run_a_file_then_sigterm() -> None:
    with short_tmpdir() as tmp:
        path = f"{tmp}/m.sock"
        with RunningServer(["examples/add_header.py", "-l", f"unix:{path}",
                            "--socket-mode", "0600", "--loop", "asyncio"]) as server:
            server.wait_for("listening on unix:")
            assert os.stat(path).st_mode & 0o777 == 0o600
            (outcome,) = run(session(f"unix:{path}"))
            assert outcome.modifications == [AddHeader("X-Milterkit", "yes")]
            assert server.stop() == 0
            assert not os.path.exists(path)
            assert "session ended (finished): 1 message (continue 1)" in server.log


def test_run_a_module_over_tcp() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    env = dict(os.environ, PYTHONPATH=str(ROOT / "examples"))
    with RunningServer(["two_handlers", "-l", f"inet:{port}@[127.0.0.1]"], env=env) as server:
        server.wait_for("listening on inet:")
        (outcome,) = run(session(f"inet:{port}@[127.0.0.1]", body=b"abc"))
        assert outcome.modifications == [
            AddHeader("X-Body-Size", "3"), AddHeader("X-Recipients", "1"),
        ]
        assert server.stop(signal.SIGINT) == 0


def test_sigterm_drains_a_session_in_flight() -> None:
    with short_tmpdir() as tmp:
        (tmp / "pidfilter.py").write_text(PID_FILTER)
        path = f"{tmp}/m.sock"
        env = dict(os.environ, MK_TEST_DELAY="0.8")
        with RunningServer([f"{tmp}/pidfilter.py", "-l", path], env=env) as server:
            server.wait_for("listening on")

            async def scenario() -> None:
                mta = await MTA.open(path)
                await mta.negotiate()
                await mta.connect()
                await mta.helo()
                message = asyncio.ensure_future(mta.message())
                await asyncio.sleep(0.3)  # the end-of-message handler is sleeping now
                server.process.send_signal(signal.SIGTERM)
                await asyncio.sleep(0.2)
                assert server.process.poll() is None  # still draining
                outcome = await message
                assert _pid_of(outcome.modifications[0]) == server.process.pid
                mta.send_nowait(b"\x00\x00\x00\x01Q")
                assert await mta.at_eof()
                await mta.close()

            run(scenario())
            assert server.process.wait(10) == 0
            assert "shutting down: waiting up to 30 s for 1 session(s) in flight" in server.log
            assert not os.path.exists(path)


def test_killed_worker_is_restarted_and_serves() -> None:
    with short_tmpdir() as tmp:
        (tmp / "pidfilter.py").write_text(PID_FILTER)
        path = f"{tmp}/m.sock"
        with RunningServer([f"{tmp}/pidfilter.py", "-l", path, "--workers", "2"]) as server:
            first = int(server.wait_for(r"worker 1 started \(pid (\d+)\)").group(1))
            second = int(server.wait_for(r"worker 2 started \(pid (\d+)\)").group(1))
            server.wait_for(r"listening on.*\n(.|\n)*listening on")  # both workers accept

            async def serving_pids(count: int) -> set[int]:
                results = await asyncio.gather(
                    *(session(f"unix:{path}") for _ in range(count))
                )
                return {_pid_of(outcomes[0].modifications[0]) for outcomes in results}

            assert run(serving_pids(20)) <= {first, second}
            old = {first, second}
            mark = len(server.log)
            os.kill(first, signal.SIGKILL)
            server.wait_for(rf"worker 1 \(pid {first}\) died \(killed by SIGKILL\)", after=mark)
            first_new = int(server.wait_for(r"worker 1 started \(pid (\d+)\)", after=mark).group(1))
            mark = len(server.log)
            os.kill(second, signal.SIGKILL)
            second_new = int(server.wait_for(r"worker 2 started \(pid (\d+)\)",
                                             after=mark).group(1))
            new = {first_new, second_new}
            assert not new & old
            pids = run(serving_pids(20))
            assert pids and pids <= new  # only the replacements serve, and they do
            assert server.stop() == 0
            assert "master: all workers exited" in server.log
            assert not os.path.exists(path)
            for pid in (*old, *new):
                assert not Path(f"/proc/{pid}").exists() or _is_zombie_free(pid)


def _is_zombie_free(pid: int) -> bool:
    try:
        return "State:\tZ" not in Path(f"/proc/{pid}/status").read_text()
    except FileNotFoundError:
        return True


def test_workers_drain_on_sigterm() -> None:
    with short_tmpdir() as tmp:
        (tmp / "pidfilter.py").write_text(PID_FILTER)
        path = f"{tmp}/m.sock"
        env = dict(os.environ, MK_TEST_DELAY="0.6")
        with RunningServer([f"{tmp}/pidfilter.py", "-l", path, "-w", "2"], env=env) as server:
            server.wait_for(r"listening on.*\n(.|\n)*listening on")

            async def scenario() -> None:
                mta = await MTA.open(path)
                await mta.negotiate()
                await mta.connect()
                await mta.helo()
                message = asyncio.ensure_future(mta.message())
                await asyncio.sleep(0.2)
                server.process.send_signal(signal.SIGTERM)
                outcome = await message
                assert outcome.verdict == Continue()
                mta.send_nowait(b"\x00\x00\x00\x01Q")
                assert await mta.at_eof()
                await mta.close()

            run(scenario())
            assert server.process.wait(15) == 0
            assert "master: SIGTERM received, draining 2 workers" in server.log


WRAPPER = (
    "import os, sys; fd = int(sys.argv[1]); os.dup2(fd, 3); os.close(fd); "
    "os.environ['LISTEN_PID'] = str(os.getpid()); os.environ['LISTEN_FDS'] = '1'; "
    "os.execv(sys.executable, [sys.executable, *sys.argv[2:]])"
)


def test_systemd_socket_activation_listen_fds() -> None:
    with short_tmpdir() as tmp:
        path = f"{tmp}/activated.sock"
        sock = socket.socket(socket.AF_UNIX)
        sock.bind(path)
        sock.listen(16)  # systemd binds and listens; the service only accepts
        try:
            prefix = [sys.executable, "-c", WRAPPER, str(sock.fileno())]
            # The -l spec points nowhere usable: only the passed socket can make this work.
            args = ["examples/add_header.py", "-l", "unix:/nonexistent-dir/x.sock"]
            with RunningServer(args, prefix=prefix, pass_fds=[sock.fileno()]) as server:
                server.wait_for(r"using 1 socket\(s\) passed by systemd")
                server.wait_for(rf"listening on fd:3 \(unix:{path}\)")
                (outcome,) = run(session(f"unix:{path}"))
                assert outcome.modifications == [AddHeader("X-Milterkit", "yes")]
                assert server.stop() == 0
            assert os.path.exists(path)  # systemd's socket: not ours to remove
        finally:
            sock.close()


def test_systemd_listeners_checks_the_pid() -> None:
    env = {"LISTEN_PID": str(os.getpid() + 1), "LISTEN_FDS": "1"}
    assert systemd_listeners(env) == []
    assert env == {}  # unset, so children do not take the sockets for theirs
    assert systemd_listeners({}) == []


async def _message_in_flight(server: RunningServer, path: str) -> tuple[MTA, asyncio.Future[Any]]:
    """A session whose end-of-message handler is sleeping now (PID_FILTER with a delay)."""
    mta = await MTA.open(path)
    await mta.negotiate()
    await mta.connect()
    await mta.helo()
    message = asyncio.ensure_future(mta.message())
    await asyncio.to_thread(server.wait_for, "stamp: sleeping")
    return mta, message


@pytest.mark.parametrize("workers", ["1", "2"])
def test_second_sigterm_closes_sessions_at_once(workers: str) -> None:
    with short_tmpdir() as tmp:
        (tmp / "pidfilter.py").write_text(PID_FILTER)
        path = f"{tmp}/m.sock"
        env = dict(os.environ, MK_TEST_DELAY="120")  # far longer than the test may take
        with RunningServer([f"{tmp}/pidfilter.py", "-l", path, "-w", workers],
                           env=env) as server:
            server.wait_for("listening on")

            async def scenario() -> None:
                mta, message = await _message_in_flight(server, path)
                mark = len(server.log)
                server.process.send_signal(signal.SIGTERM)
                await asyncio.to_thread(server.wait_for, "shutting down: waiting", 15.0, mark)
                server.process.send_signal(signal.SIGTERM)
                with pytest.raises(MTAError):
                    await message  # closed under it, not answered
                await mta.close()

            run(scenario())
            assert server.process.wait(15) == 0
            assert "shutting down now: closing 1 session(s)" in server.log


def test_a_signal_to_the_whole_group_drains_workers_once() -> None:
    # Ctrl-C in a terminal, or systemd's default KillMode=control-group, signal the master and
    # every worker: the workers must drain, not take the master's request for a second signal.
    with short_tmpdir() as tmp:
        (tmp / "pidfilter.py").write_text(PID_FILTER)
        path = f"{tmp}/m.sock"
        env = dict(os.environ, MK_TEST_DELAY="0.8")
        with RunningServer([f"{tmp}/pidfilter.py", "-l", path, "-w", "2"], env=env,
                           new_session=True) as server:
            server.wait_for(r"listening on.*\n(.|\n)*listening on")

            async def scenario() -> None:
                mta, message = await _message_in_flight(server, path)
                os.killpg(server.process.pid, signal.SIGINT)
                outcome = await message
                assert outcome.verdict == Continue()
                assert _pid_of(outcome.modifications[0]) != server.process.pid
                mta.send_nowait(b"\x00\x00\x00\x01Q")
                assert await mta.at_eof()
                await mta.close()

            run(scenario())
            assert server.process.wait(15) == 0
            assert "shutting down now" not in server.log


def _gone(pid: int) -> bool:
    """True once ``pid`` has exited (reaped, or a zombie left to an init that does not reap)."""
    try:
        return "State:\tZ" in Path(f"/proc/{pid}/status").read_text()
    except FileNotFoundError:
        return True


def test_workers_exit_when_the_master_dies() -> None:
    with short_tmpdir() as tmp:
        path = f"{tmp}/m.sock"
        with RunningServer(["examples/add_header.py", "-l", path, "-w", "2"]) as server:
            pids = [int(server.wait_for(rf"worker {n} started \(pid (\d+)\)").group(1))
                    for n in (1, 2)]
            server.wait_for(r"listening on.*\n(.|\n)*listening on")
            server.process.kill()  # SIGKILL: no chance to tell the workers
            server.process.wait(10)
            for pid in pids:
                server.wait_for(rf"\[{pid}\]: worker \d: the master is gone", outlives=True)
            deadline = time.monotonic() + 10
            while not all(_gone(pid) for pid in pids):
                assert time.monotonic() < deadline, "workers outlived their master"
                time.sleep(0.02)


CRASHING_FILTER = textwrap.dedent('''
    import os

    def setup(client):
        def crash(client, address):
            if client.worker_id:
                os._exit(3)  # every worker dies as soon as it listens
        client.connect("listen-started", crash)
''')


def test_a_worker_that_dies_at_once_is_restarted_with_growing_delays() -> None:
    with short_tmpdir() as tmp:
        (tmp / "crash.py").write_text(CRASHING_FILTER)
        with RunningServer([f"{tmp}/crash.py", "-l", f"{tmp}/m.sock", "-w", "2"]) as server:
            server.wait_for(r"worker 1 \(pid \d+\) died .* restarting in 0\.8 s")
            assert server.stop() == 0
            delays = re.findall(
                r"worker 1 \(pid \d+\) died \(exit code 3\) after [\d.]+ s; "
                r"restarting in ([\d.]+) s",
                server.log,
            )
            assert delays[:3] == ["0.2", "0.4", "0.8"]  # a backoff, not a fork loop
            assert not os.path.exists(f"{tmp}/m.sock")
