"""TCP socket options of accepted connections (issue 15): TCP_NODELAY always, and TCP_QUICKACK
re-armed after a read that wrote nothing, unless ``quickack=False``. Read back with getsockopt on
the milter's own accepted socket, over a real TCP connection."""

from __future__ import annotations

import asyncio
import socket
import sys
from typing import Any

import pytest
from serverlib import MTA, run, serving

from milterkit.protocol import commands as cmd
from milterkit.server import Client

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"),
                                reason="TCP_QUICKACK is Linux's")
QUICKACK = getattr(socket, "TCP_QUICKACK", 12)


def _server_socket(client: Client) -> Any:
    (connection,) = client.connections
    assert connection.transport is not None
    return connection.transport.get_extra_info("socket")


async def _quickack_after_macro(quickack: bool) -> tuple[int, int]:
    """TCP_NODELAY and TCP_QUICKACK of the milter's socket after it read a macro packet (which
    it does not answer), having been put in delayed-ACK mode just before."""
    async with serving(quickack=quickack) as client:
        mta = await MTA.open(client.address_spec)
        try:
            await mta.negotiate()
            await mta.connect()
            sock = _server_socket(client)
            # Leave quick-ACK mode as the kernel itself does in a request/reply exchange.
            sock.setsockopt(socket.IPPROTO_TCP, QUICKACK, 0)
            assert sock.getsockopt(socket.IPPROTO_TCP, QUICKACK) == 0
            (connection,) = client.connections
            assert connection.context is not None
            mta.send_nowait(cmd.DefineMacro(b"H", {"{marker}": "1"}))
            await mta.writer.drain()
            for _ in range(500):  # until the milter has read it (same loop: it is all done)
                if connection.context.macros.get("{marker}") == "1":
                    break
                await asyncio.sleep(0.01)
            else:
                raise AssertionError("the milter never read the macro packet")
            return (sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY),
                    sock.getsockopt(socket.IPPROTO_TCP, QUICKACK))
        finally:
            await mta.close()


def test_quickack_rearmed_after_a_read_without_reply() -> None:
    nodelay, quickack = run(_quickack_after_macro(True))
    assert nodelay != 0
    assert quickack == 1


def test_quickack_off_leaves_the_kernel_default() -> None:
    nodelay, quickack = run(_quickack_after_macro(False))
    assert nodelay != 0
    assert quickack == 0


def test_unix_socket_connections_are_left_alone() -> None:
    from serverlib import session, short_tmpdir

    async def scenario() -> None:
        with short_tmpdir() as tmp:
            async with serving(f"unix:{tmp}/m.sock") as client:
                await session(client.address_spec)
                assert client.served == 1

    run(scenario())


class _CountingTransport:
    """The real transport, counting its writes."""

    def __init__(self, real: Any) -> None:
        self.real = real
        self.writes = 0

    def write(self, data: bytes) -> None:
        self.writes += 1
        self.real.write(data)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.real, name)


def test_one_write_per_read_and_replies_before_quit() -> None:
    async def scenario() -> tuple[int, list[Any], bool]:
        def setup(client: Client) -> None:
            client.connect("end-of-message", lambda ctx, chunk: ctx.add_header("X-A", "1"))
            for name in ("connect", "helo", "envelope-from"):
                client.connect(name, lambda ctx, *args: None)

        async with serving(setup=setup) as client:
            mta = await MTA.open(client.address_spec)
            try:
                await mta.negotiate()
                (connection,) = client.connections
                counting = _CountingTransport(connection.transport)
                connection.transport = counting  # type: ignore[assignment]
                mta.send_nowait(cmd.Connect("c.example", cmd.SocketAddress("4", "192.0.2.1", 25)),
                                cmd.Helo("c.example"), cmd.Mail("<a@example.org>"))
                replies = [await mta.read_reply() for _ in range(3)]
                writes = counting.writes
                # End-of-message and QUIT in one read: the reply goes out before the close.
                mta.send_nowait(cmd.EndOfMessage(b""), cmd.Quit())
                replies += [await mta.read_reply(), await mta.read_reply()]
                return writes, replies, await mta.at_eof()
            finally:
                await mta.close()

    writes, replies, eof = run(scenario())
    assert writes == 1
    assert [type(r).__name__ for r in replies] == ["Continue"] * 3 + ["AddHeader", "Continue"]
    assert eof
