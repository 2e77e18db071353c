"""Flow control over real sockets: a peer that floods commands while a handler is pending, and an
MTA that stops reading our replies, must make us stop reading (bounded memory) while other
connections are served; a peer past the hard bound is a protocol error for its connection only."""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from collections.abc import Callable
from typing import Any

from serverlib import run, serving, session, short_tmpdir

from milterkit import ClientContext
from milterkit.protocol import commands as cmd
from milterkit.protocol.constants import ActionFlag
from milterkit.protocol.constants import ProtocolFlag as P
from milterkit.protocol.errors import BacklogOverflow
from milterkit.protocol.framing import encode_packet
from milterkit.server import Client

MACRO = encode_packet(b"D", b"Ma\0b\0")  # 10 bytes, the flood packet
BODY_BYTE = encode_packet(b"B", b"x")  # 6 bytes, answered with a 5-byte 'c'
PREAMBLE = cmd.Negotiate(6, ActionFlag.ALL, P.ALL).to_bytes() + cmd.Mail("<a@b>").to_bytes()
FLOOD = 64 * 1024 * 1024  # what the peer tries to send: ~6.7 million packets
MB = 1024 * 1024


def rss() -> int:
    """This process's resident set size in bytes (VmRSS)."""
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS in /proc/self/status")


class Flooder:
    """A peer in a thread with a blocking socket: writes ``PREAMBLE`` then ``packet`` over and
    over, never reading, until ``FLOOD`` bytes are out, or until it is blocked and the milter
    has said it paused (``paused`` is set by the test), or until ``patience`` seconds passed."""

    def __init__(
        self, address: tuple[str, int] | str, packet: bytes, patience: float = 40.0
    ) -> None:
        family = socket.AF_UNIX if isinstance(address, str) else socket.AF_INET
        self.sock = socket.socket(family, socket.SOCK_STREAM)
        # Small kernel buffers on the peer's side: the milter's own buffers fill sooner.
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 32 * 1024)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 32 * 1024)
        self.sock.connect(address)
        self.sock.settimeout(0.5)
        self.packet = packet
        self.patience = patience
        self.sent = 0
        self.paused = threading.Event()
        self.stalled = False
        self.failed: BaseException | None = None

    def run(self) -> None:
        deadline = time.monotonic() + self.patience
        try:
            self.sock.sendall(PREAMBLE)
            chunk = memoryview(self.packet * (65536 // len(self.packet)))
            offset = 0  # into chunk: a partial send must go on where it stopped
            while self.sent < FLOOD and time.monotonic() < deadline:
                try:
                    written = self.sock.send(chunk[offset:])
                    self.sent += written
                    offset = (offset + written) % len(chunk)
                except TimeoutError:
                    if self.paused.is_set():
                        self.stalled = True  # blocked, and the milter says it stopped reading
                        return
        except OSError as exc:
            self.failed = exc

    def close(self) -> None:
        self.sock.close()


def _signals(client: Client, flooder: Flooder) -> dict[str, list[ClientContext]]:
    """The contexts each flow-control signal was emitted for; a pause also tells the flooder."""
    seen: dict[str, list[ClientContext]] = {"backlog-paused": [], "backlog-resumed": []}

    def paused(client: Client, context: ClientContext) -> None:
        seen["backlog-paused"].append(context)
        flooder.paused.set()

    client.connect("backlog-paused", paused)
    client.connect("backlog-resumed",
                   lambda c, context: seen["backlog-resumed"].append(context))
    return seen


async def _flood(
    client: Client, packet: bytes,
) -> tuple[Flooder, dict[str, list[ClientContext]], int]:
    """Flood ``client`` with ``packet`` from a thread until the flooder stalls or gives up:
    the flooder, the contexts each flow-control signal was emitted for (:func:`_signals`), and
    how many bytes this process's RSS grew meanwhile."""
    before = rss()
    flooder = Flooder(client.address, packet)
    seen = _signals(client, flooder)
    await asyncio.get_running_loop().run_in_executor(None, flooder.run)
    return flooder, seen, rss() - before


def _holding_the_flooder(release: asyncio.Event) -> Callable[[Client], None]:
    """A setup whose MAIL handler holds the flooder's sender (``<a@b>``) until ``release`` is
    set, so that its flood piles up; other MTAs are answered at once."""

    async def hang(context: ClientContext, sender: str) -> None:
        if sender == "<a@b>":
            await release.wait()

    def setup(client: Client) -> None:
        client.connect("envelope-from", hang)

    return setup


def _finished(client: Client) -> asyncio.Event:
    """Set when a connection of ``client`` has finished."""
    finished = asyncio.Event()
    client.connect("connection-finished", lambda c, context: finished.set())
    return finished


def test_a_flood_while_a_handler_is_pending_pauses_reading_with_bounded_memory() -> None:
    async def scenario() -> None:
        release = asyncio.Event()
        async with serving("inet:0@127.0.0.1", _holding_the_flooder(release)) as client:
            flooder, seen, growth = await _flood(client, MACRO)
            assert flooder.failed is None
            # The peer is blocked long before its 64 MiB are out, and the milter holds little.
            assert flooder.stalled
            assert flooder.sent < FLOOD // 4
            assert growth < 64 * MB, f"RSS grew {growth / MB:.1f} MiB"
            (connection,) = client.connections
            assert connection.paused == {"backlog"}
            assert seen["backlog-paused"] == [connection.context]
            assert connection.context is not None
            packets, size = connection.context.backlog
            assert 0 < packets <= connection.context.max_backlog[0]
            assert size <= connection.context.max_backlog[1]
            # Another MTA is served meanwhile.
            outcomes = await session(client.address_spec, messages=2)
            assert [o.verdict is not None for o in outcomes] == [True, True]
            # The handler answers: the backlog drains, reading resumes.
            release.set()
            for _ in range(200):
                if seen["backlog-resumed"]:
                    break
                await asyncio.sleep(0.05)
            assert seen["backlog-resumed"] == [connection.context]
            flooder.close()

    run(scenario(), timeout=60)


def test_past_the_hard_bound_a_flood_is_a_protocol_error_for_that_connection_only() -> None:
    async def scenario() -> None:
        errors: list[BaseException] = []

        def setup(client: Client) -> None:
            _holding_the_flooder(asyncio.Event())(client)  # never released
            client.connect("error", lambda context, exc: errors.append(exc))

        # Pausing set out of reach: the hard bound is what stops this peer.
        async with serving("inet:0@127.0.0.1", setup, max_backlog=(1000, 1 * MB),
                           backlog_pause=(10**9, 10**12)) as client:
            finished = _finished(client)
            flooder = Flooder(client.address, MACRO)
            loop = asyncio.get_running_loop()
            flooding = loop.run_in_executor(None, flooder.run)
            await asyncio.wait_for(finished.wait(), 30)
            assert any(isinstance(exc, BacklogOverflow) for exc in errors), errors
            await flooding
            assert flooder.failed is not None  # reset by the milter's close
            assert flooder.sent < FLOOD // 4
            assert not client.connections
            outcomes = await session(client.address_spec)
            assert outcomes[0].verdict is not None
            flooder.close()

    run(scenario(), timeout=60)


def test_an_mta_that_does_not_read_our_replies_pauses_us_without_memory_growth() -> None:
    async def scenario() -> None:
        def setup(client: Client) -> None:
            client.connect("body", lambda context, chunk: None)

        # A unix socket: its kernel buffers are small and fixed (TCP's grow to megabytes, which
        # a peer sending 6-byte packets takes long to fill).
        with short_tmpdir() as tmp:
            async with serving(f"unix:{tmp}/m.sock", setup) as client:
                await _not_reading(client)

    async def _not_reading(client: Client) -> None:
        flooder, seen, growth = await _flood(client, BODY_BYTE)
        assert flooder.failed is None and flooder.stalled
        assert flooder.sent < FLOOD // 4
        (connection,) = client.connections
        assert connection.paused == {"writing"}
        assert seen["backlog-paused"] == [connection.context]
        transport: Any = connection.transport
        assert transport.get_write_buffer_size() < 1 * MB
        assert growth < 64 * MB, f"RSS grew {growth / MB:.1f} MiB"
        # The MTA reads again: so do we.
        resumed = threading.Event()
        client.connect("backlog-resumed", lambda c, context: resumed.set())

        def drain() -> int:
            drained = 0
            flooder.sock.settimeout(0.2)
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline:
                try:
                    drained += len(flooder.sock.recv(1 << 20))
                except TimeoutError:
                    pass
                if resumed.is_set():
                    break
            return drained

        drained = await asyncio.get_running_loop().run_in_executor(None, drain)
        assert seen["backlog-resumed"] == [connection.context]
        assert drained > 0
        flooder.close()

    run(scenario(), timeout=60)


def test_backlog_pause_is_checked() -> None:
    for bad in ((0, 10), (10, 0)):
        try:
            Client("inet:0@127.0.0.1", backlog_pause=bad, socket_activation=False)
        except ValueError as exc:
            assert "backlog_pause" in str(exc)
        else:
            raise AssertionError(f"{bad} was accepted")
        try:
            Client("inet:0@127.0.0.1", max_backlog=bad, socket_activation=False)
        except ValueError as exc:
            assert "max_backlog" in str(exc)
        else:
            raise AssertionError(f"{bad} was accepted")


def test_a_peer_trickling_one_packet_byte_by_byte_still_times_out() -> None:
    # Slowloris: every byte arrives well within the timeout, but no command is ever complete.
    async def scenario() -> None:
        async with serving("inet:0@127.0.0.1", timeout=0.5) as client:
            finished = _finished(client)
            reader, writer = await asyncio.open_connection(*client.address)
            packet = cmd.Negotiate(6, ActionFlag.ALL, P.ALL).to_bytes()
            writer.write(packet)  # a whole command: activity
            await reader.read(4096)
            trickle = encode_packet(b"L", b"X-Slow\0" + b"v" * 500 + b"\0")
            sent = 0
            while not finished.is_set() and sent < len(trickle):
                writer.write(trickle[sent : sent + 1])
                sent += 1
                await asyncio.sleep(0.05)  # ten bytes per timeout: never idle for 0.5 s
            assert finished.is_set(), "the trickling peer kept its connection"
            assert sent < len(trickle)
            writer.close()

    run(scenario(), timeout=60)
