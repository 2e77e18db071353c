"""``Metrics``: Prometheus metrics of one :class:`~milterkit.server.Client`, fed by its signals.

Nothing in the runtime knows about metrics: :meth:`Metrics.install` connects handlers to the
Client's own signals (connections) and to the context signals every connection emits (the
``*-response`` signals carry the status each stage answered with).
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.exposition import generate_latest

from ..blocking import on_loop
from ..protocol.errors import RemoteProtocolError
from ..stages import ABORT, NEGOTIATE, STAGES
from ..status import Status

if TYPE_CHECKING:
    from ..context import ClientContext
    from ..result import MessageResult
    from ..server.client import Client

__all__ = ["LATENCY_BUCKETS", "Metrics"]

#: Upper bounds (seconds) of the handler latency histogram's buckets.
LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
                   5.0, 10.0, 30.0)
#: The client signal another part of milterkit emits when the accept loop pauses on a full
#: backlog; counted when this version of the Client has it.
BACKLOG_PAUSED = "backlog-paused"


class Metrics:
    """The metrics of a Client, in ``registry`` (a new
    :class:`prometheus_client.CollectorRegistry` unless given), every name starting with
    ``namespace_``:

    - ``connections_open`` (gauge) and ``connections_total``: MTA connections;
    - ``verdicts_total{stage, status}``: every reply written, by stage (``envelope-recipient``)
      and status nick (``temporary-failure``; "no opinion" is ``continue``);
    - ``messages_total{status}``: messages whose end of message was answered;
    - ``handler_seconds{stage}`` (histogram): from the first handler of a stage to its reply,
      coroutine handlers' waiting included;
    - ``protocol_errors_total``: connections ended because the MTA broke the protocol;
      ``handler_errors_total``: handler exceptions turned into the exception policy;
      ``timeouts_total``: connections closed by the inactivity timeout;
    - ``backlog_pauses_total``: times the Client paused accepting because its backlog was full
      (only where the Client emits ``backlog-paused``).
    """

    def __init__(self, registry: CollectorRegistry | None = None, *,
                 namespace: str = "milterkit") -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        r, ns = self.registry, namespace
        self.connections_open = Gauge("connections_open", "MTA connections open now",
                                      namespace=ns, registry=r)
        self.connections = Counter("connections", "MTA connections accepted", namespace=ns,
                                   registry=r)
        self.verdicts = Counter("verdicts", "Replies written, by stage and status",
                                ["stage", "status"], namespace=ns, registry=r)
        self.messages = Counter("messages", "Messages whose end of message was answered, by "
                                "status", ["status"], namespace=ns, registry=r)
        self.handler_seconds = Histogram("handler_seconds", "Time from a stage's first handler "
                                         "to its reply", ["stage"], namespace=ns, registry=r,
                                         buckets=LATENCY_BUCKETS)
        self.protocol_errors = Counter("protocol_errors", "Connections ended by a protocol "
                                       "error of the MTA", namespace=ns, registry=r)
        self.handler_errors = Counter("handler_errors", "Handler exceptions", namespace=ns,
                                      registry=r)
        self.timeouts = Counter("timeouts", "Connections closed by the inactivity timeout",
                                namespace=ns, registry=r)
        self.backlog_pauses = Counter("backlog_pauses", "Pauses of the accept loop on a full "
                                      "backlog", namespace=ns, registry=r)
        #: Whether the installed Client emits ``backlog-paused`` (so the counter means anything).
        self.counts_backlog_pauses = False
        self._verdicts: dict[tuple[str, Status], Any] = {}
        self._latency: dict[str, Any] = {}
        self._started: dict[ClientContext, float] = {}

    # ------------------------------------------------------------------ wiring

    def install(self, client: Client) -> None:
        """Connect to ``client``'s signals. Call it after the filter's ``setup(client)``: the
        latency of a stage is measured only if the stage has handlers by then (a stage nobody
        handles is never sent by the MTA, and connecting a timer to it would change that)."""
        from ..server.client import CLIENT_SIGNAL_NAMES

        client.connect("connection-established", self._opened)
        client.connect("connection-finished", self._closed)
        if BACKLOG_PAUSED in CLIENT_SIGNAL_NAMES:
            client.connect(BACKLOG_PAUSED, self._paused)
            self.counts_backlog_pauses = True
        for stage in STAGES.values():
            if stage is ABORT:
                continue
            if stage is NEGOTIATE:
                client.connect(stage.response, self._negotiated)
            else:
                client.connect(stage.response, self._responder(stage.name))
            overridden = getattr(client.context_class, stage.method, None) is not getattr(
                _base_context(), stage.method, None)
            if stage is not NEGOTIATE and (client.signals.has_receivers(stage.name)
                                           or overridden):
                self._time_first(client, stage.name)
        client.connect("message-processed", self._processed)
        client.connect("error", self._error)
        client.connect("timeout", self._timeout)

    def _time_first(self, client: Client, name: str) -> None:
        # The timer must run before the filter's handlers: reconnect those after it, in order.
        signal = client.signals.signal(name)
        handlers = list(client.signals.receivers(name, None))
        for handler in handlers:
            signal.disconnect(handler)
        client.signals.connect(name, on_loop(self._start))  # a timer: no thread under --threads
        for handler in handlers:
            client.signals.connect(name, handler)

    def render(self) -> bytes:
        """The metrics in the Prometheus text format."""
        return generate_latest(self.registry)

    # ------------------------------------------------------------------ handlers

    def _opened(self, client: Client, context: ClientContext) -> None:
        self.connections_open.inc()
        self.connections.inc()

    def _closed(self, client: Client, context: ClientContext) -> None:
        self.connections_open.dec()
        self._started.pop(context, None)

    def _paused(self, client: Client, *args: Any) -> None:
        self.backlog_pauses.inc()

    def _start(self, context: ClientContext, *args: Any) -> None:
        self._started[context] = time.perf_counter()

    def _count(self, stage: str, status: Status) -> None:
        child = self._verdicts.get((stage, status))
        if child is None:
            child = self._verdicts[stage, status] = self.verdicts.labels(stage, status.nick)
        child.inc()

    def _responder(self, stage: str) -> Any:
        def respond(context: ClientContext, status: Status) -> None:
            self._count(stage, status)
            begun = self._started.pop(context, None)
            if begun is not None:
                histogram = self._latency.get(stage)
                if histogram is None:
                    histogram = self._latency[stage] = self.handler_seconds.labels(stage)
                histogram.observe(time.perf_counter() - begun)
        return respond

    def _negotiated(self, context: ClientContext, option: Any, requests: Any,
                    status: Status) -> None:
        self._count("negotiate", status)

    def _processed(self, context: ClientContext, result: MessageResult) -> None:
        self.messages.labels(result.status.nick).inc()

    def _error(self, context: ClientContext, error: BaseException) -> None:
        if isinstance(error, RemoteProtocolError):
            self.protocol_errors.inc()
        else:
            self.handler_errors.inc()

    def _timeout(self, context: ClientContext) -> None:
        self.timeouts.inc()


def _base_context() -> type:
    from ..context import ClientContext

    return ClientContext
