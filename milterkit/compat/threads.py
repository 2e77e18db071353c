"""Run a compat application's blocking callbacks in threads, off milterkit's event loop.

Old milter libraries (pymilter's libmilter) give every MTA connection its own thread, and real
applications rely on it: they block in DNS lookups, file I/O and sleeps. :class:`ConnectionThread`
gives one connection one worker thread, so its callbacks run strictly in order (an ABORT's
callback, which the MTA does not wait for, still runs before the next message's) while other
connections' callbacks run on their own threads and the event loop keeps moving bytes.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import itertools
from collections.abc import Callable
from typing import Any, TypeVar

T = TypeVar("T")
_numbers = itertools.count(1)


class ConnectionThread:
    """One worker thread per connection, created on first use, ended by :meth:`close`.

    :meth:`run` returns an asyncio future for a milterkit coroutine-style handler to return:
    the context waits for it and replies with its result, exactly as for a coroutine.
    """

    def __init__(self, name: str = "milter") -> None:
        self._executor = concurrent.futures.ThreadPoolExecutor(
            max_workers=1, thread_name_prefix=f"{name}-{next(_numbers)}"
        )
        self._closed = False

    def run(self, function: Callable[..., T], *args: Any) -> asyncio.Future[T]:
        """Queue ``function(*args)`` after this connection's earlier calls (loop thread only)."""
        return asyncio.wrap_future(self._executor.submit(function, *args))

    def submit(self, function: Callable[..., Any], *args: Any) -> None:
        """Queue a call nobody waits for (an abort or close callback); it still runs in order."""
        if not self._closed:
            self._executor.submit(function, *args)

    def close(self) -> None:
        """Let queued calls finish, then end the thread; returns at once."""
        self._closed = True
        self._executor.shutdown(wait=False)
