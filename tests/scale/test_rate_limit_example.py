"""examples/rate_limit.py: the counters in a real Redis shared by two instances, and its own
metrics endpoint when it runs as a program."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from pathlib import Path

from postfix import free_port
from scalelib import (
    RedisServer,
    http_get,
    need_scale_tools,
    one_message,
    scrape,
    taken_port,
    wait_for,
)

from milterkit.protocol.replies import Continue, ReplyText

ROOT = Path(__file__).resolve().parents[2]


async def mail_from(spec: str, address: str) -> bool:
    """One MAIL FROM from SMTP client ``address``: whether it passed."""
    answer = (await one_message(spec, address)).steps["envelope-from"].final
    assert isinstance(answer, (Continue, ReplyText)), answer
    return isinstance(answer, Continue)


def start(env: dict[str, str]) -> tuple[subprocess.Popen[bytes], str, int]:
    milter, metrics = free_port(), free_port()
    spec = f"inet:{milter}@127.0.0.1"
    process = subprocess.Popen(
        [sys.executable, str(ROOT / "examples" / "rate_limit.py")], cwd=ROOT,
        env={**os.environ, **env, "RATE_LIMIT_LISTEN": spec,
             "RATE_LIMIT_METRICS": f"127.0.0.1:{metrics}"},
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )

    def ready() -> bool:
        try:
            return http_get(f"http://127.0.0.1:{metrics}/health", timeout=2)[0] == 200
        except OSError:
            assert process.poll() is None, "rate_limit.py exited"
            return False
    wait_for(ready, "rate_limit.py to serve")
    return process, spec, metrics


def test_two_instances_count_against_one_limit(redis_server: RedisServer) -> None:
    need_scale_tools()
    env = {"RATE_LIMIT_STORE": redis_server.url, "RATE_LIMIT": "3", "RATE_WINDOW": "600"}
    first, spec_a, metrics_a = start(env)
    second, spec_b, metrics_b = start(env)
    try:
        async def scenario() -> list[bool]:
            specs = [spec_a, spec_b, spec_a, spec_b, spec_a]
            return [await mail_from(spec, "192.0.2.50") for spec in specs]
        # Three messages in the window, wherever they went; the fourth and fifth wait.
        assert asyncio.run(scenario()) == [True, True, True, False, False]
        assert asyncio.run(mail_from(spec_b, "192.0.2.51"))  # another client: its own count
        deferred = sum(
            scrape(f"http://127.0.0.1:{port}/metrics").get(
                ("milterkit_verdicts_total",
                 (("stage", "envelope-from"), ("status", "temporary-failure"))), 0.0)
            for port in (metrics_a, metrics_b))
        assert deferred == 2
    finally:
        for process in (first, second):
            process.terminate()
            process.wait(30)


def test_a_metrics_address_in_use_stops_the_program() -> None:
    with taken_port() as port:
        done = subprocess.run([sys.executable, str(ROOT / "examples" / "rate_limit.py")],
                              cwd=ROOT, capture_output=True, text=True, timeout=60,
                              env={**os.environ, "RATE_LIMIT_METRICS": f"127.0.0.1:{port}",
                                   "RATE_LIMIT_LISTEN": f"inet:{free_port()}@127.0.0.1"})
    assert done.returncode == 1
    assert f"rate_limit: metrics endpoint 127.0.0.1:{port}" in done.stderr
