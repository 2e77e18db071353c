"""The thread pool that runs blocking handlers off the event loop (see :mod:`milterkit.blocking`).

The context hands a handler to :meth:`HandlerThreads.hook`'s function instead of calling it; the
coroutine it gets back runs the handler in the pool and is awaited like a coroutine handler's, so
the connection's next handler (and next command) waits for it while the loop serves the others.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import functools
import inspect
import logging
import os
from collections.abc import Callable
from typing import Any

from ..blocking import OffloadHook

log = logging.getLogger("milterkit.server")

#: Threads of the pool when only marked handlers use it (``threads`` not given): the
#: standard library's default for I/O-bound work.
DEFAULT_THREADS = min(32, (os.cpu_count() or 1) + 4)


class HandlerThreads:
    """A lazily started thread pool of ``size`` threads; ``every_plain_handler`` says whether
    every plain ``def`` handler runs in it (``threads=N``) or only the marked ones."""

    def __init__(self, size: int | None) -> None:
        if size is not None and size < 1:
            raise ValueError(f"threads must be at least 1, not {size}")
        self.every_plain_handler = size is not None
        self.size = size if size is not None else DEFAULT_THREADS
        self._pool: concurrent.futures.ThreadPoolExecutor | None = None
        self._closed = False

    @property
    def started(self) -> bool:
        """Whether the pool's threads exist (it starts at the first blocking handler)."""
        return self._pool is not None

    def hook(self, loop: asyncio.AbstractEventLoop) -> OffloadHook:
        """The context's ``offload_hook`` for a connection served on ``loop``."""
        return functools.partial(self._run, loop)

    async def _run(
        self, loop: asyncio.AbstractEventLoop, handler: Callable[..., Any], args: tuple[Any, ...],
    ) -> Any:
        result = await loop.run_in_executor(self._executor(), functools.partial(handler, *args))
        if inspect.isawaitable(result):  # a plain def that returned a coroutine
            result = await result
        return result

    def _executor(self) -> concurrent.futures.ThreadPoolExecutor:
        if self._closed:
            raise RuntimeError("the client's handler threads are shut down")
        if self._pool is None:
            self._pool = concurrent.futures.ThreadPoolExecutor(
                max_workers=self.size, thread_name_prefix="milterkit-handler")
        return self._pool

    async def shutdown(self, wait: float) -> None:
        """Stop the pool: queued handlers are dropped, running ones get ``wait`` seconds."""
        self._closed = True
        pool, self._pool = self._pool, None
        if pool is None:
            return
        pool.shutdown(wait=False, cancel_futures=True)
        try:
            await asyncio.wait_for(asyncio.to_thread(pool.shutdown, True), wait)
        except asyncio.TimeoutError:
            log.warning("handler threads still running %g s after shutdown: leaving them", wait)
