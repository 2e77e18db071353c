"""Load and fault suite: ``milterkit run`` under heavy load and hostile peers (issue 9).

Each scenario starts the server (``bench/fault_filter.py``) as a subprocess on TCP, drives
it from this process and prints one row: messages sent, verdicts received, sessions *cut* (the
connection broke before the verdict: the MTA applies its default action), *lost* (no answer
within the MTA's timeout), *dup* (replies nobody asked for), wrong verdicts, p99 latency of a
message, the slowest negotiation reply, and the server's peak RSS (all its processes). Run::

    python bench/load_fault.py            # 1,000 x 100 messages, 10,000 idle, every fault
    python bench/load_fault.py --quick    # a small version of each (about a minute)
    python bench/load_fault.py --only flood slowloris

The driver is Python and shares the machine with the server: latencies are a ceiling.
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import os
import resource
import selectors
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Coroutine
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from milterkit.protocol import commands as cmd
from milterkit.protocol.constants import ActionFlag
from milterkit.protocol.constants import ProtocolFlag as P
from milterkit.protocol.framing import PacketDecoder, encode_packet
from milterkit.protocol.replies import AddHeader, Continue
from milterkit.server.loop import run as run_loop
from milterkit.testing.raw_mta import MTA, MTAError

ROOT = Path(__file__).resolve().parents[1]
FILTER = "bench/fault_filter.py"
BODY = b"".join(b"Line %d of a modest message body, about eighty bytes long.....\r\n" % i
                for i in range(16))
HEADERS = (("From", "Sender <sender@example.org>"), ("To", "rcpt@example.com"),
           ("Subject", "load-and-fault"), ("Message-ID", "<lf@example.org>"))
MTA_TIMEOUT = 10.0  # seconds an MTA waits for an answer before it gives up (lost)
OFFER = cmd.Negotiate(6, ActionFlag.ALL, P.ALL).to_bytes()
clock = time.perf_counter


@dataclass
class Tally:
    """What the MTAs of one scenario saw."""

    sent: int = 0
    verdicts: int = 0
    cut: int = 0
    lost: int = 0
    dup: int = 0
    wrong: int = 0
    refused: int = 0
    latencies: list[float] = field(default_factory=list)
    negotiations: list[float] = field(default_factory=list)


class Server:
    """``milterkit run`` in a subprocess, with its peak RSS sampled every 50 ms."""

    def __init__(self, *options: str, workers: int = 1, loop: str = "auto") -> None:
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            self.port = int(probe.getsockname()[1])
        self.spec = f"inet:{self.port}@[127.0.0.1]"
        self.log = tempfile.NamedTemporaryFile(prefix="mk-lf-", suffix=".log", delete=False)
        self.process = subprocess.Popen(
            [sys.executable, "-m", "milterkit", "run", FILTER, "-l", self.spec, "--workers",
             str(workers), "--log-level", "warning", "--loop", loop, *options],
            cwd=ROOT, stdout=self.log, stderr=subprocess.STDOUT)
        self.peak = 0
        self._stop = threading.Event()
        self._wait_listening()
        self._sampler = threading.Thread(target=self._sample, daemon=True)
        self._sampler.start()

    def _wait_listening(self) -> None:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"the server exited: {Path(self.log.name).read_text()}")
            try:
                socket.create_connection(("127.0.0.1", self.port), 1).close()
                time.sleep(0.3)  # pre-forked workers start after the master listens
                return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError("the server did not listen in time")

    def pids(self) -> list[int]:
        """The server's processes: the master and its workers."""
        pid = self.process.pid
        try:
            children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
        except OSError:
            children = []
        return [pid, *map(int, children)]

    def rss(self) -> int:
        total = 0
        for pid in self.pids():
            try:
                for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                    if line.startswith("VmRSS:"):
                        total += int(line.split()[1]) * 1024
            except OSError:
                pass
        return total

    def _sample(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, self.rss())
            time.sleep(0.05)

    def signal(self, signum: int, worker: bool = False) -> None:
        pids = self.pids()
        os.kill(pids[1] if worker and len(pids) > 1 else pids[0], signum)

    def stop(self) -> int:
        self._stop.set()
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(60)
        except subprocess.TimeoutExpired:
            self.process.kill()
            return self.process.wait()
        finally:
            os.unlink(self.log.name)


# ---------------------------------------------------------------------- MTAs


async def session(spec: str, messages: int, tally: Tally, sender: str = "<s@example.org>"
                  ) -> bool:
    """One MTA session of ``messages`` messages; False if it could not start (refused)."""
    begun = clock()
    try:
        mta = await MTA.open(spec, timeout=MTA_TIMEOUT)
        await mta.negotiate()
    except (OSError, MTAError, asyncio.TimeoutError, RuntimeError):  # uvloop: closed transport
        tally.refused += 1
        return False
    tally.negotiations.append(clock() - begun)
    try:
        await mta.connect()
        await mta.helo()
        for _ in range(messages):
            tally.sent += 1
            begun = clock()
            outcome = await mta.message(sender=sender, headers=HEADERS, body=BODY)
            tally.latencies.append(clock() - begun)
            tally.verdicts += 1
            if not (isinstance(outcome.verdict, Continue)
                    and any(isinstance(m, AddHeader) for m in outcome.modifications)):
                tally.wrong += 1
            mta.send_nowait(cmd.Abort())
        mta.send_nowait(cmd.Quit())
        await mta.writer.drain()
        rest = await asyncio.wait_for(mta.reader.read(), MTA_TIMEOUT)
        tally.dup += len(PacketDecoder().decode(rest))  # nothing may follow QUIT but EOF
    except asyncio.TimeoutError:
        tally.lost += 1
    except (OSError, MTAError, RuntimeError):
        tally.cut += 1
    finally:
        await mta.close()
    return True


async def load(spec: str, connections: int, messages: int, tally: Tally) -> None:
    """``connections`` concurrent sessions of ``messages`` messages each."""
    await asyncio.gather(*(session(spec, messages, tally) for _ in range(connections)))


async def waves(spec: str, connections: int, messages: int, tally: Tally,
                until: asyncio.Event) -> None:
    """``connections`` MTAs each opening session after session until refused or ``until``."""
    async def one() -> None:
        while not until.is_set() and await session(spec, messages, tally):
            pass
    await asyncio.gather(*(one() for _ in range(connections)))


async def _raw(spec: str) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    port = int(spec.split(":")[1].split("@")[0])
    return await asyncio.open_connection("127.0.0.1", port)


async def flood(spec: str, packet: bytes, sender: str, until: asyncio.Event) -> int:
    """A peer that writes ``packet`` over and over and never reads; bytes it got out."""
    _reader, writer = await _raw(spec)
    writer.write(OFFER + cmd.Mail(sender).to_bytes())
    chunk = packet * (65536 // len(packet))
    sent = 0
    try:
        while not until.is_set():
            writer.write(chunk)
            try:
                await asyncio.wait_for(writer.drain(), 0.5)
            except asyncio.TimeoutError:
                continue  # blocked: the milter stopped reading
            sent += len(chunk)
    except OSError:
        pass
    writer.transport.abort()
    return sent


async def slowloris(spec: str, count: int, until: asyncio.Event) -> int:
    """``count`` peers trickling one byte of a header packet every second; how many the
    server closed."""
    trickle = encode_packet(b"L", b"X-Slow\0" + b"v" * 4000 + b"\0")

    async def one() -> bool:
        try:
            reader, writer = await _raw(spec)
            writer.write(OFFER)
            await reader.read(4096)
            for byte in range(len(trickle)):
                if until.is_set():
                    break
                writer.write(trickle[byte : byte + 1])
                try:
                    if await asyncio.wait_for(reader.read(1), 1.0) == b"":
                        return True  # closed by the server
                except asyncio.TimeoutError:
                    pass
            writer.transport.abort()
        except OSError:
            return True
        return False

    return sum(await asyncio.gather(*(one() for _ in range(count))))


# ---------------------------------------------------------------------- scenarios

Scenario = Callable[[argparse.Namespace], Coroutine[Any, Any, tuple[Tally, Server, str]]]


def probe(port: int, count: int) -> list[float]:
    """In another process: open ``count`` connections at once, offer negotiation on each, and
    return how long each waited for the reply (inf: none within the MTA timeout)."""
    selector = selectors.DefaultSelector()
    started: dict[socket.socket, float] = {}
    waited: list[float] = []
    for _ in range(count):
        sock = socket.create_connection(("127.0.0.1", port))
        sock.sendall(OFFER)
        started[sock] = time.monotonic()
        sock.setblocking(False)
        selector.register(sock, selectors.EVENT_READ)
    deadline = time.monotonic() + MTA_TIMEOUT
    while started and time.monotonic() < deadline:
        for key, _ in selector.select(timeout=0.2):
            ready = key.fileobj
            assert isinstance(ready, socket.socket)
            if ready.recv(4096):
                waited.append(time.monotonic() - started.pop(ready))
                selector.unregister(ready)
                ready.close()
    waited.extend(float("inf") for _ in started)
    for sock in started:
        sock.close()
    return waited


async def busy(args: argparse.Namespace) -> tuple[Tally, Server, str]:
    server, tally = Server(), Tally()
    loading = asyncio.ensure_future(load(server.spec, args.connections, args.messages, tally))
    while len(tally.negotiations) < args.connections and not loading.done():
        await asyncio.sleep(0.1)  # every busy connection has started
    await asyncio.sleep(1)
    with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("fork")) as pool:
        waited = await asyncio.get_running_loop().run_in_executor(pool, probe, server.port, 100)
    await loading
    return tally, server, f"{args.connections} conns x {args.messages} msgs; 100 new conns " \
        f"under that load: negotiation p99 {_ms(waited, 0.99)} ms, max {_ms(waited, 1.0)} ms"


async def idle(args: argparse.Namespace) -> tuple[Tally, Server, str]:
    server, tally = Server("--timeout", "0"), Tally()
    before = server.rss()
    held: list[MTA] = []
    for start in range(0, args.idle, 500):
        opened = await asyncio.gather(*(MTA.open(server.spec, timeout=30)
                                        for _ in range(min(500, args.idle - start))))
        await asyncio.gather(*(mta.negotiate() for mta in opened))
        await asyncio.gather(*(mta.connect() for mta in opened))
        held.extend(opened)
    per_idle = (server.rss() - before) / max(1, len(held))
    await load(server.spec, 50, 20, tally)
    await asyncio.gather(*(mta.close() for mta in held))
    return tally, server, f"{len(held)} idle, {per_idle / 1024:.1f} KiB each; 50 x 20 served"


async def sigterm(args: argparse.Namespace) -> tuple[Tally, Server, str]:
    server, tally, until = Server("--shutdown-timeout", "60"), Tally(), asyncio.Event()
    driving = asyncio.ensure_future(waves(server.spec, 100, 10, tally, until))
    await asyncio.sleep(2)
    server.signal(signal.SIGTERM)
    await driving
    code = server.process.wait(60)
    return tally, server, f"SIGTERM at 2 s under 100 conns; exit {code}; refused after: " \
        f"{tally.refused}"


async def sigkill(args: argparse.Namespace) -> tuple[Tally, Server, str]:
    server, tally, until = Server(workers=2), Tally(), asyncio.Event()
    driving = asyncio.ensure_future(waves(server.spec, 100, 10, tally, until))
    await asyncio.sleep(2)
    before = tally.verdicts
    server.signal(signal.SIGKILL, worker=True)
    await asyncio.sleep(3)
    after = tally.verdicts - before
    until.set()
    await driving
    return tally, server, f"a worker SIGKILLed at 2 s (2 workers, 100 conns); {after} verdicts" \
        " in the 3 s after"


async def _with_peer(args: argparse.Namespace, peer: str) -> tuple[Tally, Server, str]:
    server, tally, until = Server(), Tally(), asyncio.Event()
    if peer == "flood":
        attacker = asyncio.ensure_future(flood(server.spec, encode_packet(b"D", b"Ma\0b\0"),
                                               "<hang@flood.example>", until))
    else:
        attacker = asyncio.ensure_future(flood(server.spec, encode_packet(b"B", b"x"),
                                               "<s@example.org>", until))
    await asyncio.sleep(2)
    mid = server.rss()
    await load(server.spec, 50, args.messages, tally)
    await asyncio.sleep(max(0.0, args.fault_seconds - 2))
    end = server.rss()
    until.set()
    sent = await attacker
    return tally, server, f"peer got {sent / 1e6:.1f} MB out in {args.fault_seconds:g}+ s; " \
        f"server RSS {mid / 2**20:.0f} -> {end / 2**20:.0f} MiB"


async def flooding(args: argparse.Namespace) -> tuple[Tally, Server, str]:
    return await _with_peer(args, "flood")


async def nonreading(args: argparse.Namespace) -> tuple[Tally, Server, str]:
    return await _with_peer(args, "nonreading")


async def slow(args: argparse.Namespace) -> tuple[Tally, Server, str]:
    server, tally, until = Server("--timeout", "5"), Tally(), asyncio.Event()
    trickling = asyncio.ensure_future(slowloris(server.spec, args.slowloris, until))
    await asyncio.sleep(1)
    await load(server.spec, 50, args.messages, tally)
    try:
        closed = await asyncio.wait_for(asyncio.shield(trickling), 30)
    except asyncio.TimeoutError:
        until.set()
        closed = await trickling
    return tally, server, f"{args.slowloris} trickling peers, {closed} closed by the 5 s timeout"


SCENARIOS: dict[str, Scenario] = {
    "busy": busy, "idle": idle, "sigterm": sigterm, "sigkill": sigkill, "flood": flooding,
    "nonreading": nonreading, "slowloris": slow,
}


def _ms(values: list[float], quantile: float) -> str:
    if not values:
        return "-"
    ordered = sorted(values)
    return f"{ordered[min(len(ordered) - 1, int(len(ordered) * quantile))] * 1000:.1f}"


HEADER = (f"{'scenario':<11} {'sent':>7} {'verdicts':>8} {'cut':>5} {'lost':>5} {'dup':>4} "
          f"{'wrong':>5} {'refused':>7} {'p99 ms':>8} {'neg max ms':>10} {'peak RSS MiB':>12}"
          "  notes")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="small sizes (about a minute)")
    parser.add_argument("--only", nargs="+", choices=sorted(SCENARIOS), help="scenarios to run")
    parser.add_argument("--driver-loop", choices=("auto", "asyncio", "uvloop"), default="auto")
    args = parser.parse_args(argv)
    args.connections, args.messages = (200, 10) if args.quick else (1000, 100)
    args.idle = 1000 if args.quick else 10_000
    args.slowloris = 100 if args.quick else 1000
    args.fault_seconds = 5.0 if args.quick else 20.0
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))  # the servers inherit it
    print(f"# python {sys.version.split()[0]}, {os.cpu_count()} cpus, fd limit {hard}, "
          f"MTA timeout {MTA_TIMEOUT:g} s, {len(BODY)}-byte body")
    print(HEADER)
    for name in args.only or list(SCENARIOS):
        tally, server, notes = run_loop(SCENARIOS[name](args), args.driver_loop)
        server.stop()
        peak = server.peak / 2**20
        print(f"{name:<11} {tally.sent:>7} {tally.verdicts:>8} {tally.cut:>5} {tally.lost:>5} "
              f"{tally.dup:>4} {tally.wrong:>5} {tally.refused:>7} "
              f"{_ms(tally.latencies, 0.99):>8} "
              f"{_ms(tally.negotiations, 1.0):>10} {peak:>12.0f}  {notes}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
