"""A blocking callback in one connection does not delay another connection's replies."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

from compatproc import COMPAT_FILTERS, CompatProcess

from milterkit.testing import Message
from milterkit.testing.sockets import run_session_async


def test_sleep_in_one_connection_delays_another_by_less_than_50ms(tmp_path: Path) -> None:
    spec = f"unix:{tmp_path}/sleepy.sock"
    with CompatProcess([str(COMPAT_FILTERS / "sleepy.py"), spec], spec):

        async def sessions() -> tuple[float, float, float]:
            start = time.perf_counter()
            slow = asyncio.ensure_future(run_session_async(
                spec, Message.build(sender="sleep@example.com")))
            await asyncio.sleep(0.2)  # the slow connection is inside its time.sleep(2) now
            fast_start = time.perf_counter()
            await run_session_async(spec, Message.build(sender="quick@example.com"))
            fast = time.perf_counter() - fast_start
            # A second fast session, to measure the idle cost of a session with no sleeper.
            await slow
            slow_time = time.perf_counter() - start
            idle_start = time.perf_counter()
            await run_session_async(spec, Message.build(sender="quick@example.com"))
            return fast, slow_time, time.perf_counter() - idle_start

        fast, slow_time, idle = asyncio.run(sessions())
    assert slow_time >= 2.0, "the sleeping callback did not run"
    assert fast - idle < 0.05, f"a sleeping connection delayed another by {fast - idle:.3f} s"


def test_one_connections_callbacks_run_in_order_on_one_thread(tmp_path: Path) -> None:
    spec = f"unix:{tmp_path}/order.sock"
    log = tmp_path / "order.log"
    filt = COMPAT_FILTERS / "ordered.py"
    with CompatProcess([str(filt), spec, str(log)], spec) as proc:
        from milterkit.testing import run_session

        run_session(spec, [Message.build(headers=[("A", "1"), ("B", "2")], body=b"x\r\n"),
                           Message.build(body=b"y\r\n")])
        proc.stop()
    lines = log.read_text().split()
    names = [line.split(":")[0] for line in lines]
    assert names == ["negotiate", "connect", "hello", "envfrom", "envrcpt", "header", "header",
                     "eoh", "body", "eom", "abort", "envfrom", "envrcpt", "eoh", "body", "eom",
                     "abort", "close"]
    threads = {line.split(":")[1] for line in lines}
    assert len(threads) == 1, f"one connection's callbacks ran on threads {threads}"
