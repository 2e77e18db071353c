"""The bare-asyncio floor of bench/peers/run.py: no milterkit, the least an asyncio milter can
do for the benchmark's job. It frames packets, answers the negotiation (every event, every
reply: the wire work of the "every handler" style), answers ``c`` to each command that wants a
reply and adds the X-Load header at end-of-message. Nothing is decoded beyond the command byte.

    python bench/peers/floor.py inet:PORT@HOST|unix:/path [--loop asyncio|uvloop]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import socket
import struct
import sys
from typing import cast

from loadgen import new_loop, parse  # beside this script: the generator's spec and loop

CONTINUE = b"\0\0\0\x01c"
HEADER = b"h" + b"X-Load\x00" + b"1\x00"
EOM_REPLY = struct.pack(">I", len(HEADER)) + HEADER + CONTINUE
OPTNEG = b"O" + struct.pack(">III", 6, 0x01, 0)  # ADDHDRS; no step skipped, every reply
OPTNEG_REPLY = struct.pack(">I", len(OPTNEG)) + OPTNEG
ANSWERED = frozenset(b"CHMRTLNB")  # connect, helo, mail, rcpt, data, header, eoh, body


class Floor(asyncio.Protocol):
    """One MTA connection."""

    def __init__(self) -> None:
        self.buffer = b""
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

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
                out.append(OPTNEG_REPLY)
            elif code == 0x51:  # Q
                assert self.transport is not None
                self.transport.close()
        self.buffer = buffer[start:]
        if out:
            assert self.transport is not None
            self.transport.write(b"".join(out))


async def serve(spec: str) -> None:
    loop = asyncio.get_running_loop()
    kind, where = parse(spec)
    if kind == "unix":
        path = str(where)
        if os.path.exists(path):
            os.unlink(path)
        server = await loop.create_unix_server(Floor, path, backlog=1024)
    else:
        host, port = cast("tuple[str, int]", where)
        server = await loop.create_server(Floor, host, port, backlog=1024,
                                          family=socket.AF_INET)
    async with server:
        await server.serve_forever()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("spec")
    parser.add_argument("--loop", choices=("asyncio", "uvloop"), default="asyncio")
    args = parser.parse_args()
    loop = new_loop(args.loop)
    try:
        loop.run_until_complete(serve(args.spec))
    except KeyboardInterrupt:
        pass
    finally:
        loop.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
