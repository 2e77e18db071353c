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
    quick = Message.build(sender="quick@example.com")

    async def trial() -> tuple[float, float]:
        """(delay of a session beside a sleeping one, time the sleeping session took)."""
        idle_start = time.perf_counter()
        await run_session_async(spec, quick)
        idle = time.perf_counter() - idle_start
        start = time.perf_counter()
        slow = asyncio.ensure_future(run_session_async(
            spec, Message.build(sender="sleep@example.com")))
        await asyncio.sleep(0.2)  # the slow connection is inside its time.sleep(2) now
        fast_start = time.perf_counter()
        await run_session_async(spec, quick)
        fast = time.perf_counter() - fast_start
        await slow
        return fast - idle, time.perf_counter() - start

    with CompatProcess([str(COMPAT_FILTERS / "sleepy.py"), spec], spec):
        results = [asyncio.run(trial()) for _ in range(3)]
    delays = [delay for delay, _ in results]
    assert all(slow >= 2.0 for _, slow in results), "the sleeping callback did not run"
    # A stall would cost ~1.8 s in every trial; the best of three filters out load noise.
    assert max(delays) < 1.0, f"a sleeping connection stalled another: {delays}"
    assert min(delays) < 0.05, f"a sleeping connection delayed another by {delays} s"


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
