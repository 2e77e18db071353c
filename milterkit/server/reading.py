"""Reading on the standard event loop without an allocation per read (issue 15).

asyncio's selector transports read each chunk with ``sock.recv(256 KiB)``: a new 256 KiB bytes
object for every read, which glibc's malloc serves with ``mmap``, shrinks to the bytes read with
``mremap`` and frees with ``munmap``. Under the peers benchmark (``strace -c`` of a milter on the
standard loop) those three system calls, and the page faults behind them, were more of the
kernel's time than the ``recvfrom`` and ``sendto`` that move the packets. A
:class:`asyncio.BufferedProtocol` is handed a buffer to read into instead: one buffer per
:class:`~milterkit.server.Client` serves every read of its connections (a loop runs one
callback at a time, and each read is copied out, as exactly the bytes read, before the next).

uvloop reads into its own buffer and makes the bytes object at its exact size, so there the
plain :class:`~milterkit.server.connection.Connection` is used.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import TYPE_CHECKING

from .connection import Connection, ConnectionHooks

if TYPE_CHECKING:
    from .client import Client

__all__ = ["READ_SIZE", "BufferedConnection", "connection_factory"]

#: The most one read takes: what asyncio's transports ask ``recv`` for.
READ_SIZE = 256 * 1024


class BufferedConnection(Connection, asyncio.BufferedProtocol):
    """A :class:`Connection` the transport reads into a shared buffer; each read is then fed
    as :meth:`data_received` would be."""

    def __init__(self, client: Client, hooks: ConnectionHooks, buffer: memoryview) -> None:
        super().__init__(client, hooks)
        self._buffer = buffer

    def get_buffer(self, sizehint: int) -> memoryview:
        """The Client's read buffer, whatever ``sizehint`` says."""
        return self._buffer

    def buffer_updated(self, nbytes: int) -> None:
        """Feed the ``nbytes`` just read, copied out of the shared buffer first: a slice of a
        large read may wait for later turns (``FEED_SLICE``), when the buffer holds another
        connection's bytes."""
        self.data_received(bytes(self._buffer[:nbytes]))


def connection_factory(
    client: Client, hooks: ConnectionHooks, loop: asyncio.AbstractEventLoop,
) -> Callable[[], Connection]:
    """What makes each accepted connection's protocol on ``loop``: a
    :class:`BufferedConnection` sharing one buffer on the standard (selector) loop, a plain
    :class:`Connection` elsewhere (uvloop)."""
    if isinstance(loop, asyncio.SelectorEventLoop):
        buffer = memoryview(bytearray(READ_SIZE))
        return lambda: BufferedConnection(client, hooks, buffer)
    return lambda: Connection(client, hooks)
