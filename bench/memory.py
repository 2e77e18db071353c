"""Memory of idle connections: RSS per connection after negotiation, and 10,000 idle
connections held by one ``milterkit run`` process while it goes on serving.

It starts ``milterkit run`` (one process), opens ``--connections`` MTA connections that each
negotiate (OPTNEG, as Postfix offers it) and then stay idle, and reads the server's RSS from
``/proc`` before and after: the difference divided by the count is the cost of one idle
connection (Python objects, the event loop's transport; the kernel's socket buffers are not in
RSS). While they are held it runs ``bench/peers/loadgen.py`` against the same process and prints
the rate next to the rate with no idle connection. Example::

    python bench/memory.py --connections 10000
    python bench/memory.py --connections 1000 --loop asyncio --transport tcp
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
LOADGEN = ROOT / "bench" / "peers" / "loadgen.py"
OPTNEG = b"\0\0\0\x0dO" + (6).to_bytes(4, "big") + (0x1FF).to_bytes(4, "big") + (
    0x1FFFFF).to_bytes(4, "big")


def rss(pid: int) -> int:
    """Resident set size of ``pid`` in bytes."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError("no VmRSS")


def _raise_fd_limit() -> None:
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


async def open_idle(spec: str, count: int, batch: int = 200) -> list[asyncio.StreamWriter]:
    """``count`` negotiated connections, kept open."""
    writers: list[asyncio.StreamWriter] = []

    async def one() -> asyncio.StreamWriter:
        if spec.startswith("unix:"):
            reader, writer = await asyncio.open_unix_connection(spec[5:])
        else:
            port, _, host = spec[5:].partition("@")
            reader, writer = await asyncio.open_connection(host.strip("[]"), int(port))
        writer.write(OPTNEG)
        size = int.from_bytes(await reader.readexactly(4), "big")
        reply = await reader.readexactly(size)
        if reply[:1] != b"O":
            raise RuntimeError(f"expected an O reply, got {reply[:1]!r}")
        return writer

    for start in range(0, count, batch):
        writers += await asyncio.gather(*(one() for _ in range(min(batch, count - start))))
    return writers


def serve_rate(spec: str, seconds: float) -> float:
    """Messages per second of bench/peers/loadgen.py at concurrency 10."""
    out = subprocess.run([sys.executable, str(LOADGEN), spec, "-c", "10", "--seconds",
                          str(seconds)], capture_output=True, text=True, check=True).stdout
    result = json.loads(out.strip().splitlines()[-1])
    if result["errors"]:
        raise RuntimeError(f"{result['errors']} messages failed while idle connections were held")
    return float(result["rate"])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("-n", "--connections", type=int, default=10000)
    parser.add_argument("--target", default=str(ROOT / "bench" / "load_filter.py"))
    parser.add_argument("--loop", choices=("auto", "uvloop", "asyncio"), default="auto")
    parser.add_argument("--transport", choices=("unix", "tcp"), default="unix")
    parser.add_argument("--seconds", type=float, default=2.0, help="length of each serving run")
    args = parser.parse_args(argv)
    _raise_fd_limit()
    if args.connections + 100 > resource.getrlimit(resource.RLIMIT_NOFILE)[0]:
        print(f"the open-file limit is below {args.connections + 100}", file=sys.stderr)
        return 2
    tmp = tempfile.mkdtemp(prefix="mk-mem-")
    if args.transport == "unix":
        spec = f"unix:{tmp}/m.sock"
    else:
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            spec = f"inet:{probe.getsockname()[1]}@127.0.0.1"
    server = subprocess.Popen(
        [sys.executable, "-m", "milterkit", "run", args.target, "-l", spec, "--loop", args.loop,
         "--log-level", "warning", "--backlog", "4096"],
        cwd=ROOT, preexec_fn=_raise_fd_limit)
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                asyncio.run(open_idle(spec, 1))
                break
            except OSError:
                if time.monotonic() > deadline or server.poll() is not None:
                    raise
                time.sleep(0.1)
        # Warm up: code paths, allocator arenas and caches, as a server that has run a while.
        idle_rate = serve_rate(spec, args.seconds)

        async def hold() -> tuple[int, int, float, int]:
            await asyncio.sleep(0.5)
            before = rss(server.pid)
            writers = await open_idle(spec, args.connections)
            await asyncio.sleep(1.0)  # let the server finish what it was doing
            after = rss(server.pid)
            loop = asyncio.get_running_loop()
            rate = await loop.run_in_executor(None, serve_rate, spec, args.seconds)
            still = sum(not w.is_closing() for w in writers)
            for writer in writers:
                writer.close()
            return before, after, rate, still

        before, after, busy_rate, still = asyncio.run(hold())
    finally:
        server.terminate()
        server.wait(30)
    per = (after - before) / args.connections
    print(f"# milterkit run {Path(args.target).name}, loop {args.loop}, {args.transport}, "
          f"Python {sys.version.split()[0]}, {os.cpu_count()} CPUs")
    print(f"server RSS: {before / 2**20:.1f} MiB before, {after / 2**20:.1f} MiB with "
          f"{args.connections:,} idle negotiated connections ({still:,} still open after "
          "serving)")
    print(f"RSS per idle connection: {per / 1024:.1f} KiB (goal <= 16 KiB: "
          f"{'met' if per <= 16 * 1024 else 'NOT met'})")
    print(f"serving at c=10 meanwhile: {busy_rate:,.0f} msg/s (with no idle connection: "
          f"{idle_rate:,.0f} msg/s, {busy_rate / idle_rate:.2f}x)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
