"""The runtime under bad peers and failing handlers, over real sockets: silent and stuck MTAs,
broken packets, exceptions in coroutine and notification handlers, and many short-lived
connections leaving nothing behind."""

from __future__ import annotations

import asyncio
import logging

import pytest
from serverlib import MTA, run, serving

from milterkit.protocol import commands as cmd
from milterkit.server import Client

BIG = 20_000_000  # far more than the socket buffers hold, so an MTA that never reads blocks us


def _finished_event(client: Client) -> asyncio.Event:
    """Set when a connection has ended on our side (``connection-finished``)."""
    event = asyncio.Event()
    client.connect("connection-finished", lambda c, context: event.set())
    return event


def _big_body(client: Client) -> None:
    client.connect("end-of-message", lambda ctx, chunk: ctx.replace_body(b"x" * BIG))


async def _stuck_after_big_reply(client: Client) -> MTA:
    """An MTA that asks for a message, gets a huge reply and never reads it."""
    mta = await MTA.open(client.address_spec)
    await mta.negotiate()
    await mta.connect()
    mta.send_nowait(cmd.Mail("<a@b>"), cmd.Rcpt("<c@d>"), cmd.Data(), cmd.EndOfHeader(),
                    cmd.EndOfMessage())
    return mta


def test_timeout_ends_a_session_whose_peer_never_reads() -> None:
    # The replies we queued cannot be flushed to an MTA that reads nothing: a graceful close
    # would wait for ever, so the timed-out connection must still end.
    async def scenario() -> None:
        async with serving("inet:0@127.0.0.1", _big_body, timeout=0.3,
                           shutdown_timeout=0.1) as client:
            ended = _finished_event(client)
            mta = await _stuck_after_big_reply(client)
            await asyncio.wait_for(ended.wait(), 10.0)
            assert not client.connections and client.served == 1
            await mta.close()

    run(scenario())


def test_a_close_that_cannot_flush_is_aborted_after_the_timeout(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async def scenario() -> None:
        async with serving("inet:0@127.0.0.1", _big_body, timeout=0.3,
                           shutdown_timeout=0.1) as client:
            ended = _finished_event(client)
            mta = await _stuck_after_big_reply(client)
            mta.send_nowait(b"\x00\x00\x00\x01Z")  # then a protocol error: we close
            await asyncio.wait_for(ended.wait(), 10.0)
            assert not client.connections
            await mta.close()

    caplog.set_level(logging.INFO, "milterkit")
    run(scenario())
    lines = [r.getMessage() for r in caplog.records if r.name == "milterkit.server"]
    assert any("session ended (protocol error)" in line for line in lines)
