"""What each child milter costs the manager: messages per second through a milterkit
``Manager`` with 0, 1, 2 and 4 children, and straight to one child (no manager).

A benchmark, not a test: nothing here asserts a speed. Each child is its own ``milterkit run
bench/bench_manager_child.py`` process on a unix socket; it handles every event (so the manager
forwards every event to every child: 2 recipients, 8 headers, a 4 KiB body) and adds a header
at end-of-message. The manager runs in this process on a real socket (``Client`` +
``Manager``), driven by milterkit's MTA simulator (:mod:`milterkit.testing`) with
``--sessions`` SMTP connections of ``--messages`` messages each, ``--concurrency`` at a time.
The per-child cost is the growth of the time per message from one variant to the next,
divided by the children added; each variant runs ``--repeat`` times and the fastest run
counts (the machine is shared: the slower runs measure the neighbours).

Run::

    python bench/bench_manager.py                   # 20 sessions x 25 messages per variant
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import platform
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from milterkit import Client
from milterkit.manager import ChildSpec, Manager
from milterkit.testing import Message
from milterkit.testing.sockets import run_sessions_async

HERE = Path(__file__).resolve().parent
CHILD = HERE / "bench_manager_child.py"


def message() -> Message:
    return Message.build(
        sender="alice@example.net", recipients=["bob@example.org", "carol@example.org"],
        headers=[(f"X-Header-{n}", "value " * 5) for n in range(7)] + [("Subject", "bench")],
        body="x" * 76 + "\n" * 1 + ("y" * 76 + "\n") * 52)


def start_child(path: Path) -> subprocess.Popen[bytes]:
    process = subprocess.Popen(
        [sys.executable, "-m", "milterkit", "run", str(CHILD), "--listen", f"unix:{path}",
         "--log-level", "warning"], stdin=subprocess.DEVNULL)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        try:
            with socket.socket(socket.AF_UNIX) as sock:
                sock.connect(str(path))
            return process
        except OSError:
            time.sleep(0.05)
    process.kill()
    raise SystemExit(f"the child on {path} did not listen")


async def through(spec: str, sessions: int, messages: int, concurrency: int) -> float:
    started = time.perf_counter()
    results = await run_sessions_async(spec, [message()] * messages, sessions=sessions,
                                       concurrency=concurrency)
    elapsed = time.perf_counter() - started
    failed = [r.error for r in results if r.error is not None]
    if failed:
        raise SystemExit(f"a session failed: {failed[0]}")
    return elapsed


async def variant(children: list[Path], directory: Path, name: str, args: argparse.Namespace,
                  ) -> float:
    spec = f"unix:{directory / f'manager-{name}.sock'}"
    manager = Manager([ChildSpec(f"child{n}", f"unix:{path}") for n, path in
                       enumerate(children)])
    client = Client(spec)
    manager.setup(client)
    async with client:
        await through(spec, 2, 2, 1)  # warm-up
        return min([await through(spec, args.sessions, args.messages, args.concurrency)
                    for _ in range(args.repeat)])


async def main_async(args: argparse.Namespace, directory: Path) -> None:
    paths = [directory / f"child{n}.sock" for n in range(4)]
    processes = [start_child(path) for path in paths]
    try:
        total = args.sessions * args.messages
        rows = []
        direct = min([await through(f"unix:{paths[0]}", args.sessions, args.messages,
                                    args.concurrency) for _ in range(args.repeat)])
        rows.append(("one child, no manager", direct))
        for count in (0, 1, 2, 4):
            rows.append((f"manager, {count} child(ren)",
                         await variant(paths[:count], directory, str(count), args)))
        print(f"{total} messages per variant ({args.sessions} sessions x {args.messages}, "
              f"concurrency {args.concurrency}, best of {args.repeat}); "
              f"Python {platform.python_version()}, {os.cpu_count()} CPU(s)")
        for label, elapsed in rows:
            print(f"{label:>24}: {total / elapsed:8.0f} msg/s  {1000 * elapsed / total:7.3f} "
                  "ms/msg")
        per = {count: dict(rows)[f"manager, {count} child(ren)"] / total * 1000
               for count in (0, 1, 2, 4)}
        print(f"per child: {per[1] - per[0]:.3f} ms/msg (first), "
              f"{(per[4] - per[1]) / 3:.3f} ms/msg (each of the next three)")
    finally:
        for process in processes:
            process.terminate()
            process.wait(10)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sessions", type=int, default=20, help="SMTP connections (20)")
    parser.add_argument("--messages", type=int, default=25, help="messages per session (25)")
    parser.add_argument("--concurrency", type=int, default=4, help="sessions at a time (4)")
    parser.add_argument("--repeat", type=int, default=3,
                        help="runs per variant; the fastest counts (3)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    with tempfile.TemporaryDirectory() as tmp:
        asyncio.run(main_async(args, Path(tmp)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
