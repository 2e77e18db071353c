"""Turn what a test names as its filter into a :class:`~milterkit.server.client.Client`.

A target is what ``milterkit run`` takes (a file or module defining ``setup(client)``, with an
optional ``:function``), a ``setup`` callable, or a ready Client; loading goes through the
runtime's :func:`~milterkit.server.target.load_setup`, so a test and a deployment load a filter
the same way.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeAlias

from ..server.client import Client
from ..server.target import TargetError, load_setup

#: What the test tools accept as a filter.
Target: TypeAlias = "str | Path | Callable[[Client], Any] | Client"

__all__ = ["Target", "TargetError", "load_client", "setup_function"]


def setup_function(target: str | Path | Callable[[Client], Any]) -> Callable[[Client], Any]:
    """The ``setup(client)`` function a target names."""
    if callable(target):
        return target
    return load_setup(str(target))


def load_client(target: Target, **options: Any) -> Client:
    """A Client with the target's handlers connected; ``options`` go to the Client's
    constructor (ignored when ``target`` already is a Client)."""
    if isinstance(target, Client):
        return target
    client = Client(**options)
    setup_function(target)(client)
    return client
