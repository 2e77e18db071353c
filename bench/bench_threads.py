"""What the thread pool costs and what it buys: ``milterkit run`` with and without ``--threads``,
for a handler that does not block and for one that blocks 20 ms (a synchronous DNS lookup).

A benchmark, not a test: nothing here asserts a speed. The server is a subprocess on a unix
socket serving bench/threads_filter.py; the driver (bench/load.py's) runs C concurrent MTA
connections of M messages each and prints messages per second and p50/p99 latency::

    python bench/bench_threads.py                   # 20 connections x 10 messages
    python bench/bench_threads.py -c 50 -m 20 --threads 32 --block 0.05

The driver is Python too and shares the cores with the server: the figures are a floor.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from load import Result
from load import bench as load_bench

TARGET = "bench/threads_filter.py"


def bench(block: float, threads: int | None, connections: int, messages: int) -> Result:
    """Serve the filter blocking ``block`` seconds, with ``--threads threads`` or without."""
    return load_bench(TARGET, "unix", 1, connections, messages, "asyncio", warmup=1,
                      extra=["--threads", str(threads)] if threads else [],
                      env=dict(os.environ, BENCH_BLOCK_SECONDS=str(block)))


def main(argv: list[str] | None = None) -> int:
    """Run the four combinations and print a table."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("-c", "--connections", type=int, default=20)
    parser.add_argument("-m", "--messages", type=int, default=10)
    parser.add_argument("--threads", type=int, default=20,
                        help="pool size of the --threads runs (default 20)")
    parser.add_argument("--block", type=float, default=0.02,
                        help="seconds the blocking handler blocks (default 0.02)")
    args = parser.parse_args(argv)
    print(f"# {args.connections} connections x {args.messages} messages, asyncio loop, "
          f"python {sys.version.split()[0]}, {os.cpu_count()} cpus")
    print(f"{'handler':<16} {'threads':>7} {'messages':>9} {'msg/s':>10} "
          f"{'p50 ms':>8} {'p99 ms':>8} {'errors':>6}")
    for block in (0.0, args.block):
        for threads in (None, args.threads):
            result = bench(block, threads, args.connections, args.messages)
            label = f"blocks {block * 1000:g} ms" if block else "non-blocking"
            # Result.line() starts with transport and workers (13 columns): show ours instead.
            figures = result.line()[13:]
            print(f"{label:<16} {threads or '-':>7} {figures}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
