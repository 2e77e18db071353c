"""A blocking lookup, thread form: a plain ``def`` handler that blocks (here a pretend DNS
blocklist query that sleeps) runs in the runtime's thread pool, so other connections are served
while it waits. Each connection's handlers still run one after the other, in order.

``@milterkit.blocking`` marks the one handler that blocks; ``milterkit run --threads N`` would
instead put every plain ``def`` handler in a pool of N threads, except those marked
``@milterkit.on_loop`` (quick ones that only look at the message). See docs/blocking.rst.

A sender whose domain is listed in ``BLOCKED_DOMAINS`` gets ``550 5.7.1 Sender domain is
blocklisted``; other messages get an ``X-Blocklist: checked`` header.

Run it:  milterkit run examples/blocking_lookup.py --threads 8
"""

from __future__ import annotations

import time

import milterkit
from milterkit import Client, ClientContext, Status

BLOCKED_DOMAINS = frozenset({"spam.example", "phish.example"})
#: How long the pretend DNS query takes, in seconds (a real one: socket.getaddrinfo, dnspython).
LOOKUP_DELAY = 0.02


def listed(domain: str) -> bool:
    """Stands for a synchronous DNS blocklist query (``dns.resolver.resolve``...)."""
    time.sleep(LOOKUP_DELAY)  # blocks the calling thread: in the pool, not the event loop
    return domain in BLOCKED_DOMAINS


@milterkit.blocking
def check_sender(context: ClientContext, address: str) -> Status | None:
    domain = address.strip("<>").rpartition("@")[2].lower()
    if listed(domain):
        return context.reject("550", "5.7.1", "Sender domain is blocklisted")
    return None


@milterkit.on_loop
def stamp(context: ClientContext, chunk: bytes) -> None:
    context.add_header("X-Blocklist", "checked")


def setup(client: Client) -> None:
    """Connect the filter's handlers to ``client``."""
    client.connect("envelope-from", check_sender)
    client.connect("end-of-message", stamp)
