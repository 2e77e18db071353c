"""The bare-asyncio floor of bench/peers/run.py: no milterkit, the least an asyncio milter can
do for the benchmark's job. It frames packets, answers the negotiation (every event, every
reply: the wire work of the "every handler" style), answers ``c`` to each command that wants a
reply and adds the X-Load header at end-of-message. Nothing is decoded beyond the command byte.
``--needed`` asks the MTA to skip every step but end-of-message (the "only needed" style's
wire work), ``--quickack`` re-arms TCP_QUICKACK after each read that wrote nothing (what a
milter needs behind Postfix over TCP, see milterkit/server/tcp.py): bench/postfix_bench.py's
bound of what any asyncio milter can do there. ``--buffered`` reads into one shared buffer
(an ``asyncio.BufferedProtocol``, as milterkit does on the standard loop: see
milterkit/server/reading.py) instead of a new bytes object per read.

    python bench/peers/floor.py inet:PORT@HOST|unix:/path [--loop asyncio|uvloop] [--needed]
        [--quickack] [--buffered]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import socket
import struct
import sys
from collections.abc import Callable
from typing import cast

from loadgen import new_loop, parse  # beside this script: the generator's spec and loop

CONTINUE = b"\0\0\0\x01c"
HEADER = b"h" + b"X-Load\x00" + b"1\x00"
EOM_REPLY = struct.pack(">I", len(HEADER)) + HEADER + CONTINUE
# ADDHDRS; no step skipped, every reply. --needed: NOCONNECT, NOHELO, NOMAIL, NORCPT, NOBODY,
# NOHDRS, NOEOH, NOUNKNOWN and NODATA (end-of-message is the only step left).
OPTNEG_EVERY = b"O" + struct.pack(">III", 6, 0x01, 0)
OPTNEG_NEEDED = b"O" + struct.pack(">III", 6, 0x01, 0x37F)
QUICKACK = getattr(socket, "TCP_QUICKACK", 12)
ANSWERED = frozenset(b"CHMRTLNB")  # connect, helo, mail, rcpt, data, header, eoh, body


class Floor(asyncio.Protocol):
    """One MTA connection."""

    #: The negotiation reply (set by main) and whether to re-arm TCP_QUICKACK.
    optneg_reply = struct.pack(">I", len(OPTNEG_EVERY)) + OPTNEG_EVERY
    quickack = False

    def __init__(self) -> None:
        self.buffer = b""
        self.transport: asyncio.Transport | None = None
        self.setsockopt: Callable[[int, int, int], None] | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        sock = transport.get_extra_info("socket")
        if self.quickack and sock is not None and sock.family != socket.AF_UNIX:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            self.setsockopt = sock.setsockopt

    def data_received(self, data: bytes) -> None:
        buffer = self.buffer + data if self.buffer else data
        out = []
        start, end = 0, len(buffer)
        while end - start >= 5:
            size = int.from_bytes(buffer[start:start + 4], "big")
            if end - start < 4 + size:
                break
            code = buffer[start + 4]
            start += 4 + size
            if code in ANSWERED:
                out.append(CONTINUE)
            elif code == 0x45:  # E
                out.append(EOM_REPLY)
            elif code == 0x4F:  # O
                out.append(self.optneg_reply)
            elif code == 0x51:  # Q
                assert self.transport is not None
                self.transport.close()
        self.buffer = buffer[start:]
        if out:
            assert self.transport is not None
            self.transport.write(b"".join(out))
        elif self.setsockopt is not None:
            self.setsockopt(socket.IPPROTO_TCP, QUICKACK, 1)


class BufferedFloor(Floor, asyncio.BufferedProtocol):
    """The same, read into one buffer shared by every connection (copied out per read)."""

    read_buffer = memoryview(bytearray(256 * 1024))

    def get_buffer(self, sizehint: int) -> memoryview:
        return self.read_buffer

    def buffer_updated(self, nbytes: int) -> None:
        self.data_received(bytes(self.read_buffer[:nbytes]))


async def serve(spec: str, protocol: type[Floor]) -> None:
    loop = asyncio.get_running_loop()
    kind, where = parse(spec)
    if kind == "unix":
        path = str(where)
        if os.path.exists(path):
            os.unlink(path)
        server = await loop.create_unix_server(protocol, path, backlog=1024)
    else:
        host, port = cast("tuple[str, int]", where)
        server = await loop.create_server(protocol, host, port, backlog=1024,
                                          family=socket.AF_INET)
    async with server:
        await server.serve_forever()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("spec")
    parser.add_argument("--loop", choices=("asyncio", "uvloop"), default="asyncio")
    parser.add_argument("--needed", action="store_true",
                        help="ask the MTA to skip every step but end-of-message")
    parser.add_argument("--quickack", action="store_true",
                        help="re-arm TCP_QUICKACK after each read that wrote nothing")
    parser.add_argument("--buffered", action="store_true",
                        help="read into one shared buffer (asyncio.BufferedProtocol)")
    args = parser.parse_args()
    if args.needed:
        Floor.optneg_reply = struct.pack(">I", len(OPTNEG_NEEDED)) + OPTNEG_NEEDED
    Floor.quickack = args.quickack
    loop = new_loop(args.loop)
    try:
        loop.run_until_complete(serve(args.spec, BufferedFloor if args.buffered else Floor))
    except KeyboardInterrupt:
        pass
    finally:
        loop.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
