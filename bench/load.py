"""Load driver: C concurrent MTA connections of full messages against ``milterkit run``.

Runs in its own process and starts the server as a subprocess, over a unix socket and over TCP,
with ``--workers 1`` and ``--workers 2``; prints messages per second and the p50/p99 latency of
one message (MAIL to the end-of-message verdict). Example::

    python bench/load.py --connections 50 --messages 20
    python bench/load.py --target examples/async_lookup.py --transports unix --workers 2

The driver is Python too and shares the machine's cores with the server: the figures are a
floor for the server, not a ceiling.
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from milterkit.protocol.replies import Continue
from milterkit.testing.raw_mta import MTA

ROOT = Path(__file__).resolve().parents[1]
BODY = b"".join(b"Line %d of a modest message body, about eighty bytes long.....\r\n" % i
                for i in range(64))
HEADERS = (
    ("From", "Sender <sender@example.org>"), ("To", "rcpt@example.com"),
    ("Subject", "load test"), ("Message-ID", "<load@example.org>"),
    ("Date", "Thu, 1 Jan 2026 00:00:00 +0000"),
)


@dataclass
class Result:
    """One run's figures."""

    transport: str
    workers: int
    messages: int
    seconds: float
    latencies: list[float]
    errors: int

    def line(self) -> str:
        """A table row."""
        lat = sorted(self.latencies)
        p50 = statistics.median(lat) * 1000 if lat else float("nan")
        p99 = lat[min(len(lat) - 1, int(len(lat) * 0.99))] * 1000 if lat else float("nan")
        rate = self.messages / self.seconds if self.seconds else 0.0
        return (f"{self.transport:<5} {self.workers:>7} {self.messages:>9} {rate:>10.0f} "
                f"{p50:>8.2f} {p99:>8.2f} {self.errors:>6}")


HEADER = (f"{'via':<5} {'workers':>7} {'messages':>9} {'msg/s':>10} "
          f"{'p50 ms':>8} {'p99 ms':>8} {'errors':>6}")


async def _connection(spec: str, messages: int, latencies: list[float]) -> int:
    errors = 0
    mta = await MTA.open(spec, timeout=60.0)
    try:
        await mta.negotiate()
        await mta.connect()
        await mta.helo()
        clock = time.perf_counter
        for _ in range(messages):
            begun = clock()
            outcome = await mta.message(headers=HEADERS, body=BODY)
            latencies.append(clock() - begun)
            if not isinstance(outcome.verdict, Continue):
                errors += 1
        mta.send_nowait(b"\x00\x00\x00\x01Q")
        await mta.writer.drain()
    finally:
        await mta.close()
    return errors


async def _load(spec: str, connections: int, messages: int) -> tuple[float, list[float], int]:
    latencies: list[float] = []
    begun = time.perf_counter()
    results = await asyncio.gather(
        *(_connection(spec, messages, latencies) for _ in range(connections)),
        return_exceptions=True,
    )
    seconds = time.perf_counter() - begun
    errors = sum(r if isinstance(r, int) else messages for r in results)
    return seconds, latencies, errors


_DriverResult = tuple[float, float, list[float], int]


def _driver(spec: str, connections: int, messages: int, start_at: float) -> _DriverResult:
    # One driver process: waits for a common start time so the processes load the server
    # together, then reports wall-clock start and end for the aggregate rate.
    delay = start_at - time.time()
    if delay > 0:
        time.sleep(delay)
    begun = time.time()
    _, latencies, errors = asyncio.run(_load(spec, connections, messages))
    return begun, time.time(), latencies, errors



def _drive(
    spec: str, connections: int, messages: int, drivers: int
) -> tuple[float, list[float], int]:
    if drivers == 1:
        return asyncio.run(_load(spec, connections, messages))
    shares = [connections // drivers + (i < connections % drivers) for i in range(drivers)]
    start_at = time.time() + 0.5
    with ProcessPoolExecutor(drivers, mp_context=multiprocessing.get_context("fork")) as pool:
        results = list(pool.map(_driver, [spec] * drivers, shares, [messages] * drivers,
                                [start_at] * drivers))
    seconds = max(r[1] for r in results) - min(r[0] for r in results)
    return seconds, [lat for r in results for lat in r[2]], sum(r[3] for r in results)


def _wait_listening(spec: str, process: subprocess.Popen[bytes], timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"the server exited with {process.returncode}")
        try:
            if spec.startswith("unix:"):
                with socket.socket(socket.AF_UNIX) as probe:
                    probe.connect(spec[5:])
            else:
                port = int(spec.split(":")[1].split("@")[0])
                socket.create_connection(("127.0.0.1", port), 1).close()
            return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"the server did not listen on {spec} in time")


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def bench(
    target: str, transport: str, workers: int, connections: int, messages: int, loop: str,
    warmup: int, drivers: int = 1, extra: Sequence[str] = (),
    env: Mapping[str, str] | None = None,
) -> Result:
    """Start the server (``extra``: more ``milterkit run`` options; ``env``: its environment),
    warm it up, measure one load, stop it."""
    tmp = tempfile.mkdtemp(prefix="mk-bench-")
    spec = f"unix:{tmp}/m.sock" if transport == "unix" else f"inet:{_free_port()}@[127.0.0.1]"
    command = [sys.executable, "-m", "milterkit", "run", target, "-l", spec,
               "--workers", str(workers), "--log-level", "warning", "--loop", loop, *extra]
    process = subprocess.Popen(command, cwd=ROOT, env=env)
    try:
        _wait_listening(spec, process)
        if warmup:
            asyncio.run(_load(spec, min(connections, 10), warmup))
        seconds, latencies, errors = _drive(spec, connections, messages, drivers)
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        shutil.rmtree(tmp, ignore_errors=True)
    return Result(transport, workers, len(latencies), seconds, latencies, errors)


def main(argv: list[str] | None = None) -> int:
    """Parse the options, run every (transport, workers) combination, print a table."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--target", default="bench/load_filter.py",
                        help="the filter to serve (default bench/load_filter.py, which handles "
                        "every event)")
    parser.add_argument("-c", "--connections", type=int, default=50,
                        help="concurrent MTA connections (default 50)")
    parser.add_argument("-m", "--messages", type=int, default=20,
                        help="messages per connection (default 20)")
    parser.add_argument("--transports", nargs="+", choices=("unix", "tcp"),
                        default=["unix", "tcp"])
    parser.add_argument("--workers", nargs="+", type=int, default=[1, 2])
    parser.add_argument("--loop", choices=("auto", "asyncio", "uvloop"), default="auto",
                        help="the server's event loop (default auto)")
    parser.add_argument("--drivers", type=int, default=1,
                        help="driver processes sharing the connections (default 1)")
    parser.add_argument("--warmup", type=int, default=2,
                        help="messages per connection before measuring (default 2)")
    args = parser.parse_args(argv)
    print(f"# {args.connections} connections x {args.messages} messages, "
          f"{len(BODY)}-byte body, {len(HEADERS)} headers, target {args.target}, "
          f"loop {args.loop}, {args.drivers} driver process(es), "
          f"python {sys.version.split()[0]}, {os.cpu_count()} cpus")
    print(HEADER)
    for transport in args.transports:
        for workers in args.workers:
            result = bench(args.target, transport, workers, args.connections, args.messages,
                           args.loop, args.warmup, args.drivers)
            print(result.line(), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
