"""Run :class:`ServerContext` sessions against a milter over a real socket (asyncio).

The driver only moves bytes and arms timers: it connects to a connection spec (``unix:/path``,
``inet:PORT@HOST``, ``inet6:PORT@[ADDR]``), writes what the ServerContext writes and feeds it what
the milter answers, with the MTA's timeouts on the connect and on every awaited reply.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from typing import Any

from ..mta.opening import READ_SIZE, open_spec
from ..protocol.errors import ProtocolError
from ..server.spec import ConnectionSpec
from .message import Message
from .results import SessionResult
from .server import ReplyTimeout, ServerContext, Submission, Timeouts

_READ_SIZE = READ_SIZE


async def run_session_async(
    spec: str | ConnectionSpec,
    messages: Sequence[Message | Submission] | Message = (),
    *,
    check: bool = True,
    **server_options: Any,
) -> SessionResult:
    """One milter connection carrying ``messages``; ``server_options`` go to ServerContext.

    A refused connection raises OSError whatever ``check`` says (the session did not run).
    With ``check``, a protocol error or timeout raises too; else it is in ``result.error``.
    """
    if isinstance(messages, Message):
        messages = [messages]
    timeouts: Timeouts = server_options.get("timeouts") or Timeouts()
    started = time.perf_counter()
    reader, writer = await open_spec(spec, timeouts.connect)
    server = ServerContext(writer.write, **server_options)
    try:
        server.run(messages)
        while not server.finished:
            await writer.drain()
            stage = server.awaiting or "end-of-message"
            try:
                data = await asyncio.wait_for(reader.read(_READ_SIZE), timeouts.for_stage(stage))
            except asyncio.TimeoutError:
                server.handle_timeout()
                break  # pragma: no cover - handle_timeout raises
            if not data:
                server.connection_lost()
                break  # pragma: no cover - connection_lost raises while a reply is awaited
            server.receive(data)
        await writer.drain()
    except (ProtocolError, ConnectionError) as exc:
        if server.result.error is None:
            server.result.error = exc
        if check:
            raise
    finally:
        writer.close()
        try:
            await writer.wait_closed()
        except (ConnectionError, OSError):
            pass
    server.result.elapsed = time.perf_counter() - started
    return server.result


async def run_sessions_async(
    spec: str | ConnectionSpec,
    messages: Sequence[Message | Submission],
    *,
    sessions: int = 1,
    concurrency: int = 1,
    check: bool = False,
    **server_options: Any,
) -> list[SessionResult]:
    """``sessions`` connections, at most ``concurrency`` at a time, each carrying ``messages``."""
    gate = asyncio.Semaphore(max(1, concurrency))

    async def one() -> SessionResult:
        async with gate:
            return await run_session_async(spec, messages, check=check, **server_options)

    return list(await asyncio.gather(*(one() for _ in range(sessions))))


def run_session(
    spec: str | ConnectionSpec,
    messages: Sequence[Message | Submission] | Message = (),
    *,
    check: bool = True,
    **server_options: Any,
) -> SessionResult:
    """:func:`run_session_async` on a fresh event loop."""
    return asyncio.run(run_session_async(spec, messages, check=check, **server_options))


__all__ = [  # open_spec lives in milterkit.mta.opening now; it stays importable from here
    "ReplyTimeout", "open_spec", "run_session", "run_session_async", "run_sessions_async",
]
