"""The :class:`Store` interface: a small key-value store with atomic operations and TTLs, for
filters with state (greylisting, rate limits, reputation) that several milterkit processes or
hosts must share."""

from __future__ import annotations

import abc
from types import TracebackType

__all__ = ["Store", "StoreError"]


class StoreError(Exception):
    """The store cannot do what was asked: unreachable, a value of the wrong kind, a bad URL."""


class Store(abc.ABC):
    """Keys and values are strings; ``ttl`` is in seconds (``None``: the key never expires).

    Every method is a coroutine, so the same filter code runs on the in-memory store and on a
    networked one. :meth:`add` and :meth:`incr` are atomic: of several instances racing on one
    key, exactly one :meth:`add` stores its value, and no increment is lost. ``prefix`` is put
    in front of every key, so several filters (or sites) can share one database.
    """

    def __init__(self, *, prefix: str = "") -> None:
        self.prefix = prefix

    def key(self, key: str) -> str:
        """The key as stored: :attr:`prefix` + ``key``."""
        return self.prefix + key

    @abc.abstractmethod
    async def get(self, key: str) -> str | None:
        """The value of ``key``, or None if it is absent or expired."""

    @abc.abstractmethod
    async def set(self, key: str, value: str, ttl: float | None = None) -> None:
        """Store ``value`` under ``key`` (replacing any value and its TTL)."""

    @abc.abstractmethod
    async def add(self, key: str, value: str, ttl: float | None = None) -> str | None:
        """Atomically store ``value`` unless ``key`` exists. Returns None when it stored the
        value, else the value already there (which is left alone, TTL included)."""

    @abc.abstractmethod
    async def incr(self, key: str, amount: int = 1, ttl: float | None = None) -> int:
        """Atomically add ``amount`` to the integer under ``key`` (absent: 0) and return the
        new value. ``ttl`` is set only when the key has no expiry yet, so a counter created
        with a TTL is a fixed window: ``incr("rate:" + client, ttl=60)`` counts per minute.
        A value that is not an integer raises :exc:`StoreError`."""

    @abc.abstractmethod
    async def delete(self, key: str) -> bool:
        """Remove ``key``; whether it existed."""

    @abc.abstractmethod
    async def expires_in(self, key: str) -> float | None:
        """Seconds until ``key`` expires; None if it is absent or never expires."""

    async def close(self) -> None:  # noqa: B027 - a store without resources has nothing to do
        """Release the store's connections (the store can be used again afterwards)."""

    async def __aenter__(self) -> Store:
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        await self.close()


def check_ttl(ttl: float | None) -> None:
    """Refuse a TTL that is not positive (``0`` would mean "expired at once" in one store and
    "never" in another)."""
    if ttl is not None and not ttl > 0:
        raise ValueError(f"ttl must be positive seconds or None, not {ttl!r}")
