"""``MetricsServer``: a small HTTP endpoint on the Client's event loop, serving
``GET /metrics`` (the Prometheus text format) and ``GET /health`` (for HAProxy's checks).

``/health`` answers ``200 ok`` while the Client accepts connections and ``503 draining`` once it
has stopped (a graceful shutdown in progress), so a load balancer stops sending it new sessions
while those in flight finish.
"""

from __future__ import annotations

import asyncio
import logging
import socket
from typing import TYPE_CHECKING

from prometheus_client.exposition import CONTENT_TYPE_LATEST

from .collectors import Metrics

if TYPE_CHECKING:
    from ..server.client import Client

__all__ = ["MetricsError", "MetricsServer", "enable_metrics", "parse_listen"]

log = logging.getLogger("milterkit.metrics")

#: How long a client may take to send its request, in seconds.
REQUEST_TIMEOUT = 5.0
_MAX_REQUEST = 8192
_REASONS = {200: "OK", 404: "Not Found", 405: "Method Not Allowed", 400: "Bad Request",
            503: "Service Unavailable"}


class MetricsError(ValueError):
    """A bad ``HOST:PORT`` or an address the endpoint cannot listen on."""


def parse_listen(text: str) -> tuple[str, int]:
    """``"127.0.0.1:9101"``, ``"[::1]:9101"`` or ``":9101"`` (every address) -> (host, port);
    port 0 is any free port."""
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit() or not 0 <= int(port) < 65536:
        raise MetricsError(f"not HOST:PORT: {text!r} (for example 127.0.0.1:9101)")
    return host.strip("[]"), int(port)


class MetricsServer:
    """Serves ``metrics`` of ``client`` on ``host``:``port`` (port 0: any free one).

    :meth:`bind` opens the socket (call it before the Client runs, so a port in use stops the
    start-up); :meth:`start` serves it on the running loop.
    """

    def __init__(self, metrics: Metrics, client: Client, host: str = "127.0.0.1",
                 port: int = 9101) -> None:
        self.metrics = metrics
        self.client = client
        self.host = host
        self.port = port
        self.sock: socket.socket | None = None
        self._server: asyncio.Server | None = None

    def bind(self) -> socket.socket:
        """Open the listening socket (idempotent); raises :exc:`MetricsError`."""
        if self.sock is None:
            try:
                infos = socket.getaddrinfo(self.host or None, self.port, type=socket.SOCK_STREAM,
                                           flags=socket.AI_PASSIVE)
                family, kind, proto, _, address = infos[0]
                sock = socket.socket(family, kind, proto)
            except OSError as exc:
                raise MetricsError(f"metrics endpoint {self.host}:{self.port}: {exc}") from None
            try:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                sock.bind(address)
                sock.listen(64)
                sock.setblocking(False)
            except OSError as exc:
                sock.close()
                raise MetricsError(f"metrics endpoint {self.host}:{self.port}: {exc}") from None
            self.sock = sock
        return self.sock

    @property
    def address(self) -> tuple[str, int]:
        """The bound (host, port)."""
        name = self.bind().getsockname()
        return name[0], name[1]

    async def start(self) -> None:
        """Serve on the running loop (idempotent)."""
        if self._server is None:
            self._server = await asyncio.start_server(self._serve, sock=self.bind())
            host, port = self.address
            log.info("metrics on http://%s:%d/metrics, health on /health", host, port)

    def close(self) -> None:
        """Stop serving and close the socket."""
        if self._server is not None:
            self._server.close()
            self._server = None
        elif self.sock is not None:
            self.sock.close()
        self.sock = None

    def healthy(self) -> bool:
        """Whether the Client accepts connections: started, listening, not shutting down."""
        listeners = self.client.listeners
        return bool(listeners) and all(listener.sock.fileno() != -1 for listener in listeners)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            try:
                head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), REQUEST_TIMEOUT)
            except (asyncio.IncompleteReadError, asyncio.LimitOverrunError,
                    asyncio.TimeoutError, ConnectionError):
                return
            if len(head) > _MAX_REQUEST:
                self._answer(writer, 400, b"request too large\n")
                return
            words = head.split(b"\r\n", 1)[0].split()
            if len(words) != 3:
                self._answer(writer, 400, b"bad request\n")
                return
            method, target = words[0], words[1].split(b"?", 1)[0]
            if method not in (b"GET", b"HEAD"):
                self._answer(writer, 405, b"GET or HEAD only\n")
            elif target == b"/metrics":
                self._answer(writer, 200, self.metrics.render(), CONTENT_TYPE_LATEST,
                             head_only=method == b"HEAD")
            elif target == b"/health":
                ok = self.healthy()
                self._answer(writer, 200 if ok else 503, b"ok\n" if ok else b"draining\n",
                             head_only=method == b"HEAD")
            else:
                self._answer(writer, 404, b"try /metrics or /health\n")
            await writer.drain()
        except ConnectionError:
            pass
        finally:
            writer.close()

    @staticmethod
    def _answer(writer: asyncio.StreamWriter, code: int, body: bytes,
                content_type: str = "text/plain; charset=utf-8", head_only: bool = False
                ) -> None:
        head = (f"HTTP/1.1 {code} {_REASONS[code]}\r\nContent-Type: {content_type}\r\n"
                f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n").encode()
        writer.write(head if head_only else head + body)


def enable_metrics(client: Client, listen: str, metrics: Metrics | None = None
                   ) -> MetricsServer:
    """Install ``metrics`` (new ones by default) on ``client`` and serve them on ``listen``
    (``HOST:PORT``) once the client starts. The socket is bound now, so a bad address raises
    :exc:`MetricsError` here. Call it after the filter's ``setup(client)``. ``milterkit run
    --metrics-listen`` does this."""
    host, port = parse_listen(listen)
    if metrics is None:
        metrics = Metrics()
    server = MetricsServer(metrics, client, host, port)
    server.bind()
    metrics.install(client)
    tasks: set[asyncio.Task[None]] = set()

    def serve(client: Client, address: object) -> None:
        if server._server is None and not tasks:
            task = asyncio.get_running_loop().create_task(server.start())
            tasks.add(task)  # a reference until it is done
            task.add_done_callback(tasks.discard)

    client.connect("listen-started", serve)
    return server
