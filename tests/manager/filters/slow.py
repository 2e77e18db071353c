"""A child milter that takes ``SLOW_SECONDS`` (environment, default 3) to answer MAIL FROM:
slower than the per-child timeout the manager tests give it."""

from __future__ import annotations

import asyncio
import os

from milterkit import Client, ClientContext, Status

DELAY = float(os.environ.get("SLOW_SECONDS", "3"))


def setup(client: Client) -> None:
    @client.on("envelope-from")
    async def envelope_from(context: ClientContext, address: str) -> Status:
        await asyncio.sleep(DELAY)
        return context.reject("550", "5.7.1", "slow: too late to count")
