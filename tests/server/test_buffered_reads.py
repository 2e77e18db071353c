"""On the standard event loop every connection reads into one buffer of its Client
(milterkit/server/reading.py, issue 15): each read must be copied out before the next, whoever's
it is. Connections sending large bodies at once, each its own bytes, get their own body back."""

from __future__ import annotations

import asyncio
import hashlib

from serverlib import run, serving, session

from milterkit import ClientContext
from milterkit.protocol.replies import AddHeader
from milterkit.server import Client
from milterkit.server.connection import Connection, ConnectionHooks
from milterkit.server.reading import READ_SIZE, BufferedConnection, connection_factory

SESSIONS = 4
BODY = 300 * 1024  # larger than one read, in 64 KiB body chunks


def _digest_bodies(client: Client) -> None:
    digests: dict[int, hashlib._Hash] = {}

    @client.on("body")
    def body(context: ClientContext, chunk: bytes) -> None:
        digests.setdefault(id(context), hashlib.sha256()).update(chunk)

    @client.on("end-of-message")
    def end(context: ClientContext, chunk: bytes) -> None:
        context.add_header("X-Body", digests.pop(id(context)).hexdigest())


def test_concurrent_large_bodies_arrive_intact() -> None:
    async def scenario() -> None:
        async with serving(setup=_digest_bodies) as client:
            bodies = [bytes([65 + n]) * BODY + bytes(range(256)) * n for n in range(SESSIONS)]
            results = await asyncio.gather(*(session(client.address_spec, body=body)
                                             for body in bodies))
            for body, (outcome,) in zip(bodies, results, strict=True):
                assert outcome.modifications == [AddHeader("X-Body",
                                                           hashlib.sha256(body).hexdigest())]

    # The standard loop in the default test run (buffered reads), uvloop with
    # MILTERKIT_TEST_LOOP=uvloop (its own reads: the same outcome is expected).
    run(scenario(), timeout=60)


def test_the_standard_loop_gets_buffered_connections_sharing_one_buffer() -> None:
    async def scenario() -> None:
        client = Client("inet:0@127.0.0.1", socket_activation=False)
        hooks = ConnectionHooks(opened=lambda c: None, closed=lambda c: None)
        factory = connection_factory(client, hooks, asyncio.get_running_loop())
        first, second = factory(), factory()
        assert isinstance(first, BufferedConnection) and isinstance(second, BufferedConnection)
        assert first.get_buffer(-1) is second.get_buffer(-1)
        assert len(first.get_buffer(-1)) == READ_SIZE

    loop = asyncio.SelectorEventLoop()
    try:
        loop.run_until_complete(scenario())
    finally:
        loop.close()


def test_other_loops_get_plain_connections() -> None:
    import pytest

    uvloop = pytest.importorskip("uvloop")

    async def scenario() -> None:
        client = Client("inet:0@127.0.0.1", socket_activation=False)
        hooks = ConnectionHooks(opened=lambda c: None, closed=lambda c: None)
        made = connection_factory(client, hooks, asyncio.get_running_loop())()
        assert type(made) is Connection

    loop = uvloop.new_event_loop()
    try:
        loop.run_until_complete(scenario())
    finally:
        loop.close()
