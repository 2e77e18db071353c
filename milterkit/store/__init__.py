"""Shared state for filters: the :class:`Store` interface (atomic operations, TTLs), the
in-memory :class:`MemoryStore` (the default) and :class:`RedisStore` for several milterkit
processes or hosts (``pip install 'milterkit[redis]'``). :func:`open_store` picks one by URL.

See docs/scaling.rst; examples/greylist.py keeps its triplets in one.
"""

from __future__ import annotations

from .base import Store, StoreError
from .memory import MemoryStore
from .redis_backend import RedisStore

__all__ = ["MemoryStore", "RedisStore", "Store", "StoreError", "open_store"]

_REDIS_SCHEMES = ("redis://", "rediss://", "unix://")


def open_store(url: str, *, prefix: str | None = None) -> Store:
    """The store ``url`` names: ``memory:`` (or empty) for a :class:`MemoryStore`,
    ``redis://host:port/db``, ``rediss://...`` or ``unix:///path`` for a :class:`RedisStore`.
    ``prefix`` overrides the store's default key prefix. Raises :exc:`StoreError` for any
    other URL."""
    if url in ("", "memory:", "memory://"):
        return MemoryStore(prefix=prefix or "")
    if url.startswith(_REDIS_SCHEMES):
        return RedisStore(url) if prefix is None else RedisStore(url, prefix=prefix)
    raise StoreError(f"unknown store URL {url!r}: use memory: or redis://HOST:PORT/DB")
