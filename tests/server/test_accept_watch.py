"""The accept loop watches its listener once, not once per connection (issue 15): a
register/unregister pair per accept was a few system calls and turns of the loop for every MTA
connection."""

from __future__ import annotations

import asyncio
import selectors
from typing import Any

from serverlib import serving, session

from milterkit.protocol.replies import Continue

SESSIONS = 20


class CountingSelector(selectors.DefaultSelector):
    """The standard selector, counting how often each file descriptor is registered."""

    def __init__(self) -> None:
        super().__init__()
        self.registered: dict[int, int] = {}

    def register(self, fileobj: Any, events: int, data: Any = None) -> selectors.SelectorKey:
        key = super().register(fileobj, events, data)
        self.registered[key.fd] = self.registered.get(key.fd, 0) + 1
        return key


def test_the_listener_is_watched_once_for_many_sessions() -> None:
    # The standard loop with a selector of our own, whatever MILTERKIT_TEST_LOOP says (the
    # accept code is the same on uvloop).
    selector = CountingSelector()
    loop = asyncio.SelectorEventLoop(selector)

    async def scenario() -> int:
        async with serving() as client:
            listener = client.listeners[0].sock.fileno()
            for _ in range(SESSIONS):
                (outcome,) = await session(client.address_spec)
                assert outcome.verdict == Continue()
            return listener

    try:
        listener = loop.run_until_complete(asyncio.wait_for(scenario(), 30))
    finally:
        loop.close()
    watched = selector.registered.get(listener, 0)
    assert watched == 1, f"the listener was registered {watched} times for {SESSIONS} sessions"
