"""The filter ``bench/load_fault.py`` serves: every event handled (as ``load_filter.py``), one
header added at end-of-message, and a MAIL handler that never finishes for the sender
``<hang@flood.example>`` (the flooding peer's), so that peer's commands queue behind it."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable

from milterkit import Client, ClientContext

HANG_SENDER = "<hang@flood.example>"


async def _never() -> None:
    await asyncio.Event().wait()


def _envelope_from(context: ClientContext, sender: str) -> Awaitable[None] | None:
    return _never() if sender == HANG_SENDER else None


def _count_body(context: ClientContext, chunk: bytes) -> None:
    context.shelf["size"] = context.shelf.get("size", 0) + len(chunk)


def _stamp(context: ClientContext, chunk: bytes) -> None:
    context.add_header("X-Load", str(context.shelf.get("size", 0)))


def setup(client: Client) -> None:
    """Connect a handler to every stage of a message."""
    for name in ("connect", "helo", "envelope-recipient", "data", "header", "end-of-header"):
        client.connect(name, lambda context, *args: None)
    client.connect("envelope-from", _envelope_from)
    client.connect("body", _count_body)
    client.connect("end-of-message", _stamp)
