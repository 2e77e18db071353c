"""``MemoryStore``: the in-process :class:`~milterkit.store.Store`, the default.

Its state lives in one process: pre-forked workers and other instances do not see it, and a
restart forgets it. Use :class:`~milterkit.store.RedisStore` for state that must be shared.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from .base import Store, StoreError, check_ttl

__all__ = ["MemoryStore"]

# Expired keys are removed when read, and all at once when the table has doubled in size.
_FIRST_SWEEP = 1024


class MemoryStore(Store):
    """A dict with expiry times. ``clock`` gives seconds (``time.monotonic``; a test passes
    its own to move time by hand)."""

    def __init__(self, *, prefix: str = "", clock: Callable[[], float] = time.monotonic
                 ) -> None:
        super().__init__(prefix=prefix)
        self.clock = clock
        # key -> (value, expiry time or None)
        self._data: dict[str, tuple[str, float | None]] = {}
        self._next_sweep = _FIRST_SWEEP

    def __repr__(self) -> str:
        return f"MemoryStore(prefix={self.prefix!r})"

    def __len__(self) -> int:
        """How many keys are stored, expired ones not yet removed included."""
        return len(self._data)

    def _live(self, key: str, now: float) -> tuple[str, float | None] | None:
        entry = self._data.get(key)
        if entry is not None and entry[1] is not None and entry[1] <= now:
            del self._data[key]
            return None
        return entry

    def _expiry(self, ttl: float | None, now: float) -> float | None:
        check_ttl(ttl)
        return None if ttl is None else now + ttl

    def _store(self, key: str, value: str, expiry: float | None, now: float) -> None:
        self._data[key] = (value, expiry)
        if len(self._data) >= self._next_sweep:
            self._data = {k: e for k, e in self._data.items() if e[1] is None or e[1] > now}
            self._next_sweep = max(_FIRST_SWEEP, 2 * len(self._data))

    async def get(self, key: str) -> str | None:
        entry = self._live(self.key(key), self.clock())
        return None if entry is None else entry[0]

    async def set(self, key: str, value: str, ttl: float | None = None) -> None:
        now = self.clock()
        self._store(self.key(key), value, self._expiry(ttl, now), now)

    async def add(self, key: str, value: str, ttl: float | None = None) -> str | None:
        # No await between the look-up and the store: atomic within the event loop.
        now = self.clock()
        expiry = self._expiry(ttl, now)
        entry = self._live(self.key(key), now)
        if entry is not None:
            return entry[0]
        self._store(self.key(key), value, expiry, now)
        return None

    async def incr(self, key: str, amount: int = 1, ttl: float | None = None) -> int:
        now = self.clock()
        expiry = self._expiry(ttl, now)
        full = self.key(key)
        entry = self._live(full, now)
        current, old_expiry = (0, None) if entry is None else (_integer(full, entry[0]), entry[1])
        value = current + amount
        self._store(full, str(value), old_expiry if old_expiry is not None else expiry, now)
        return value

    async def delete(self, key: str) -> bool:
        found = self._live(self.key(key), self.clock()) is not None
        self._data.pop(self.key(key), None)
        return found

    async def expires_in(self, key: str) -> float | None:
        now = self.clock()
        entry = self._live(self.key(key), now)
        if entry is None or entry[1] is None:
            return None
        return entry[1] - now


def _integer(key: str, value: str) -> int:
    try:
        return int(value)
    except ValueError:
        raise StoreError(f"the value of {key!r} is not an integer: {value!r}") from None
