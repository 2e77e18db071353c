"""Rate limiting with shared state, and a Prometheus endpoint in your own program.

Each SMTP client address may start ``RATE_LIMIT`` messages (default 100) per ``RATE_WINDOW``
seconds (default 60); further ``MAIL FROM`` commands in the window get ``451 4.7.0``. The
counters are :meth:`~milterkit.store.Store.incr` with a TTL (a fixed window), in the store
``RATE_LIMIT_STORE`` names: ``memory:`` (default; per process) or ``redis://HOST:PORT/DB``,
where every instance behind a load balancer counts against the same limit.

Run it under ``milterkit run examples/rate_limit.py --metrics-listen 127.0.0.1:9101``, or on
its own (``python examples/rate_limit.py``): then it serves on ``RATE_LIMIT_LISTEN`` (default
``inet:10025@127.0.0.1``) and puts its metrics on ``RATE_LIMIT_METRICS`` (default
``127.0.0.1:9101``) itself, as an embedding program would.
"""

from __future__ import annotations

import logging
import os

from milterkit import TEMPFAIL, Client, ClientContext, SocketAddress, Status
from milterkit.metrics import Metrics, MetricsError, MetricsServer, enable_metrics
from milterkit.store import MemoryStore, RedisStore, Store

log = logging.getLogger("rate_limit")


class RateLimit:
    """At most ``limit`` messages per ``window`` seconds per client address, counted in
    ``store``."""

    def __init__(self, store: Store, limit: int = 100, window: float = 60.0) -> None:
        self.store = store
        self.limit = limit
        self.window = window

    def install(self, client: Client) -> None:
        """Connect the handlers to ``client``."""
        client.connect("connect", self.remember_address)
        client.connect("envelope-from", self.count)

    def remember_address(self, context: ClientContext, hostname: str,
                         address: SocketAddress) -> None:
        context.connection_data["client"] = address.address or hostname

    async def count(self, context: ClientContext, sender: str) -> Status | None:
        who = context.connection_data.get("client", "unknown")
        sent = await self.store.incr(f"rate:{who}", ttl=self.window)
        if sent > self.limit:
            log.info("[%s] %s: %d messages in %g s, over the limit of %d", context.tag, who,
                     sent, self.window, self.limit)
            context.set_reply("451", "4.7.0", "Too many messages, slow down")
            return TEMPFAIL
        return None


def store_from_environment() -> Store:
    """``RATE_LIMIT_STORE``: ``memory:`` or a Redis URL."""
    url = os.environ.get("RATE_LIMIT_STORE", "memory:")
    if url.startswith(("redis://", "rediss://", "unix://")):
        return RedisStore(url, prefix="milterkit:ratelimit:")
    return MemoryStore()


def setup(client: Client) -> None:
    """Connect a rate limit configured from the environment to ``client``."""
    limit = RateLimit(store_from_environment(), int(os.environ.get("RATE_LIMIT", "100")),
                      float(os.environ.get("RATE_WINDOW", "60")))
    limit.install(client)


def serve() -> None:
    """Serve on our own, with the metrics endpoint (what ``--metrics-listen`` does)."""
    client = Client(os.environ.get("RATE_LIMIT_LISTEN", "inet:10025@127.0.0.1"))
    setup(client)
    metrics = Metrics()
    try:
        endpoint: MetricsServer = enable_metrics(
            client, os.environ.get("RATE_LIMIT_METRICS", "127.0.0.1:9101"), metrics)
    except MetricsError as exc:
        raise SystemExit(f"rate_limit: {exc}") from None
    host, port = endpoint.address
    log.info("metrics on http://%s:%d/metrics", host, port)
    client.run()


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO)
    serve()
