"""A listener whose accept() fails keeps trying (with a bounded back-off) for as long as the
process runs: out of file descriptors (a real RLIMIT_NOFILE in a ``milterkit run`` process), or
a listening socket the kernel stopped listening on."""

from __future__ import annotations

import asyncio
import logging
import socket
import sys
import time

import pytest
from runner import RunningServer
from serverlib import MTA, run, serving, session

from milterkit.protocol.replies import AddHeader, Continue

# Lowers the limit on open files to argv[1], then execs the rest of argv.
LIMIT_FILES = (
    "import os, resource, sys; n = int(sys.argv[1]); "
    "resource.setrlimit(resource.RLIMIT_NOFILE, (n, n)); "
    "os.execv(sys.executable, [sys.executable, *sys.argv[2:]])"
)
LOOPS = ["asyncio"]
try:
    import uvloop  # noqa: F401

    LOOPS.append("uvloop")
except ImportError:
    pass


def test_a_listener_that_fails_is_retried_not_dropped(caplog: pytest.LogCaptureFixture) -> None:
    # shutdown() on a listening TCP socket makes the kernel stop listening: accept() fails with
    # EINVAL, an error no retry can cure by itself. When listen() is called again (here by the
    # test, in life by whoever repairs it), the same accept loop must serve again.
    async def scenario() -> None:
        async with serving("inet:0@127.0.0.1") as client:
            sock = client.listeners[0].sock
            sock.shutdown(socket.SHUT_RDWR)
            deadline = time.monotonic() + 5.0
            while not _errors(caplog):
                assert time.monotonic() < deadline, "the failing accept() was not logged"
                await asyncio.sleep(0.02)
            sock.listen()
            port = sock.getsockname()[1]  # a port-0 socket gets a new port when listening again
            assert (await session(f"inet:{port}@127.0.0.1"))[0].verdict == Continue()

    caplog.set_level(logging.INFO, "milterkit")
    run(scenario())
    (first, *_) = _errors(caplog)
    assert "Invalid argument" in first and "retrying" in first


def _errors(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records
            if r.name == "milterkit.server" and r.levelno >= logging.ERROR
            and "accept() on" in r.getMessage()]


@pytest.mark.parametrize("loop", LOOPS)
def test_out_of_file_descriptors_then_serving_again(loop: str) -> None:
    prefix = [sys.executable, "-c", LIMIT_FILES, "24"]
    args = ["examples/add_header.py", "-l", "inet:0@127.0.0.1", "--loop", loop]
    with RunningServer(args, prefix=prefix) as server:
        port = int(server.wait_for(r"listening on inet:(\d+)").group(1))

        async def scenario() -> None:
            held = []
            try:
                # More connections than the limit lets the server take: the rest wait in the
                # backlog, and accept() fails with EMFILE until descriptors are free again.
                for _ in range(30):
                    held.append(await asyncio.open_connection("127.0.0.1", port))
                await asyncio.to_thread(server.wait_for, r"Too many open files")
            finally:
                for _, writer in held:
                    writer.close()
            mta = await MTA.open(f"inet:{port}@127.0.0.1", timeout=10.0)
            try:
                (outcome,) = await mta.session()
                assert outcome.modifications == [AddHeader("X-Milterkit", "yes")]
            finally:
                await mta.close()

        run(scenario())
        assert server.stop() == 0
        assert "accepting again on" in server.log
