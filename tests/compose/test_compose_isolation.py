"""One filter's exception or timeout is its own: it answers its fallback, the others go on."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import pytest
from composelib import Composed, recording, returning, spec

from milterkit import Status

S = Status


def raising(stage: str, calls: list[str] | None = None) -> Any:
    def setup(client: Any) -> None:
        def handler(context: Any, *args: Any) -> None:
            if calls is not None:
                calls.append(f"{context.filter_name}:{stage}")
            raise RuntimeError("broken filter")

        client.connect(stage, handler)

    return setup


def test_one_filter_raising_while_another_rejects(caplog: pytest.LogCaptureFixture) -> None:
    composed = Composed([
        spec("broken", raising("envelope-recipient"), fallback=S.ACCEPT),
        spec("strict", returning("envelope-recipient", S.REJECT,
                                 reply=("550", "5.1.1", "No such user"))),
    ])
    with caplog.at_level(logging.ERROR, "milterkit.compose"):
        result = composed.run()
    (rejected,) = result.last.rejected_recipients
    assert rejected.reply == "550 5.1.1 No such user"
    assert any("filter broken failed at envelope-recipient" in r.getMessage()
               for r in caplog.records)


def test_a_failed_filter_with_accept_fallback_is_not_called_again() -> None:
    calls: list[str] = []

    def broken(client: Any) -> None:
        raising("envelope-from", calls)(client)
        recording(calls, ["header"])(client)

    composed = Composed([spec("broken", broken, fallback=S.ACCEPT),
                         spec("other", recording(calls, ["header"]))])
    result = composed.run()
    assert "broken:envelope-from" in calls
    assert "broken:header" not in calls
    assert "other:header" in calls
    assert result.last.status is S.CONTINUE


def test_the_default_fallback_is_the_exception_policy_with_its_reply() -> None:
    composed = Composed([spec("broken", raising("envelope-from")),
                         spec("other", recording([], ["header"]))])
    result = composed.run()
    assert composed.answer("envelope-from") is S.TEMPFAIL
    assert result.last.smtp_reply == "451 4.3.0 Temporary failure in the mail filter"


def test_an_end_of_message_failure_drops_that_filters_changes_only() -> None:
    def adds_then_raises(client: Any) -> None:
        def eom(context: Any, chunk: bytes) -> None:
            context.add_header("X-Broken", "1")
            raise RuntimeError("late")

        client.connect("end-of-message", eom)

    def adds(client: Any) -> None:
        client.connect("end-of-message", lambda context, chunk: context.add_header("X-Ok", "1"))

    composed = Composed([spec("broken", adds_then_raises, fallback=S.CONTINUE),
                         spec("fine", adds)])
    result = composed.run()
    assert result.last.message.header("X-Ok") == "1"
    assert result.last.message.header("X-Broken") is None


def test_a_timed_out_coroutine_filter_gets_its_fallback(caplog: pytest.LogCaptureFixture
                                                        ) -> None:
    def slow(client: Any) -> None:
        async def eom(context: Any, chunk: bytes) -> None:
            await asyncio.sleep(30)

        client.connect("end-of-message", eom)

    def fast(client: Any) -> None:
        async def eom(context: Any, chunk: bytes) -> None:
            await asyncio.sleep(0)
            context.add_header("X-Fast", "yes")

        client.connect("end-of-message", eom)

    composed = Composed([spec("slow", slow, timeout=0.2, fallback=S.CONTINUE),
                         spec("fast", fast)])
    with caplog.at_level(logging.ERROR, "milterkit.compose"):
        result = composed.run()
    assert result.last.status is S.CONTINUE
    assert result.last.message.header("X-Fast") == "yes"
    assert result.last.elapsed < 5
    assert any("filter slow failed at end-of-message (TimeoutError" in r.getMessage()
               for r in caplog.records)
    assert composed.results[-1].filter_verdicts == {"slow": "continue (failed)",
                                                  "fast": "continue"}


def test_coroutine_filters_run_concurrently() -> None:
    """first waits for an event only second sets: run one after the other, first would time
    out; run together, both answer."""
    shared: dict[str, asyncio.Event] = {}

    def first(client: Any) -> None:
        async def eom(context: Any, chunk: bytes) -> Status:
            event = shared.setdefault("event", asyncio.Event())
            await event.wait()
            return S.ACCEPT

        client.connect("end-of-message", eom)

    def second(client: Any) -> None:
        async def eom(context: Any, chunk: bytes) -> Status:
            shared.setdefault("event", asyncio.Event()).set()
            context.add_header("X-Second", "1")
            return S.ACCEPT

        client.connect("end-of-message", eom)

    composed = Composed([spec("first", first, timeout=3, fallback=S.TEMPFAIL),
                         spec("second", second)])
    result = composed.run()
    assert result.last.status is S.ACCEPT
    assert result.last.message.header("X-Second") == "1"


def test_a_progress_answer_from_a_filter() -> None:
    """A filter returns PROGRESS and answers later with view.respond."""

    def later(client: Any) -> None:
        def rcpt(context: Any, address: str) -> Status:
            loop = asyncio.get_running_loop()
            context.set_reply("550", "5.7.1", "decided later")
            loop.call_later(0.01, context.respond, "envelope-recipient", S.REJECT)
            return S.PROGRESS

        client.connect("envelope-recipient", rcpt)

    composed = Composed([spec("later", later), spec("other", recording([], ["header"]))])
    result = composed.run()
    (rejected,) = result.last.rejected_recipients
    assert rejected.reply == "550 5.7.1 decided later"


def test_an_invalid_status_is_that_filters_error() -> None:
    composed = Composed([spec("odd", returning("envelope-from", S.SKIP), fallback=S.CONTINUE),
                         spec("fine", recording([], ["header"]))])
    result = composed.run()
    assert composed.answer("envelope-from") is S.CONTINUE
    assert result.last.status is S.CONTINUE


def test_changes_are_applied_in_filter_order_whatever_finishes_first() -> None:
    """slow (first) adds its header after fast (second) has added its own: the MTA still gets
    slow's first; and a plain third filter sees the earlier filters' changes listed."""
    seen: list[tuple[str, str]] = []

    def slow(client: Any) -> None:
        async def eom(context: Any, chunk: bytes) -> None:
            await asyncio.sleep(0.05)
            context.add_header("X-Order", "slow")

        client.connect("end-of-message", eom)

    def fast(client: Any) -> None:
        async def eom(context: Any, chunk: bytes) -> None:
            context.add_header("X-Order", "fast")

        client.connect("end-of-message", eom)

    def plain(client: Any) -> None:
        def eom(context: Any, chunk: bytes) -> None:
            seen.extend((name, change.action) for name, change in context.earlier_changes)
            context.add_header("X-Order", "plain")

        client.connect("end-of-message", eom)

    composed = Composed([spec("slow", slow), spec("fast", fast), spec("plain", plain)])
    result = composed.run()
    assert result.last.message.header_values("X-Order") == ["slow", "fast", "plain"]
    # The coroutines had not run yet when the plain filter was called: nothing recorded.
    assert seen == []


def test_a_later_filter_sees_the_earlier_filters_changes() -> None:
    seen: list[tuple[str, str, tuple[object, ...]]] = []

    def first(client: Any) -> None:
        client.connect("end-of-message",
                       lambda context, chunk: context.change_from("<bounce@example.net>"))

    def second(client: Any) -> None:
        def eom(context: Any, chunk: bytes) -> None:
            seen.extend((n, c.action, c.args) for n, c in context.earlier_changes)

        client.connect("end-of-message", eom)

    composed = Composed([spec("first", first), spec("second", second)])
    result = composed.run()
    assert seen == [("first", "change_from", ("<bounce@example.net>", None))]
    assert result.last.message.sender == "<bounce@example.net>"
