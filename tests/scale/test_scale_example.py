"""``examples/scale-out/run.sh`` as its README says: three instances and HAProxy, one milter
address; the first message of a triplet is deferred, its retry passes whichever instance
HAProxy picks, and SIGTERM stops everything."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

from postfix import free_port
from scalelib import (
    SCALE_OUT,
    HAProxy,
    RedisServer,
    http_get,
    need_scale_tools,
    one_message,
    wait_for,
)

from milterkit.protocol.replies import AddHeader, Continue, ReplyText

ROOT = Path(__file__).resolve().parents[2]


def _health(port: int) -> int | None:
    try:
        return http_get(f"http://127.0.0.1:{port}/health", timeout=2)[0]
    except OSError:
        return None


def _alive(pid: int) -> bool:
    try:
        os.killpg(pid, 0)
    except ProcessLookupError:
        return False
    return True


def test_run_sh_serves_one_address_for_three_instances(redis_server: RedisServer) -> None:
    need_scale_tools()
    workdir = Path(tempfile.mkdtemp(prefix="milterkit-run-sh-"))
    frontend = free_port()
    milters = [free_port() for _ in range(3)]
    health = [free_port() for _ in range(3)]
    env = {**os.environ, "GREYLIST_STORE": redis_server.url, "GREYLIST_DELAY": "0",
           "MILTER_FRONTEND": f"127.0.0.1:{frontend}", "HAPROXY_SOCKET": str(workdir / "ha.sock"),
           "MILTERKIT": f"{sys.executable} -m milterkit"}
    for n in range(3):
        env[f"MILTER_{n + 1}"] = f"127.0.0.1:{milters[n]}"
        env[f"HEALTH_{n + 1}"] = str(health[n])
    log = open(workdir / "run.log", "wb")
    process = subprocess.Popen(["bash", str(SCALE_OUT / "run.sh")], env=env, cwd=ROOT,
                               stdout=log, stderr=log, start_new_session=True)
    try:
        wait_for(lambda: all(_health(port) == 200 for port in health), "three healthy instances")
        haproxy = HAProxy([(f"127.0.0.1:{p}", h) for p, h in zip(milters, health, strict=True)])
        haproxy.socket = workdir / "ha.sock"  # the one run.sh's HAProxy serves
        haproxy.wait_states({"m1": "UP", "m2": "UP", "m3": "UP"})

        async def attempt() -> tuple[bool, list[object]]:
            outcome = await one_message(f"inet:{frontend}@127.0.0.1", "203.0.113.9",
                                        sender="<run-sh@example.net>",
                                        recipients=["<rcpt@example.org>"])
            answer = outcome.recipients["<rcpt@example.org>"].final
            assert isinstance(answer, (Continue, ReplyText)), answer
            return isinstance(answer, Continue), list(outcome.modifications)

        first, _ = asyncio.run(attempt())
        assert not first  # a new triplet: 451
        for _ in range(3):  # the retries pass, on whichever instance
            passed, modifications = asyncio.run(attempt())
            assert passed
            assert [type(m) for m in modifications] == [AddHeader]
        haproxy_pid = process.pid
        process.send_signal(signal.SIGTERM)
        assert process.wait(60) is not None
        wait_for(lambda: not _alive(haproxy_pid), "run.sh's processes to exit", timeout=60)
        assert all(_health(port) is None for port in health)
    finally:
        if process.poll() is None or _alive(process.pid):
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(10)
        log.close()
        print((workdir / "run.log").read_text(errors="replace")[-3000:])
