"""Helpers of the ``Milter`` namespace that need no milter: log ids and ESMTP parameters."""

from __future__ import annotations

import itertools
import threading
from collections.abc import Callable, Iterable
from typing import Any

_ids = itertools.count(1)
_ids_lock = threading.Lock()


def uniqueID() -> int:
    """A process-wide increasing number, for log lines (thread-safe)."""
    with _ids_lock:
        return next(_ids)


def dictfromlist(args: Iterable[str]) -> dict[str, str]:
    """ESMTP ``KEY=value`` parameters as ``{"KEY": "value"}`` (others dropped)."""
    found: dict[str, str] = {}
    for arg in args:
        key, sep, value = arg.partition("=")
        if sep and key:
            found[key.upper()] = value
    return found


def param2dict(args: Iterable[str]) -> dict[str, str | None]:
    """ESMTP parameters as a dict; a parameter without ``=`` maps to None."""
    found: dict[str, str | None] = {}
    for arg in args:
        key, sep, value = arg.partition("=")
        found[key.upper()] = value if sep else None
    return found


def envcallback(c: Callable[..., Any], args: list[str]) -> Any:
    """Call ``c(address, *plain_params, **KEY=value params)``."""
    keywords = dictfromlist(args[1:])
    plain = [arg for arg in args[1:] if arg.find("=") <= 0]
    return c(args[0], *plain, **keywords)
