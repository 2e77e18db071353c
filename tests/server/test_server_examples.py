"""Every filter under examples/, loaded as ``milterkit run`` loads it and driven over a real
unix socket."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import pytest
from serverlib import EXAMPLES, MTA, Outcome, run, serving, session, short_tmpdir

from milterkit.protocol import commands as cmd
from milterkit.protocol.replies import (
    AddHeader,
    Continue,
    Quarantine,
    ReplaceBody,
    ReplyText,
)
from milterkit.server.target import load_setup


def _setup(name: str) -> Callable[[Any], object]:
    return load_setup(str(EXAMPLES / f"{name}.py"))


def _serve(name: str, **message: Any) -> list[Outcome]:
    with short_tmpdir() as tmp:
        spec = f"unix:{tmp}/m.sock"

        async def scenario() -> list[Outcome]:
            async with serving(spec, _setup(name)):
                return await session(spec, **message)

        return run(scenario())


def test_add_header() -> None:
    (outcome,) = _serve("add_header")
    assert outcome.modifications == [AddHeader("X-Milterkit", "yes")]
    assert outcome.verdict == Continue()


def test_reject_sender_with_a_multi_line_reply() -> None:
    (blocked,) = _serve("reject_sender", sender="<bad@Spam.Example>")
    assert blocked.steps["envelope-from"].final == ReplyText(
        "550-5.7.1 Mail from spam.example is not accepted here.\r\n"
        "550-5.7.1 If you think this is a mistake,\r\n"
        "550 5.7.1 write to postmaster@example.com."
    )
    assert blocked.verdict is None  # the message went no further
    (fine,) = _serve("reject_sender", sender="<good@example.org>")
    assert fine.verdict == Continue()


def test_reject_one_recipient_of_several() -> None:
    recipients = ("<a@example.com>", "<closed@example.com>", "<b@example.com>")
    (outcome,) = _serve("reject_recipient", recipients=recipients)
    finals = {rcpt: step.final for rcpt, step in outcome.recipients.items()}
    assert finals == {
        "<a@example.com>": Continue(),
        "<closed@example.com>": ReplyText("550 5.1.1 This mailbox is closed"),
        "<b@example.com>": Continue(),
    }
    assert outcome.verdict == Continue()  # the message goes on to the others


def test_replace_body_collects_every_chunk() -> None:
    body = b"".join(b"line %d\r\n" % i for i in range(20000))  # ~200 KB: four body chunks
    (outcome,) = _serve("replace_body", body=body)
    chunks = [m for m in outcome.modifications if isinstance(m, ReplaceBody)]
    assert len(chunks) >= 3
    assert b"".join(c.chunk for c in chunks) == (
        body + b"\r\n-- \r\nThis message was checked by milterkit.\r\n"
    )
    assert outcome.verdict == Continue()


def test_quarantine() -> None:
    headers = (("Subject", "Please [QUARANTINE] this"), ("From", "a@example.org"))
    (held,) = _serve("quarantine", headers=headers)
    assert held.modifications == [Quarantine("subject asks for quarantine")]
    (passed,) = _serve("quarantine")
    assert passed.modifications == []


@pytest.mark.parametrize("name", ["async_lookup", "progress_lookup"])
def test_async_lookup_forms(name: str) -> None:
    recipients = ("<alice@example.com>", "<nobody@example.com>")
    (outcome,) = _serve(name, recipients=recipients)
    steps = outcome.recipients
    assert steps["<alice@example.com>"].final == Continue()
    assert steps["<nobody@example.com>"].final == ReplyText("550 5.1.1 No such user here")
    if name == "progress_lookup":
        assert steps["<alice@example.com>"].progress == 1  # the explicit keep-alive
    assert outcome.verdict == Continue()


def test_async_lookups_run_concurrently() -> None:
    # The pretend directory answers only once all twenty lookups are waiting on it at the same
    # time: served one after another, the sessions would never finish (and the test would time
    # out instead of passing).
    setup = _setup("async_lookup")
    count = 20
    waiting: list[int] = []
    everyone = asyncio.Event()

    async def lookup(address: str) -> bool:
        waiting.append(1)
        if len(waiting) == count:
            everyone.set()
        await everyone.wait()
        return address in {"bob@example.com"}

    setup.__globals__["lookup"] = lookup
    with short_tmpdir() as tmp:
        spec = f"unix:{tmp}/m.sock"

        async def scenario() -> list[list[Outcome]]:
            async with serving(spec, setup):
                return await asyncio.gather(*(
                    session(spec, recipients=("<bob@example.com>",)) for _ in range(count)
                ))

        results = run(scenario(), timeout=10)
    assert len(waiting) == count
    assert all(outcomes[0].verdict == Continue() for outcomes in results)


def test_two_handlers_on_one_signal() -> None:
    (outcome,) = _serve(
        "two_handlers", body=b"12345", recipients=("<a@example.com>", "<b@example.com>")
    )
    assert outcome.modifications == [AddHeader("X-Body-Size", "5"), AddHeader("X-Recipients", "2")]


def test_progress_lookup_when_the_mta_leaves_early() -> None:
    # The MTA closes while the answer is pending: the late task must not fail or write.
    with short_tmpdir() as tmp:
        spec = f"unix:{tmp}/m.sock"

        async def scenario() -> None:
            async with serving(spec, _setup("progress_lookup")) as client:
                mta = await MTA.open(spec)
                await mta.negotiate()
                await mta.connect()
                await mta.helo()
                await mta.step(cmd.Mail("<a@example.org>"))
                mta.send_nowait(cmd.Rcpt("<alice@example.com>"))
                await mta.close()
                await asyncio.sleep(0.1)  # longer than the lookup
                assert not client.connections

        run(scenario())
