"""``pymilter_filter.py`` ported to milterkit's own API: the same behaviour, as signal handlers.

    milterkit run examples/compat/ported_filter.py -l inet:9900@127.0.0.1

Each pymilter callback becomes a handler of the matching signal; per-message state goes on
``context.shelf`` (cleared when the transaction ends) instead of the per-connection object; a
verdict is returned as a :class:`~milterkit.Status`, with ``context.reject`` setting the reply.
A blocking call belongs in an ``async def`` handler (or a thread); here none is needed.
"""

from __future__ import annotations

import itertools

from milterkit import ACCEPT, Client, ClientContext, Status

_connections = itertools.count(1)


def number_connection(context: ClientContext, hostname: str, address: object) -> None:
    context.connection_data["id"] = next(_connections)


def remember_domain(context: ClientContext, address: str) -> None:
    _user, at, domain = address.strip("<>").rpartition("@")
    context.shelf["domain"] = domain if at else "local"


def refuse_blocked(context: ClientContext, address: str) -> Status | None:
    if address.strip("<>").rpartition("@")[2] == "blocked.example":
        return context.reject("550", "5.7.1", ["Recipient refused", "by the pymilter-style filter"])
    return None


def stamp(context: ClientContext, chunk: bytes) -> Status:
    number = context.connection_data.get("id", 0)
    domain = context.shelf.get("domain", "unknown")
    context.add_header("X-Checked-By", f"pymilter-style filter #{number} ({domain})")
    return ACCEPT


def setup(client: Client) -> None:
    """Connect the filter's handlers to ``client``."""
    client.connect("connect", number_connection)
    client.connect("envelope-from", remember_domain)
    client.connect("envelope-recipient", refuse_blocked)
    client.connect("end-of-message", stamp)
