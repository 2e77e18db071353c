"""An asynchronous lookup, coroutine form: an ``async def`` handler checks each recipient in a
directory that takes time to answer; while it waits, other connections are served.

Unknown recipients get ``550 5.1.1 No such user here``; known ones (``KNOWN_USERS``) pass.
The runtime answers the MTA when the coroutine returns (PROGRESS under the hood), and sends
progress keep-alives meanwhile if the Client has ``progress_interval`` set.

Run it:  milterkit run examples/async_lookup.py --progress-interval 10
"""

from __future__ import annotations

import asyncio

from milterkit import Client, ClientContext, Status

KNOWN_USERS = frozenset({"alice@example.com", "bob@example.com"})
#: How long the pretend directory takes to answer, in seconds.
LOOKUP_DELAY = 0.05


async def lookup(address: str) -> bool:
    """Stands for an LDAP, SQL or HTTP query: any awaitable works."""
    await asyncio.sleep(LOOKUP_DELAY)
    return address in KNOWN_USERS


async def check_recipient(context: ClientContext, address: str) -> Status | None:
    if await lookup(address.strip("<>").lower()):
        return None
    return context.reject("550", "5.1.1", "No such user here")


def setup(client: Client) -> None:
    """Connect the filter's handlers to ``client``."""
    client.connect("envelope-recipient", check_recipient)


if __name__ == "__main__":
    import logging

    logging.basicConfig(level=logging.INFO)
    main = Client()
    setup(main)
    main.run()
