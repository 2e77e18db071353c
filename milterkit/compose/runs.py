"""Calling one filter's handlers for one stage, synchronously or through coroutines.

Inside one filter the handlers combine as on a plain context (milter-manager's accumulator:
None is transparent, the first decisive status wins); a coroutine is awaited, and the filter's
remaining handlers run after it.
"""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

from ..blocking import runs_in_thread
from ..context import StatusError
from ..status import PASSING, Status

Receivers = Iterator[Callable[..., Any]]


def coerce(stage: str, result: Any) -> Status:
    """A handler's result as a Status (None is NOT_CHANGE)."""
    if result is None:
        return Status.NOT_CHANGE
    if isinstance(result, Status):
        return result
    if isinstance(result, int) and not isinstance(result, bool):
        try:
            return Status(result)
        except ValueError:
            pass
    raise StatusError(f"a handler of {stage!r} returned {result!r}; return a milterkit.Status "
                      "or None")


def run_receivers(
    stage: str, view: Any, receivers: Receivers, args: tuple[Any, ...],
    status: Status = Status.DEFAULT,
) -> Status | Awaitable[Status]:
    """Run handlers until one is decisive; an awaitable result hands the rest to a coroutine.

    A blocking handler (:func:`milterkit.blocking`, or any plain def under ``threads=N``) goes
    to the runtime's thread pool through the connection's ``offload_hook``."""
    offload = getattr(view, "offload_hook", None)
    every = bool(getattr(view, "offload_all", False))
    for receiver in receivers:
        if offload is not None and runs_in_thread(receiver, every):
            result = offload(receiver, (view, *args))
        else:
            result = receiver(view, *args)
        if result is not None and not isinstance(result, Status) and inspect.isawaitable(result):
            return _resume(stage, view, receivers, args, status, result)
        found = coerce(stage, result)
        if found is Status.NOT_CHANGE:
            continue
        status = found
        if status not in PASSING:
            return status
    return status


async def _resume(
    stage: str, view: Any, receivers: Receivers, args: tuple[Any, ...], status: Status,
    awaitable: Awaitable[Any],
) -> Status:
    found = coerce(stage, await awaitable)
    if found is not Status.NOT_CHANGE:
        status = found
    if status not in PASSING:
        return status
    rest = run_receivers(stage, view, receivers, args, status)
    if isinstance(rest, Status):
        return rest
    return await rest
