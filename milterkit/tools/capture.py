"""The capture proxy: sits between an MTA and a milter, passes every byte through unchanged and
records each connection's two directions with timestamps (format: :mod:`.capture_format`).

It does not parse the protocol: a broken stream is recorded as it is, which is the point.
One file per connection, named ``<UTC time>-<pid>-<number>.mkcap`` in the output directory.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import os
import time
from collections.abc import Callable
from pathlib import Path

from ..server.spec import ConnectionSpec, parse_spec
from .capture_format import FROM_MILTER, FROM_MTA, MILTER_CLOSED, MTA_CLOSED, CaptureWriter

log = logging.getLogger("milterkit.capture")
_READ_SIZE = 256 * 1024


class CaptureProxy:
    """Listen on ``listen``, forward each connection to ``upstream``, record into ``output``.

    ``socket_mode`` sets a unix listening socket's permissions (Postfix's smtpd runs as
    ``postfix`` and needs write access). ``on_connection(path)`` is called with each finished
    capture file (tests and tools use it to know when a connection is fully recorded).
    """

    def __init__(
        self,
        listen: str | ConnectionSpec,
        upstream: str | ConnectionSpec,
        output: str | Path,
        *,
        connect_timeout: float = 30.0,
        socket_mode: int | None = None,
        on_connection: Callable[[Path], object] | None = None,
    ) -> None:
        self.listen = parse_spec(listen) if isinstance(listen, str) else listen
        self.upstream = parse_spec(upstream) if isinstance(upstream, str) else upstream
        self.output = Path(output)
        self.connect_timeout = connect_timeout
        self.socket_mode = socket_mode
        self.on_connection = on_connection
        self.captures: list[Path] = []
        self._numbers = itertools.count(1)
        self._server: asyncio.base_events.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    async def start(self) -> None:
        """Bind and start accepting."""
        self.output.mkdir(parents=True, exist_ok=True)
        spec = self.listen
        if spec.family == "unix":
            assert spec.path is not None
            with contextlib.suppress(FileNotFoundError):
                if Path(spec.path).is_socket():
                    os.unlink(spec.path)  # a stale socket from an earlier run
            self._server = await asyncio.start_unix_server(self._accepted, spec.path)
            if self.socket_mode is not None:
                os.chmod(spec.path, self.socket_mode)
        else:
            address = spec.resolve()
            assert isinstance(address, tuple)
            host, port = address
            self._server = await asyncio.start_server(self._accepted, host, port)

    @property
    def address(self) -> str:
        """The spec actually listened on (with the kernel's port when port 0 was asked)."""
        if self.listen.family == "unix" or self._server is None:
            return str(self.listen)
        host, port = self._server.sockets[0].getsockname()[:2]
        return str(ConnectionSpec(self.listen.family, port=port, host=host))

    async def serve_forever(self) -> None:
        """Start if needed and serve until cancelled."""
        if self._server is None:
            await self.start()
        assert self._server is not None
        async with self._server:
            await self._server.serve_forever()

    async def close(self) -> None:
        """Stop accepting and wait for the connections in flight to end."""
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
        if self.listen.family == "unix" and self.listen.path:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self.listen.path)

    async def _accepted(self, mta_reader: asyncio.StreamReader,
                        mta_writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        try:
            await self._proxy(mta_reader, mta_writer)
        finally:
            self._tasks.discard(task)

    async def _proxy(self, mta_reader: asyncio.StreamReader,
                     mta_writer: asyncio.StreamWriter) -> None:
        number = next(self._numbers)
        stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
        path = self.output / f"{stamp}-{os.getpid()}-{number:04d}.mkcap"
        peer = mta_writer.get_extra_info("peername")
        meta = {"listen": str(self.listen), "upstream": str(self.upstream),
                "peer": str(peer) if peer else None, "connection": number}
        try:
            milter_reader, milter_writer = await asyncio.wait_for(
                _open(self.upstream), self.connect_timeout)
        except (OSError, asyncio.TimeoutError) as exc:
            log.error("capture #%d: cannot reach the milter at %s: %s", number, self.upstream,
                      exc or type(exc).__name__)
            mta_writer.close()
            return
        try:
            with CaptureWriter(path, meta) as capture:
                await asyncio.gather(
                    _pump(mta_reader, milter_writer, capture, FROM_MTA, MTA_CLOSED),
                    _pump(milter_reader, mta_writer, capture, FROM_MILTER, MILTER_CLOSED),
                )
        except OSError as exc:
            # A proxy that cannot record is no use, and a peer left connected would wait
            # forever: hang up on both (the finally below) and say why.
            log.error("capture #%d: cannot write %s: %s", number, path, exc)
            return
        finally:
            for writer in (mta_writer, milter_writer):
                writer.close()
                with contextlib.suppress(OSError):
                    await writer.wait_closed()
        self.captures.append(path)
        log.info("capture #%d written to %s", number, path)
        if self.on_connection is not None:
            self.on_connection(path)


async def _open(spec: ConnectionSpec) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    if spec.family == "unix":
        assert spec.path is not None
        return await asyncio.open_unix_connection(spec.path, limit=_READ_SIZE)
    host = spec.host or ("127.0.0.1" if spec.family == "inet" else "::1")
    return await asyncio.open_connection(host, spec.port, limit=_READ_SIZE)


async def _pump(reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                capture: CaptureWriter, kind: bytes, closed: bytes) -> None:
    """Copy one direction, recording each read before it is forwarded; on EOF or error,
    record the close and half-close the other side so the peer sees the EOF too."""
    try:
        while True:
            data = await reader.read(_READ_SIZE)
            if not data:
                break
            capture.record(kind, data)
            writer.write(data)
            await writer.drain()
    except (ConnectionError, OSError) as exc:
        log.info("capture: %s side failed: %s", "MTA" if kind == FROM_MTA else "milter", exc)
    capture.record(closed)
    with contextlib.suppress(OSError, RuntimeError):
        if writer.can_write_eof():
            writer.write_eof()
        else:
            writer.close()
