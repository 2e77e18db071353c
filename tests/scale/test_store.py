"""The Store contract, run on MemoryStore and on RedisStore against a real redis-server."""

from __future__ import annotations

import asyncio
import itertools
import os
import subprocess
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from scalelib import RedisServer, wait_for

from milterkit.store import MemoryStore, RedisStore, Store, StoreError, open_store

_prefixes = itertools.count()


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture(params=["memory", "redis"])
def make_store(request: pytest.FixtureRequest) -> Callable[[], Store]:
    """A factory of stores sharing one database (a fresh key prefix per test)."""
    prefix = f"test{next(_prefixes)}:"
    if request.param == "memory":
        shared = MemoryStore(prefix=prefix)
        return lambda: shared
    server: RedisServer = request.getfixturevalue("redis_server")
    return lambda: RedisStore(server.url, prefix=prefix)


def run(coroutine: Awaitable[Any]) -> Any:
    async def main() -> Any:
        return await coroutine
    return asyncio.run(main())


def test_get_set_delete(make_store: Callable[[], Store]) -> None:
    async def scenario() -> None:
        store = make_store()
        assert await store.get("a") is None
        await store.set("a", "one")
        assert await store.get("a") == "one"
        await store.set("a", "two")
        assert await store.get("a") == "two"
        assert await store.expires_in("a") is None
        assert await store.delete("a") is True
        assert await store.delete("a") is False
        assert await store.get("a") is None
        await store.close()
    run(scenario())


def test_add_stores_once_and_returns_what_is_there(make_store: Callable[[], Store]) -> None:
    async def scenario() -> None:
        store = make_store()
        assert await store.add("k", "first", ttl=60) is None
        assert await store.add("k", "second", ttl=600) == "first"
        assert await store.get("k") == "first"
        left = await store.expires_in("k")
        assert left is not None and 0 < left <= 60  # the second add left the TTL alone
        await store.close()
    run(scenario())


def test_add_is_atomic_between_instances(make_store: Callable[[], Store]) -> None:
    # 40 concurrent adds through 4 stores (4 connection pools for Redis): exactly one wins,
    # and every loser sees the winner's value.
    async def scenario() -> None:
        stores = [make_store() for _ in range(4)]
        results = await asyncio.gather(*(stores[i % 4].add("race", f"v{i}") for i in range(40)))
        winners = [i for i, result in enumerate(results) if result is None]
        assert len(winners) == 1
        assert set(results) == {None, f"v{winners[0]}"}
        for store in stores:
            await store.close()
    run(scenario())


def test_incr_counts_every_increment(make_store: Callable[[], Store]) -> None:
    async def scenario() -> None:
        stores = [make_store() for _ in range(4)]
        values = await asyncio.gather(*(stores[i % 4].incr("n", ttl=60) for i in range(50)))
        assert sorted(values) == list(range(1, 51))
        assert await stores[0].incr("n", 10) == 60
        assert await stores[0].get("n") == "60"
        await stores[0].set("text", "abc")
        with pytest.raises(StoreError):
            await stores[0].incr("text")
        for store in stores:
            await store.close()
    run(scenario())


def test_incr_with_a_ttl_is_a_fixed_window(make_store: Callable[[], Store]) -> None:
    async def scenario() -> None:
        store = make_store()
        await store.incr("w", ttl=100)
        first = await store.expires_in("w")
        await store.incr("w", ttl=5000)  # the window is not extended
        second = await store.expires_in("w")
        assert first is not None and second is not None and second <= first <= 100
        await store.close()
    run(scenario())


def test_ttls_must_be_positive(make_store: Callable[[], Store]) -> None:
    async def scenario() -> None:
        store = make_store()
        for ttl in (0, -1.0):
            with pytest.raises(ValueError, match="ttl must be positive"):
                await store.set("x", "y", ttl=ttl)
            with pytest.raises(ValueError, match="ttl must be positive"):
                await store.add("x", "y", ttl=ttl)
        await store.close()
    run(scenario())


def test_memory_keys_expire_on_the_stores_clock() -> None:
    clock = Clock()
    store = MemoryStore(clock=clock)

    async def scenario() -> None:
        await store.set("a", "1", ttl=10)
        assert await store.add("b", "2", ttl=5) is None
        assert await store.incr("c", ttl=20) == 1
        clock.now += 6
        assert await store.get("b") is None
        assert await store.add("b", "3", ttl=5) is None  # expired: stored again
        assert await store.get("a") == "1"
        assert await store.expires_in("a") == 4
        clock.now += 5
        assert await store.get("a") is None
        assert await store.incr("c", ttl=20) == 2
        clock.now += 10
        assert await store.incr("c", ttl=20) == 1  # a new window
    run(scenario())


def test_memory_sweeps_expired_keys() -> None:
    clock = Clock()
    store = MemoryStore(clock=clock)

    async def scenario() -> None:
        for i in range(3000):
            await store.set(f"k{i}", "v", ttl=1)
            clock.now += 0.01
        # Everything older than a second went at the sweeps; what is left is recent.
        assert len(store) < 2100
        assert await store.get("k2999") == "v"
    run(scenario())


def test_redis_keys_expire(redis_server: RedisServer) -> None:
    store = RedisStore(redis_server.url, prefix="expiry:")

    async def scenario() -> None:
        await store.set("a", "1", ttl=0.2)
        assert await store.add("b", "2", ttl=0.2) is None
        assert await store.get("a") == "1"

    run(scenario())

    def gone() -> bool:
        async def check() -> bool:
            found = [await store.get("a"), await store.get("b")]
            await store.close()
            return found == [None, None]
        return bool(run(check()))
    wait_for(gone, "the keys to expire", timeout=10, pause=0.1)


def test_redis_prefix_and_a_new_loop_per_run(redis_server: RedisServer) -> None:
    # One store object used from two event loops (as a Client's store is used in each
    # worker's loop): each loop gets its own connections.
    store = RedisStore(redis_server.url)
    assert store.prefix == "milterkit:"
    run(store.set("loop", "one"))
    assert run(store.get("loop")) == "one"

    async def raw() -> Any:
        import redis.asyncio

        client = redis.asyncio.Redis.from_url(redis_server.url, decode_responses=True)
        try:
            return await client.get("milterkit:loop")
        finally:
            await client.aclose()
    assert run(raw()) == "one"


def test_an_unreachable_redis_is_a_store_error() -> None:
    from postfix import free_port

    store = RedisStore(f"redis://127.0.0.1:{free_port()}/0", timeout=1.0)
    with pytest.raises(StoreError, match=r"Redis at redis://127\.0\.0\.1"):
        run(store.get("x"))


def test_open_store_by_url(redis_server: RedisServer) -> None:
    assert isinstance(open_store("memory:"), MemoryStore)
    assert isinstance(open_store(""), MemoryStore)
    assert open_store("memory:", prefix="p:").prefix == "p:"
    redis_store = open_store(redis_server.url, prefix="x:")
    assert isinstance(redis_store, RedisStore) and redis_store.prefix == "x:"
    assert run(redis_store.add("k", "v")) is None
    with pytest.raises(StoreError, match="unknown store URL 'mysql://db'"):
        open_store("mysql://db")
    with pytest.raises(StoreError, match="bad Redis URL"):
        run(RedisStore("redis://127.0.0.1:notaport/0").get("x"))


def test_redis_store_without_redis_py_says_what_to_install(tmp_path: Path) -> None:
    (tmp_path / "redis").mkdir()
    (tmp_path / "redis" / "__init__.py").write_text("raise ImportError('No module named redis')\n")
    code = ("from milterkit.store import RedisStore, StoreError\n"
            "try:\n    RedisStore()\nexcept StoreError as exc:\n    print(exc)\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=60, env={**os.environ, "PYTHONPATH": str(tmp_path)})
    assert done.stdout.strip() == "RedisStore needs redis-py: pip install 'milterkit[redis]'"
