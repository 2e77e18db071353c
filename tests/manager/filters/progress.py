"""A child milter that works a while at end-of-message and says so: three progress packets,
then a header."""

from __future__ import annotations

import asyncio

from milterkit import Client, ClientContext


def setup(client: Client) -> None:
    @client.on("end-of-message")
    async def end_of_message(context: ClientContext, chunk: bytes) -> None:
        for _ in range(3):
            context.progress()
            await asyncio.sleep(0.02)
        context.add_header("X-Worked", "hard")
