"""Choosing the event loop: uvloop's where it is installed (a dependency of milterkit on CPython
outside Windows, issue 15), or the stdlib's."""

from __future__ import annotations

import asyncio
import gc
import importlib
import logging
import platform
import sys
from collections.abc import Callable, Coroutine
from typing import Any, Literal, TypeVar

T = TypeVar("T")
LoopKind = Literal["auto", "asyncio", "uvloop"]
#: The values ``--loop`` accepts.
LOOP_KINDS: tuple[LoopKind, ...] = ("auto", "asyncio", "uvloop")

log = logging.getLogger("milterkit.server")


def loop_factory(kind: str = "auto") -> Callable[[], asyncio.AbstractEventLoop]:
    """A function making a new event loop: uvloop's when ``kind`` is ``uvloop``, or ``auto``
    and uvloop is installed; the stdlib's otherwise. ``uvloop`` without uvloop raises."""
    if kind not in LOOP_KINDS:
        raise ValueError(f"loop must be one of {', '.join(LOOP_KINDS)}, not {kind!r}")
    if kind == "asyncio":
        return asyncio.new_event_loop
    try:
        uvloop = importlib.import_module("uvloop")
    except ImportError:
        if kind == "uvloop":
            raise RuntimeError(
                "the uvloop event loop was asked for but is not installed; "
                "pip install 'milterkit[uvloop]'"
            ) from None
        if sys.platform != "win32" and platform.python_implementation() == "CPython":
            # uvloop is a dependency here: it was left out on purpose, or failed to install.
            log.warning("uvloop is not installed: serving on the standard event loop, which "
                        "handles about a third of the messages per second; pip install uvloop "
                        "(or --loop asyncio to silence this)")
        return asyncio.new_event_loop
    factory: Callable[[], asyncio.AbstractEventLoop] = uvloop.new_event_loop
    return factory


#: The garbage collector's thresholds while serving (Python's default is 700, 10, 10).
GC_THRESHOLDS = (10_000, 20, 20)


def tune_gc() -> None:
    """Get the cyclic garbage collector out of the way of serving (issue 15).

    Every session leaves reference cycles (a context and its transaction's bound methods), so
    the collector runs often; with the default thresholds its full passes re-walked every
    object imported at start-up, and profiles of a loaded server showed ~12% of its CPU in
    ``gc_collect_main``. Objects alive now (modules, the filter, its data) are frozen, out of
    every later pass, and young objects are collected in larger, rarer batches.
    """
    gc.collect()
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLDS)


def run(main: Coroutine[Any, Any, T], kind: str = "auto", *, serving: bool = False) -> T:
    """Run ``main`` to completion on a new loop of ``kind`` (``asyncio.run`` with a choice of
    loop, which ``asyncio.run`` itself only offers from Python 3.12). ``serving``: the process
    is a server from now on (``Client.run``, a worker): :func:`tune_gc` first."""
    if serving:
        tune_gc()
    loop = loop_factory(kind)()
    log.debug("event loop: %s.%s", type(loop).__module__, type(loop).__qualname__)
    asyncio.set_event_loop(loop)
    try:
        return loop.run_until_complete(main)
    finally:
        try:
            _cancel_all(loop)
            loop.run_until_complete(loop.shutdown_asyncgens())
        finally:
            asyncio.set_event_loop(None)
            loop.close()


def _cancel_all(loop: asyncio.AbstractEventLoop) -> None:
    tasks = [task for task in asyncio.all_tasks(loop) if not task.done()]
    for task in tasks:
        task.cancel()
    if tasks:
        loop.run_until_complete(asyncio.gather(*tasks, return_exceptions=True))
