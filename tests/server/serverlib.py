"""Helpers for the runtime's tests: run a scenario on a fresh loop with a time limit, serve a
Client on a short unix socket path, and talk to it with the private MTA driver."""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import tempfile
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

from milterkit.server import Client
from milterkit.server.loop import run as run_loop
from milterkit.testing.raw_mta import MTA, Answer, MTAError, Outcome

__all__ = ["MTA", "Answer", "MTAError", "Outcome", "run", "serving", "short_tmpdir"]

T = TypeVar("T")
ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples"


#: The event loop the in-process tests run on: MILTERKIT_TEST_LOOP=uvloop runs them on uvloop.
TEST_LOOP = os.environ.get("MILTERKIT_TEST_LOOP", "asyncio")


def run(scenario: Awaitable[T], timeout: float = 30.0) -> T:
    """Run ``scenario`` on a new event loop; fail (not hang) after ``timeout`` seconds."""

    async def limited() -> T:
        return await asyncio.wait_for(scenario, timeout)

    return run_loop(limited(), TEST_LOOP)


@contextlib.contextmanager
def short_tmpdir() -> Iterator[Path]:
    """A temporary directory with a short path: unix socket paths are limited to ~107 bytes."""
    path = tempfile.mkdtemp(prefix="mk-")
    try:
        yield Path(path)
    finally:
        shutil.rmtree(path, ignore_errors=True)


@contextlib.asynccontextmanager
async def serving(
    spec: str = "inet:0@127.0.0.1",
    setup: Callable[[Client], Any] | None = None,
    **options: Any,
) -> AsyncIterator[Client]:
    """A started Client (socket activation off, so a stray LISTEN_FDS cannot interfere)."""
    options.setdefault("socket_activation", False)
    options.setdefault("timeout", 30.0)
    client = Client(spec, **options)
    if setup is not None:
        setup(client)
    async with client:
        yield client


async def session(spec: str, messages: int = 1, **message: Any) -> list[Outcome]:
    """Open a connection to ``spec``, run a whole session, wait for the milter to close."""
    mta = await MTA.open(spec)
    try:
        outcomes = await mta.session(messages, **message)
        assert await mta.at_eof(), "the milter did not close the connection after QUIT"
        return outcomes
    finally:
        await mta.close()


def socket_mode(path: str | os.PathLike[str]) -> int:
    """Permission bits of a file."""
    return os.stat(path).st_mode & 0o7777
