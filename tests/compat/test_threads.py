"""A blocking callback in one connection does not delay another connection's replies."""

from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path

import pytest
from compatproc import COMPAT_FILTERS, CompatProcess, PlainProcess

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


#: libmilter's order for two messages: no ``abort`` after an answered end-of-message (its state
#: table has no ENDM -> ABRT transition, so Postfix's ABORT there is ignored). The real pymilter
#: gives exactly this; see the differential test below.
LIBMILTER_ORDER = ["negotiate", "connect", "hello", "envfrom", "envrcpt", "header", "header",
                   "eoh", "body", "eom", "envfrom", "envrcpt", "eoh", "body", "eom", "close"]


def _callbacks(process: CompatProcess, spec: str, log: Path) -> list[str]:
    """Run two messages through ``process`` and return the ``name:thread`` lines it logged."""
    from milterkit.testing import run_session

    with process as proc:
        run_session(spec, [Message.build(headers=[("A", "1"), ("B", "2")], body=b"x\r\n"),
                           Message.build(body=b"y\r\n")])
        proc.stop()
    return log.read_text().split()


def test_one_connections_callbacks_run_in_order_on_one_thread(tmp_path: Path) -> None:
    spec = f"unix:{tmp_path}/order.sock"
    log = tmp_path / "order.log"
    lines = _callbacks(
        CompatProcess([str(COMPAT_FILTERS / "ordered.py"), spec, str(log)], spec), spec, log)
    assert [line.split(":")[0] for line in lines] == LIBMILTER_ORDER
    threads = {line.split(":")[1] for line in lines}
    assert len(threads) == 1, f"one connection's callbacks ran on threads {threads}"


def test_the_callback_order_is_the_real_pymilters(tmp_path: Path) -> None:
    python = os.environ.get("MILTERKIT_PYMILTER_PYTHON")
    if not python:
        pytest.skip("MILTERKIT_PYMILTER_PYTHON is not set (a venv with the real pymilter)")
    spec = f"unix:{tmp_path}/real.sock"
    log = tmp_path / "real.log"
    lines = _callbacks(
        PlainProcess([python, str(COMPAT_FILTERS / "ordered.py"), spec, str(log)], spec),
        spec, log)
    assert [line.split(":")[0] for line in lines] == LIBMILTER_ORDER
