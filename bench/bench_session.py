"""milterkit's own CPU per session, without sockets: the runtime's :class:`Connection` fed the
packets ``bench/peers/loadgen.py`` sends (one message per session, one ``data_received`` per
step, as a live MTA that waits for each reply), over an in-memory transport.

A benchmark, not a test: it prints microseconds per session (the best of ``--repeat`` runs,
so the other tenants of a shared machine matter less) and, with ``--profile``, cProfile's top
functions. The work is the peers benchmark's "every handler" milter (``bench/load_filter.py``)
with the runtime's defaults (message log on, at WARNING as ``bench/peers/run.py`` runs it, or
``--log-level info`` with the log lines written to /dev/null). What it leaves out is the event
loop and the kernel: the difference to ``bench/peers/run.py``'s CPU per message is theirs.
Run::

    python bench/bench_session.py                 # 5 x 2000 sessions, uvloop
    python bench/bench_session.py --profile -n 2000
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import logging
import pstats
import sys
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE / "peers"))

from loadgen import Steps, body_of, new_loop  # noqa: E402

from milterkit.server import Client  # noqa: E402
from milterkit.server.connection import Connection, ConnectionHooks  # noqa: E402


class Transport(asyncio.Transport):
    """Collects what the milter writes; closing loses the connection on the next turn."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        super().__init__()
        self.loop = loop
        self.written: list[bytes] = []
        self.protocol: Connection | None = None
        self.closing = False

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return ("192.0.2.1", 4242) if name == "peername" else default

    def write(self, data: bytes | bytearray | memoryview) -> None:
        self.written.append(bytes(data))

    def is_closing(self) -> bool:
        return self.closing

    def close(self) -> None:
        if not self.closing:
            self.closing = True
            assert self.protocol is not None
            self.protocol.connection_lost(None)

    abort = close

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass


def packets(steps: Steps) -> list[bytes]:
    """The reads of one session, for a milter that handles every event."""
    reads = [steps.optneg, *(data for data, _skip, _noreply in steps.steps)]
    reads += [*steps.headers, steps.eoh, *steps.body, steps.eom, steps.quit]
    return reads


def sessions(client: Client, reads: list[bytes], count: int) -> None:
    loop = asyncio.get_running_loop()
    # What the Client's accept loop hands each connection.
    hooks = ConnectionHooks(opened=client._connection_made, closed=client._connection_lost)
    for _ in range(count):
        transport = Transport(loop)
        connection = Connection(client, hooks)
        transport.protocol = connection
        connection.connection_made(transport)
        for data in reads:
            connection.data_received(data)
        assert transport.closing, "the session did not end"


async def main_async(args: argparse.Namespace) -> None:
    import load_filter  # bench/, on sys.path as the script's directory

    client = Client("inet:0@127.0.0.1", socket_activation=False, timeout=0)
    load_filter.setup(client)
    client._idle = asyncio.Event()  # as start() sets it
    steps = Steps(body_of(args.body))
    reads = packets(steps)
    # The milter asks for every step: check it did, or the reads above are the wrong ones.
    sessions(client, reads, 10)
    if args.profile:
        profile = cProfile.Profile()
        profile.enable()
        sessions(client, reads, args.n)
        profile.disable()
        stats = pstats.Stats(profile)
        calls: int = stats.total_calls  # type: ignore[attr-defined]
        print(f"{calls / args.n:.0f} function calls per session")
        stats.sort_stats("tottime").print_stats(25)
        return
    best = float("inf")
    for _ in range(args.repeat):
        begun = time.process_time()
        sessions(client, reads, args.n)
        best = min(best, (time.process_time() - begun) / args.n)
    print(f"{best * 1e6:.1f} µs CPU per session (best of {args.repeat} x {args.n})")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("-n", type=int, default=2000, help="sessions per run (2000)")
    parser.add_argument("--repeat", type=int, default=5, help="runs; the best is shown (5)")
    parser.add_argument("--body", type=int, default=2048, help="body bytes (2048)")
    parser.add_argument("--loop", choices=("uvloop", "asyncio"), default="uvloop")
    parser.add_argument("--log-level", default="warning", choices=("warning", "info"))
    parser.add_argument("--profile", action="store_true")
    args = parser.parse_args(argv)
    handler = logging.FileHandler("/dev/null")
    logging.basicConfig(level=args.log_level.upper(), handlers=[handler])
    loop = new_loop(args.loop)
    try:
        loop.run_until_complete(main_async(args))
    finally:
        loop.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
