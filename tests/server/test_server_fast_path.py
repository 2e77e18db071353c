"""The one-receiver fast path of dispatch (issue 15) keeps the general path's rules: a coroutine
handler under ``threads=N`` is awaited on the loop, a plain one runs in the pool, and a decisive
status from a lone handler still becomes the reply."""

from __future__ import annotations

import threading

from serverlib import MTA, run, serving

from milterkit import Status
from milterkit.protocol.replies import AnyReply, Continue, Reject
from milterkit.server import Client


def test_a_lone_handler_of_each_kind_under_threads() -> None:
    seen: dict[str, str] = {}

    def setup(client: Client) -> None:
        async def on_connect(ctx: object, host: str, address: object) -> Status:
            seen["connect"] = threading.current_thread().name
            return Status.CONTINUE

        def on_helo(ctx: object, name: str) -> None:
            seen["helo"] = threading.current_thread().name

        def on_mail(ctx: object, sender: str) -> Status:
            return Status.REJECT

        client.connect("connect", on_connect)
        client.connect("helo", on_helo)
        client.connect("envelope-from", on_mail)

    async def scenario() -> list[AnyReply | None]:
        async with serving(setup=setup, threads=2) as client:
            mta = await MTA.open(client.address_spec)
            try:
                await mta.negotiate()
                answers = [await mta.connect(), await mta.helo()]
                outcome = await mta.message()
                return [a.final for a in answers] + [outcome.steps["envelope-from"].final]
            finally:
                await mta.close()

    finals = run(scenario())
    assert finals == [Continue(), Continue(), Reject()]
    assert seen["connect"] == threading.main_thread().name
    assert seen["helo"] != threading.main_thread().name
