"""The MTA side of bench/peers/run.py: C concurrent sessions, each one message, as Postfix does.

Per session, the packets Postfix sends (milter protocol 6): OPTNEG, then CONNECT, HELO, MAIL,
RCPT, DATA, the headers, EOH, the body in 65,535-byte chunks, EOM and QUIT, each command after
the macro packet Postfix sends for its stage; steps the milter asked to skip are not sent and
steps it asked not to answer are not waited for, a body SKIP ends the body. Every packet of a
step goes out in one write, with TCP_NODELAY (Postfix's own Nagle stall is measured behind a real
Postfix by ``bench/postfix_bench.py``, not here). For the same reason the generator re-arms
TCP_QUICKACK after each read: C libmilter writes a header modification and its verdict in two
writes with Nagle on, and a generator that delayed its ACK would time ~40 ms stalls, not
milters. The packets are encoded once, the replies are framed with slicing only: the generator
stays cheap so the milter is what is measured.

It runs for ``--seconds`` after a warm-up, starts no session after that, and prints one JSON
line: messages, seconds, msg/s, errors and its own CPU seconds per message (its ceiling on one
core is the inverse). Example::

    python bench/peers/loadgen.py inet:10026@127.0.0.1 -c 10 --body 2048 --seconds 3
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import struct
import sys
import time

# Protocol flags (mfdef.h) of the steps the generator may skip or not wait for.
NOCONNECT, NOHELO, NOMAIL, NORCPT, NOBODY, NOHDRS, NOEOH = 0x1, 0x2, 0x4, 0x8, 0x10, 0x20, 0x40
NR_HDR, NOUNKNOWN, NODATA, SKIP = 0x80, 0x100, 0x200, 0x400
NR_CONN, NR_HELO, NR_MAIL, NR_RCPT, NR_DATA, NR_UNKN, NR_EOH, NR_BODY = (
    0x1000, 0x2000, 0x4000, 0x8000, 0x10000, 0x20000, 0x40000, 0x80000)
ALL_ACTIONS, ALL_PROTOCOL = 0x1FF, 0x1FFFFF
QUICKACK = getattr(socket, "TCP_QUICKACK", 12)
FINAL = frozenset(b"acdrtsfyO")  # replies that end a step (s: skip; O: the negotiation)


def packet(code: bytes, payload: bytes = b"") -> bytes:
    """One milter packet."""
    return struct.pack(">I", len(payload) + 1) + code + payload


def macros(stage: bytes, pairs: dict[str, str]) -> bytes:
    """The ``D`` packet Postfix sends before a command."""
    return packet(b"D", stage + b"".join(
        k.encode() + b"\0" + v.encode() + b"\0" for k, v in pairs.items()))


HEADERS = [("Received", "from client.example (client.example [192.0.2.1]) by mx.example"),
           ("From", "Sender <sender@example.org>"), ("To", "rcpt@example.com"),
           ("Subject", "benchmark"), ("Message-ID", "<bench@example.org>"),
           ("Date", "Thu, 1 Jan 2026 00:00:00 +0000"), ("MIME-Version", "1.0"),
           ("Content-Type", "text/plain; charset=us-ascii")]
QID = {"i": "4ABCDEF0123"}


def body_of(size: int) -> bytes:
    """``size`` bytes of CRLF text."""
    line = b"Line of a benchmark message body, seventy-eight bytes long, and then some..\r\n"
    return (line * (size // len(line) + 1))[:size]


class Steps:
    """The encoded packets of one session, per step: (bytes, skip flag, no-reply flag)."""

    def __init__(self, body: bytes) -> None:
        self.optneg = packet(b"O", struct.pack(">III", 6, ALL_ACTIONS, ALL_PROTOCOL))
        conn = macros(b"C", {"j": "mx.example", "{daemon_name}": "smtpd",
                             "{daemon_addr}": "127.0.0.1", "v": "Postfix 3.7.11", "_":
                             "client.example [192.0.2.1]"})
        self.steps: list[tuple[bytes, int, int]] = [
            (conn + packet(b"C", b"client.example\x004\x9c\x40192.0.2.1\0"), NOCONNECT, NR_CONN),
            (packet(b"H", b"client.example\0"), NOHELO, NR_HELO),
            (macros(b"M", {**QID, "{mail_addr}": "sender@example.org", "{mail_host}": "",
                           "{mail_mailer}": "smtp"}) + packet(b"M", b"<sender@example.org>\0"),
             NOMAIL, NR_MAIL),
            (macros(b"R", {**QID, "{rcpt_addr}": "rcpt@example.com", "{rcpt_host}":
                           "example.com", "{rcpt_mailer}": "discard"})
             + packet(b"R", b"<rcpt@example.com>\0"), NORCPT, NR_RCPT),
            (macros(b"T", QID) + packet(b"T"), NODATA, NR_DATA),
        ]
        self.headers = [packet(b"L", n.encode() + b"\0" + v.encode() + b"\0")
                        for n, v in HEADERS]
        self.eoh = macros(b"N", QID) + packet(b"N")
        self.body = [packet(b"B", body[i:i + 65535]) for i in range(0, len(body), 65535)]
        self.eom = macros(b"E", QID) + packet(b"E")
        self.quit = packet(b"Q")


class Session(asyncio.Protocol):
    """One MTA connection: ``await session.send(data, wait)`` writes and waits for a final
    reply (its code) when ``wait``."""

    #: ``--postfix-writes``: Nagle on, no quick ACKs, one write per packet (Postfix's way).
    postfix_writes = False

    def __init__(self) -> None:
        self.buffer = b""
        self.waiter: asyncio.Future[int] | None = None
        self.transport: asyncio.Transport | None = None
        self.lost: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.option = 0
        self.modifications = 0
        self.quickack: object = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        sock = transport.get_extra_info("socket")
        if sock is not None and sock.family != socket.AF_UNIX and not self.postfix_writes:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            if hasattr(socket, "TCP_QUICKACK"):
                self.quickack = sock.setsockopt

    def data_received(self, data: bytes) -> None:
        if self.quickack is not None:
            self.quickack(socket.IPPROTO_TCP, QUICKACK, 1)  # type: ignore[operator]
        buffer = self.buffer + data if self.buffer else data
        start, end = 0, len(buffer)
        while end - start >= 5:
            size = int.from_bytes(buffer[start:start + 4], "big")
            if end - start < 4 + size:
                break
            code = buffer[start + 4]
            if code == 0x4F:  # O: the milter's protocol flags
                self.option = int.from_bytes(buffer[start + 13:start + 17], "big")
            start += 4 + size
            if code in FINAL:
                if self.waiter is not None and not self.waiter.done():
                    self.waiter.set_result(code)
            elif code != 0x70:  # p: progress
                self.modifications += 1
        self.buffer = buffer[start:]

    def connection_lost(self, exc: Exception | None) -> None:
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_exception(ConnectionError("the milter closed the connection"))
        if not self.lost.done():
            self.lost.set_result(None)

    def _write(self, data: bytes) -> None:
        assert self.transport is not None
        if not self.postfix_writes:
            self.transport.write(data)
            return
        while data:  # each packet in a write of its own, as Postfix's milter8 flushes them
            size = 4 + int.from_bytes(data[:4], "big")
            self.transport.write(data[:size])
            data = data[size:]

    async def send(self, data: bytes, wait: bool) -> int:
        if not wait:
            self._write(data)
            return 0
        self.waiter = asyncio.get_running_loop().create_future()
        self._write(data)
        return await self.waiter


async def one_message(spec: tuple[str, object], steps: Steps) -> bool:
    """One session; True if the milter let the message through with one header added."""
    loop = asyncio.get_running_loop()
    if spec[0] == "unix":
        _, session = await loop.create_unix_connection(Session, str(spec[1]))
    else:
        address: tuple[str, int] = spec[1]  # type: ignore[assignment]
        _, session = await loop.create_connection(Session, *address)
    try:
        await session.send(steps.optneg, True)
        option = session.option
        for data, skip, noreply in steps.steps:
            if not option & skip:
                if await session.send(data, not option & noreply) not in (0, 0x63):
                    return False
        for header in steps.headers:
            if not option & NOHDRS:
                await session.send(header, not option & NR_HDR)
        if not option & NOEOH:
            await session.send(steps.eoh, not option & NR_EOH)
        if not option & NOBODY:
            for chunk in steps.body:
                if await session.send(chunk, not option & NR_BODY) == 0x73:  # s: skip
                    break
        verdict = await session.send(steps.eom, True)
        session._write(steps.quit)
        return verdict in (0x63, 0x61) and session.modifications == 1
    finally:
        session.transport.close()  # type: ignore[union-attr]


async def load(spec: tuple[str, object], concurrency: int, seconds: float, warmup: float,
               body: bytes) -> dict[str, float]:
    steps = Steps(body)
    loop = asyncio.get_running_loop()
    counting = False
    done = errors = 0
    stop_at = loop.time() + warmup + seconds
    latencies: list[float] = []
    clock = time.perf_counter

    async def worker() -> None:
        nonlocal done, errors
        while loop.time() < stop_at:
            begun = clock()
            try:
                ok = await one_message(spec, steps)
            except OSError:
                ok = False
            if counting:
                done += ok
                errors += not ok
                latencies.append(clock() - begun)

    tasks = [loop.create_task(worker()) for _ in range(concurrency)]
    await asyncio.sleep(warmup)
    counting = True
    cpu0, begun = time.process_time(), loop.time()
    await asyncio.gather(*tasks)
    elapsed, cpu = loop.time() - begun, time.process_time() - cpu0
    latencies.sort()

    def at(q: float) -> float:
        return latencies[min(len(latencies) - 1, int(len(latencies) * q))] * 1000 if (
            latencies) else 0.0

    return {"messages": done, "errors": errors, "seconds": elapsed,
            "p50_ms": at(0.5), "p90_ms": at(0.9), "p99_ms": at(0.99),
            "rate": done / elapsed if elapsed else 0.0,
            "gen_cpu_per_msg": cpu / done if done else 0.0}


def new_loop(kind: str) -> asyncio.AbstractEventLoop:
    """A new event loop: ``uvloop`` or ``asyncio`` (the standard one)."""
    if kind == "uvloop":
        import uvloop

        return uvloop.new_event_loop()
    return asyncio.new_event_loop()


def parse(spec: str) -> tuple[str, object]:
    """``inet:PORT@HOST`` or ``unix:/path``."""
    if spec.startswith("unix:"):
        return ("unix", spec[5:])
    port, _, host = spec[5:].partition("@")
    return ("inet", (host.strip("[]") or "127.0.0.1", int(port)))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("spec")
    parser.add_argument("-c", "--concurrency", type=int, default=10)
    parser.add_argument("--body", type=int, default=2048, help="body bytes (default 2048)")
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--warmup", type=float, default=0.5)
    parser.add_argument("--loop", choices=("uvloop", "asyncio"), default="uvloop")
    parser.add_argument("--postfix-writes", action="store_true",
                        help="write like Postfix: one write per packet, Nagle on, no quick ACKs "
                        "(shows the delayed-ACK stall that TCP_QUICKACK removes)")
    args = parser.parse_args(argv)
    Session.postfix_writes = args.postfix_writes
    loop = new_loop(args.loop)
    try:
        result = loop.run_until_complete(load(parse(args.spec), args.concurrency, args.seconds,
                                              args.warmup, body_of(args.body)))
    finally:
        loop.close()
    result["pid"] = os.getpid()
    print(json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
