"""``Client``: the asyncio milter server. It listens, makes one
:class:`~milterkit.context.ClientContext` per MTA connection and shuts down gracefully.

The milter is the *client* of the MTA (milter-manager's naming), hence the name, although it is
the side that listens.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import socket
from collections.abc import Callable, Mapping, Sequence
from types import TracebackType
from typing import Any, TypeVar

from ..backlog import DEFAULT_MAX_BACKLOG
from ..context import SIGNAL_NAMES, ClientContext
from ..handlers import SIGNAL_ARGUMENTS
from ..protocol.constants import DEFAULT_MAX_PAYLOAD, ActionFlag, MacroStage, ProtocolFlag
from ..signals import SignalTable
from ..status import Status
from . import listen
from .accept import ACCEPT_BATCH as ACCEPT_BATCH  # their home was here
from .accept import ACCEPT_RETRY_FIRST as ACCEPT_RETRY_FIRST
from .accept import ACCEPT_RETRY_MAX as ACCEPT_RETRY_MAX
from .accept import Acceptor
from .connection import Connection, ConnectionHooks
from .listen import Listener
from .reading import connection_factory
from .session import SessionSignals
from .spec import ConnectionSpec, parse_spec
from .threads import HandlerThreads

F = TypeVar("F", bound=Callable[..., Any])
log = logging.getLogger("milterkit.server")

#: Signals of the Client itself; their handlers are called ``handler(client, *args)``.
CLIENT_SIGNAL_NAMES = (
    "connection-established", "listen-started", "connection-finished",
    "backlog-paused", "backlog-resumed",
)
#: The default connection spec (milter-manager's C tools use the same).
DEFAULT_SPEC = "inet:10025@127.0.0.1"
DEFAULT_EXCEPTION_REPLY = "451 4.3.0 Temporary failure in the mail filter"

#: A connection stops reading while this many commands, or bytes, wait for a pending handler.
DEFAULT_BACKLOG_PAUSE = (64, 256 * 1024)


class Client:
    """A milter server: handlers connected here reach every connection's context.

    ``spec`` is where to listen (see :func:`~milterkit.server.spec.parse_spec`); when systemd
    passed sockets (``LISTEN_FDS``) and ``socket_activation`` is true, those are used instead.
    ``timeout`` is the inactivity timeout of a connection in seconds (None: none).
    ``exception_policy`` / ``exception_reply`` say what a handler's exception becomes.
    ``max_connections`` caps concurrent connections (further ones wait in the listen backlog);
    ``progress_interval`` sends a progress keep-alive that often while a coroutine handler runs;
    ``handler_deadline`` (seconds, None: none) cancels a coroutine handler that runs longer and
    lets the exception policy answer (keep-alives never extend it).
    ``backlog_pause`` (packets, bytes) is how much may wait for a pending handler before the
    connection stops reading; ``max_backlog`` (packets, bytes) is the hard bound past which the
    MTA's flood is a protocol error (see docs/reliability).
    ``actions``, ``protocol``, ``macro_requests`` and ``max_payload`` go to every context;
    ``context_class`` may be a :class:`ClientContext` subclass with ``do_*`` methods.
    ``quickack`` (Linux, TCP only) re-arms ``TCP_QUICKACK`` after each read that wrote nothing,
    so a Nagle-delayed MTA never waits for our delayed ACK (see :mod:`milterkit.server.tcp`).
    ``threads`` runs every plain ``def`` handler in a pool of that many threads (each
    connection's handlers still one after the other); without it only handlers marked
    :func:`milterkit.blocking` run in a pool (see :mod:`milterkit.blocking`).
    """

    def __init__(
        self,
        spec: str | ConnectionSpec = DEFAULT_SPEC,
        *,
        timeout: float | None = 7210.0,
        exception_policy: Status | None = Status.TEMPORARY_FAILURE,
        exception_reply: str | None = DEFAULT_EXCEPTION_REPLY,
        max_connections: int | None = None,
        progress_interval: float | None = None,
        socket_mode: int | None = 0o660,
        socket_group: str | int | None = None,
        backlog: int = socket.SOMAXCONN,
        actions: ActionFlag | None = None,
        protocol: ProtocolFlag | None = None,
        macro_requests: Mapping[MacroStage, Sequence[str]] | None = None,
        max_payload: int = DEFAULT_MAX_PAYLOAD,
        context_class: type[ClientContext] = ClientContext,
        shutdown_timeout: float = 30.0,
        socket_activation: bool = True,
        handler_deadline: float | None = None,
        backlog_pause: tuple[int, int] = DEFAULT_BACKLOG_PAUSE,
        max_backlog: tuple[int, int] = DEFAULT_MAX_BACKLOG,
        quickack: bool = True,
        threads: int | None = None,
    ) -> None:
        #: The pool blocking handlers run in; :meth:`shutdown` stops it.
        self.handler_threads = HandlerThreads(threads)
        self.spec = parse_spec(spec) if isinstance(spec, str) else spec
        if handler_deadline is not None and handler_deadline <= 0:
            raise ValueError(f"handler_deadline must be positive, not {handler_deadline}")
        if min(backlog_pause) < 1:
            raise ValueError(f"backlog_pause must be positive (packets, bytes), not "
                             f"{backlog_pause}")
        if max_connections is not None and max_connections < 1:
            raise ValueError(f"max_connections must be at least 1, not {max_connections}")
        if progress_interval is not None and progress_interval <= 0:
            raise ValueError(f"progress_interval must be positive, not {progress_interval}")
        self.timeout = timeout
        self.max_connections = max_connections
        self.progress_interval = progress_interval
        #: Seconds a coroutine handler may run before it is cancelled (None: no deadline).
        self.handler_deadline = handler_deadline
        #: ``(packets, bytes)`` waiting for a pending handler at which a connection stops reading.
        self.backlog_pause = (int(backlog_pause[0]), int(backlog_pause[1]))
        self.socket_mode = socket_mode
        self.socket_group = socket_group
        self.backlog = backlog
        self.context_class = context_class
        #: Seconds :meth:`shutdown` lets sessions in flight finish before closing them.
        self.shutdown_timeout = shutdown_timeout
        #: Seconds :meth:`shutdown` waits for the sessions it aborted at its deadline to report
        #: closed; those that have not by then are logged and left behind.
        self.abort_timeout = 5.0
        self.socket_activation = socket_activation
        #: Re-arm TCP_QUICKACK on accepted TCP connections (Linux); read at each accept.
        self.quickack = quickack
        #: Keyword arguments of every context (``actions``, ``protocol``, ``macro_requests``...);
        #: a ``setup(client)`` function may change them before the client starts.
        self.context_options: dict[str, Any] = dict(
            actions=actions, protocol=protocol, macro_requests=macro_requests,
            max_payload=max_payload, exception_policy=exception_policy,
            exception_reply=exception_reply, timeout=timeout if timeout is not None else 0.0,
            max_backlog=max_backlog,
        )
        # Validate the context options now, not on the first connection.
        context_class(lambda data: None, tag=0, **self.context_options)
        #: The parent table of every context's signals.
        self.signals = SignalTable(SIGNAL_NAMES, arguments=SIGNAL_ARGUMENTS)
        self._client_signals = SignalTable(CLIENT_SIGNAL_NAMES)
        #: The runtime's own handlers of every connection's context, connected once.
        self.session_signals = SessionSignals(self.signals)
        #: The listening sockets (set by :meth:`bind` or :meth:`start`).
        self.listeners: list[Listener] = []
        #: Open connections.
        self.connections: set[Connection] = set()
        #: Sessions served so far.
        self.served = 0
        #: 0 in a single process; 1..N in a pre-forked worker.
        self.worker_id = 0
        #: Whether closing removes the unix socket files (a worker leaves that to its master).
        self.unlink_on_close = True
        self._accepting: list[Acceptor] = []
        self._background: set[asyncio.Task[None]] = set()
        self._idle: asyncio.Event | None = None
        self._closed: asyncio.Event | None = None
        self._closing = False
        self._full_logged = False

    # ------------------------------------------------------------------ signals

    def connect(self, name: str, handler: F) -> F:
        """Connect ``handler`` to a context signal (``handler(context, *args)``, for every
        connection) or to a client signal (``handler(client, *args)``); returns the handler."""
        if name in CLIENT_SIGNAL_NAMES:
            return self._client_signals.connect(name, handler)
        return self.signals.connect(name, handler)

    def disconnect(self, name: str, handler: Callable[..., Any]) -> None:
        """Disconnect ``handler`` from ``name``."""
        if name in CLIENT_SIGNAL_NAMES:
            self._client_signals.disconnect(name, handler)
        else:
            self.signals.disconnect(name, handler)

    def on(self, name: str) -> Callable[[F], F]:
        """Decorator form of :meth:`connect`: ``@client.on("envelope-from")``."""
        return lambda handler: self.connect(name, handler)

    def emit(self, name: str, *args: Any) -> None:
        """Emit a client signal; a handler that raises is logged, never fatal."""
        for receiver in self._client_signals.receivers(name, self):
            try:
                receiver(self, *args)
            except Exception:
                log.exception("handler of client signal %r raised", name)

    def create_context(self, write: Callable[[bytes], object]) -> ClientContext:
        """A new context writing to ``write``, with this client's options and handlers."""
        context = self.context_class(write, signals=self.signals, **self.context_options)
        context.client = self
        return context

    # ------------------------------------------------------------------ listening

    def bind(self) -> list[Listener]:
        """Open the listening sockets now (systemd's, else the spec's); idempotent.

        Binding before the event loop starts is what lets pre-forked workers share sockets.
        """
        if not self.listeners:
            found = listen.systemd_listeners() if self.socket_activation else []
            if found:
                log.info("using %d socket(s) passed by systemd; ignoring %s", len(found), self.spec)
            else:
                found = [listen.bind(self.spec, backlog=self.backlog,
                                     socket_mode=self.socket_mode, socket_group=self.socket_group)]
            self.listeners = found
        return self.listeners

    @property
    def address(self) -> Any:
        """The first listening socket's address: ``(host, port)`` or a path."""
        if not self.listeners:
            raise RuntimeError("the client is not listening yet (call bind() or start())")
        return self.listeners[0].sock.getsockname()

    @property
    def address_spec(self) -> str:
        """The first listening socket as a connection spec (``inet:41234@[127.0.0.1]``)."""
        if not self.listeners:
            raise RuntimeError("the client is not listening yet (call bind() or start())")
        return self.listeners[0].name

    async def start(self) -> None:
        """Bind (unless done) and start accepting connections; returns at once."""
        if self._closed is not None:
            raise RuntimeError("a Client can be started once")
        self._idle = asyncio.Event()
        self._idle.set()
        self._closed = asyncio.Event()
        hooks = ConnectionHooks(opened=self._connection_made, closed=self._connection_lost)
        factory = connection_factory(self, hooks, asyncio.get_running_loop())
        for listener in self.bind():
            acceptor = Acceptor(listener.sock, listener.name, factory, room=self._room,
                                on_full=self._on_full, closing=lambda: self._closing)
            self._accepting.append(acceptor)
            acceptor.start()
            log.info("listening on %s", listener.name)
            self.emit("listen-started", listener.sock.getsockname())

    async def serve_forever(self) -> None:
        """Start if needed and serve until :meth:`shutdown` completes."""
        if self._closed is None:
            await self.start()
        assert self._closed is not None
        await self._closed.wait()

    def _room(self) -> int | None:
        # How many more connections may be opened now; those still starting count as open.
        if self.max_connections is None:
            return None
        starting = sum(acceptor.starting for acceptor in self._accepting)
        return self.max_connections - len(self.connections) - starting

    def _on_full(self) -> None:
        if not self._full_logged:
            # Connections accepted and still being started count: the limit holds for them.
            log.warning("%d connections open or being opened, the maximum: not accepting more "
                        "for now", self.max_connections)
            self._full_logged = True

    def become_worker(self, worker_id: int) -> None:
        """Serve as worker ``worker_id`` (1..N) of a :class:`~milterkit.server.Supervisor`:
        :attr:`worker_id` says so to handlers and logs, and the unix socket files are left to
        the master, which made them and removes them."""
        if worker_id < 1:
            raise ValueError(f"a worker's id is 1 or more, not {worker_id}")
        self.worker_id = worker_id
        self.unlink_on_close = False

    def _connection_made(self, connection: Connection) -> None:
        self.connections.add(connection)
        assert self._idle is not None
        self._idle.clear()
        if self._closing:
            connection.close("shutdown")  # accepted just before the listener closed
            return
        # Not emit(): a handler that raises must fail this connection (see Connection).
        for receiver in self._client_signals.receivers("connection-established", self):
            receiver(self, connection.context)

    def _connection_lost(self, connection: Connection) -> None:
        self.connections.discard(connection)
        self.served += 1
        self.emit("connection-finished", connection.context)
        assert self._idle is not None
        if self._full_logged and (
            self.max_connections is None or len(self.connections) < self.max_connections
        ):
            self._full_logged = False
        for acceptor in self._accepting:
            acceptor.resume()
        if not self.connections:
            self._idle.set()

    # ------------------------------------------------------------------ shutdown

    def stop_accepting(self) -> None:
        """Stop accepting and close the listening sockets; open connections go on."""
        for acceptor in self._accepting:
            acceptor.close()
        self._accepting.clear()
        for listener in self.listeners:
            listener.close(unlink=self.unlink_on_close)

    async def shutdown(self, deadline: float | None = None) -> None:
        """Stop accepting, let sessions in flight finish for ``deadline`` seconds (default
        :attr:`shutdown_timeout`), then close those still open. Calling it again while it waits
        closes them at once."""
        if self._closed is None:
            self.stop_accepting()
            await self.handler_threads.shutdown(self.abort_timeout)
            return
        if self._closing:
            log.info("shutting down now: closing %d session(s)", len(self.connections))
            for connection in list(self.connections):
                connection.abort("shutdown")
            await self._closed.wait()
            return
        self._closing = True
        self.stop_accepting()
        assert self._idle is not None
        wait = self.shutdown_timeout if deadline is None else deadline
        try:
            if self.connections:
                await self._drain(wait)
        finally:
            # Whatever happened above (even a cancellation), serve_forever must return.
            try:
                await self.handler_threads.shutdown(self.abort_timeout)
            finally:
                log.info("shut down (%d session(s) served)", self.served)
                self._closed.set()

    async def _drain(self, wait: float) -> None:
        assert self._idle is not None
        log.info("shutting down: waiting up to %g s for %d session(s) in flight",
                 wait, len(self.connections))
        try:
            await asyncio.wait_for(self._idle.wait(), wait)
            return
        except asyncio.TimeoutError:
            pass
        log.warning("shutdown deadline passed: closing %d session(s)", len(self.connections))
        for connection in list(self.connections):
            connection.abort("shutdown")
        # connection_lost runs on the next loop iterations; one that never reports (a context
        # that raises in it) must not keep serve_forever from returning.
        try:
            await asyncio.wait_for(self._idle.wait(), self.abort_timeout)
        except asyncio.TimeoutError:
            log.error("%d session(s) did not report closed %g s after being aborted; shutting "
                      "down without them: %s", len(self.connections), self.abort_timeout,
                      ", ".join(connection.describe() for connection in self.connections))

    def install_signal_handlers(self) -> None:
        """Shut down on SIGTERM and SIGINT (a second one closes sessions at once)."""
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, self._on_signal, signum)

    def _on_signal(self, signum: int) -> None:
        log.info("received %s", signal.Signals(signum).name)
        self.request_shutdown()

    def request_shutdown(self) -> None:
        """Start :meth:`shutdown` in the background (from a signal handler or a callback)."""
        task = asyncio.get_running_loop().create_task(self.shutdown())
        self._background.add(task)  # keep a reference until it is done
        task.add_done_callback(self._background.discard)

    def run(self, *, workers: int = 1, loop: str = "auto") -> None:
        """Serve until SIGTERM or SIGINT: blocking, with its own event loop.

        ``workers`` > 1 pre-forks that many processes sharing the sockets (see
        :mod:`milterkit.server.workers`); ``loop`` is ``auto``, ``asyncio`` or ``uvloop``.
        """
        from .loop import run as run_loop

        if workers > 1:
            from .workers import Supervisor

            Supervisor(self, workers, loop=loop).run()
            return
        self.bind()
        run_loop(self._serve_with_signals(), loop, serving=True)

    async def _serve_with_signals(self) -> None:
        self.install_signal_handlers()
        await self.serve_forever()

    async def __aenter__(self) -> Client:
        await self.start()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.shutdown(self.shutdown_timeout if exc is None else 0.0)
