"""Which handlers run off the event loop: the :func:`blocking` and :func:`on_loop` markers.

A handler that blocks (a synchronous DNS or SPF lookup, a database call, ``time.sleep``) stalls
every connection of the process when it runs on the event loop. Marking it with
:func:`blocking`, or serving with ``Client(threads=N)`` / ``milterkit run --threads N``, makes the
runtime run it in a thread pool. The context waits for it exactly as for a coroutine handler, so
each connection's handlers still run one after the other, in order, while other connections go
on. Without a runtime (``feed`` by hand, :class:`~milterkit.testing.InProcess`), a marked handler
simply runs where it is called.

This module only decides; the runtime (:mod:`milterkit.server`) does the threading.
"""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

__all__ = ["blocking", "on_loop", "runs_in_thread", "OffloadHook"]

F = TypeVar("F", bound=Callable[..., Any])
_MARK = "__milterkit_blocking__"

#: Set by the runtime on a context: ``hook(handler, args)`` returns an awaitable that runs
#: ``handler(*args)`` in a thread (and awaits what it returns, if that is awaitable).
OffloadHook = Callable[[Callable[..., Any], tuple[Any, ...]], Awaitable[Any]]


def blocking(handler: F) -> F:
    """Mark a plain ``def`` handler as blocking: the runtime runs it in its thread pool.

    Use it as a decorator under ``@client.on(...)`` or above a ``do_*`` method::

        @client.on("envelope-from")
        @milterkit.blocking
        def check_spf(context, address):
            ...  # a blocking lookup

    A blocking handler must not call :meth:`~milterkit.ClientContext.respond`; it returns its
    verdict like any handler. Returns the handler itself.
    """
    if inspect.iscoroutinefunction(_unwrap(handler)):
        raise TypeError(f"{_name(handler)} is a coroutine function: it does not block the "
                        "event loop (await in it instead), so it cannot be marked blocking")
    _mark(handler, True)
    return handler


def on_loop(handler: F) -> F:
    """Mark a handler to run on the event loop even under ``threads=N`` (a handler that only
    looks at the message, or one that uses the loop itself). Returns the handler itself."""
    _mark(handler, False)
    return handler


def runs_in_thread(handler: Callable[..., Any], every_plain_handler: bool) -> bool:
    """Whether the runtime should run ``handler`` in a thread: it is marked :func:`blocking`,
    or ``every_plain_handler`` is true and it is a plain ``def`` not marked :func:`on_loop`."""
    mark = getattr(handler, _MARK, None)
    if mark is not None:
        return bool(mark)
    inner = handler
    if hasattr(handler, "__wrapped__"):  # a do_* method, or a functools.wraps decorator
        inner = _unwrap(handler)
        mark = getattr(inner, _MARK, None)
        if mark is not None:
            return bool(mark)
    return every_plain_handler and not inspect.iscoroutinefunction(inner)


def _mark(handler: Callable[..., Any], value: bool) -> None:
    target = getattr(handler, "__func__", handler)  # a bound method: mark its function
    try:
        setattr(target, _MARK, value)
    except (AttributeError, TypeError):
        raise TypeError(f"cannot mark {_name(handler)}: it takes no attributes; wrap it in a "
                        "def") from None


def _unwrap(handler: Callable[..., Any]) -> Callable[..., Any]:
    try:
        inner: Callable[..., Any] = inspect.unwrap(handler)
        return inner
    except ValueError:  # a __wrapped__ cycle
        return handler


def _name(handler: Callable[..., Any]) -> str:
    return repr(getattr(handler, "__qualname__", handler))
