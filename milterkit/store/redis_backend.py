"""``RedisStore``: a :class:`~milterkit.store.Store` in Redis, shared by every milterkit process
and host that points at the same database. Needs redis-py (``pip install 'milterkit[redis]'``),
whose asyncio API it uses.

Each event loop gets its own connection pool (made on first use in that loop), so a store
created before the Client starts, or before pre-forked workers fork, works in every process.
Every Redis failure is a :exc:`~milterkit.store.StoreError`; in a handler, that becomes the
Client's exception policy (a temporary failure by default), so an unreachable Redis defers
mail instead of letting it through unchecked.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

from .base import Store, StoreError, check_ttl

if TYPE_CHECKING:
    import redis.asyncio

__all__ = ["DEFAULT_REDIS_URL", "RedisStore"]

#: Where :class:`RedisStore` connects unless told otherwise.
DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/0"

# add(): GET, else SET (with PX when a TTL is given); one script, so atomic in Redis.
_ADD = """
local old = redis.call('GET', KEYS[1])
if old then return old end
if ARGV[2] == '' then
  redis.call('SET', KEYS[1], ARGV[1])
else
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
end
return false
"""
# incr(): INCRBY, and PEXPIRE when the key has no expiry yet (a fixed window).
_INCR = """
local value = redis.call('INCRBY', KEYS[1], ARGV[1])
if ARGV[2] ~= '' and redis.call('PTTL', KEYS[1]) == -1 then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return value
"""


def _millis(ttl: float | None) -> str:
    check_ttl(ttl)
    return "" if ttl is None else str(max(1, round(ttl * 1000)))


class RedisStore(Store):
    """A store in the Redis database at ``url`` (``redis://host:port/db``, ``rediss://`` for
    TLS, ``unix:///path/redis.sock``). ``timeout`` bounds connecting and every command, in
    seconds: keep it well under Postfix's ``milter_command_timeout``. ``prefix`` defaults to
    ``milterkit:``."""

    def __init__(self, url: str = DEFAULT_REDIS_URL, *, prefix: str = "milterkit:",
                 timeout: float = 2.0) -> None:
        super().__init__(prefix=prefix)
        try:
            import redis.asyncio  # noqa: F401 - fail now, not at the first message
        except ImportError:
            raise StoreError("RedisStore needs redis-py: pip install 'milterkit[redis]'"
                             ) from None
        self.url = url
        self.timeout = timeout
        self._clients: dict[asyncio.AbstractEventLoop, redis.asyncio.Redis] = {}

    def __repr__(self) -> str:
        return f"RedisStore({self.url!r}, prefix={self.prefix!r})"

    def _client(self) -> redis.asyncio.Redis:
        import redis.asyncio

        loop = asyncio.get_running_loop()
        client = self._clients.get(loop)
        if client is None:
            for old in [old for old in self._clients if old.is_closed()]:
                del self._clients[old]  # a finished loop's pool: its sockets went with it
            try:
                client = redis.asyncio.Redis.from_url(
                    self.url, decode_responses=True, socket_timeout=self.timeout,
                    socket_connect_timeout=self.timeout,
                )
            except ValueError as exc:
                raise StoreError(f"bad Redis URL {self.url!r}: {exc}") from None
            self._clients[loop] = client
        return client

    async def _call(self, method: str, *args: Any, **options: Any) -> Any:
        import redis.exceptions

        try:
            return await getattr(self._client(), method)(*args, **options)
        except redis.exceptions.RedisError as exc:
            raise StoreError(f"Redis at {self.url}: {exc}") from exc
        except OSError as exc:  # redis-py lets some socket errors through as they are
            raise StoreError(f"Redis at {self.url}: {exc}") from exc

    async def ping(self) -> None:
        """Check that Redis answers (raises :exc:`StoreError` otherwise)."""
        await self._call("ping")

    async def get(self, key: str) -> str | None:
        value: str | None = await self._call("get", self.key(key))
        return value

    async def set(self, key: str, value: str, ttl: float | None = None) -> None:
        millis = _millis(ttl)
        if millis:
            await self._call("set", self.key(key), value, px=int(millis))
        else:
            await self._call("set", self.key(key), value)

    async def add(self, key: str, value: str, ttl: float | None = None) -> str | None:
        old: str | None = await self._call("eval", _ADD, 1, self.key(key), value, _millis(ttl))
        return old

    async def incr(self, key: str, amount: int = 1, ttl: float | None = None) -> int:
        value = await self._call("eval", _INCR, 1, self.key(key), str(amount), _millis(ttl))
        return int(value)

    async def delete(self, key: str) -> bool:
        removed: int = await self._call("delete", self.key(key))
        return removed > 0

    async def expires_in(self, key: str) -> float | None:
        millis: int = await self._call("pttl", self.key(key))
        return None if millis < 0 else millis / 1000

    async def close(self) -> None:
        client = self._clients.pop(asyncio.get_running_loop(), None)
        if client is not None:
            await client.aclose()
