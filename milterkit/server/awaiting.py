"""One way to await a coroutine handler, for the runtime, ``InProcess`` and replay alike.

A context hands the awaitable a handler returned to its ``await_hook`` with a ``done(result,
error)`` callback. :func:`task_outcome` is the one rule that turns the finished task into that
pair: a result, the exception the handler raised, or, for a task that was cancelled before it
gave a status, :class:`HandlerCancelled`, which the context's exception policy answers like any
other failure (never a silent CONTINUE).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

#: The context's callback: ``done(result, error)``.
Done = Callable[[Any, "BaseException | None"], None]


class HandlerCancelled(RuntimeError):
    """A coroutine handler's task was cancelled before it gave a status."""


class DeadlineExceeded(HandlerCancelled):
    """A coroutine handler ran past the Client's ``handler_deadline`` and was cancelled; the
    exception policy answers for it."""


def task_outcome(task: asyncio.Future[Any]) -> tuple[Any, BaseException | None]:
    """``(result, error)`` of a finished task, by the one cancellation rule."""
    if task.cancelled():
        return None, HandlerCancelled("the coroutine handler was cancelled")
    error = task.exception()
    return (None, error) if error is not None else (task.result(), None)


def await_hook(awaitable: Awaitable[Any], done: Done) -> None:
    """A context's ``await_hook``: run ``awaitable`` as a task on the running loop and call
    ``done`` with its outcome."""
    task = asyncio.ensure_future(awaitable)
    task.add_done_callback(lambda finished: done(*task_outcome(finished)))
