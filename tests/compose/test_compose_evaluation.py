"""Evaluation mode: a filter's verdicts and changes are recorded and logged, not sent."""

from __future__ import annotations

import logging
from typing import Any

import pytest
from composelib import Composed, recording, spec

from milterkit import Status

S = Status


def strict(calls: list[str]) -> Any:
    def setup(client: Any) -> None:
        def mail(context: Any, sender: str) -> Status:
            calls.append("strict:envelope-from")
            return context.reject("550", "5.7.1", "not you")  # type: ignore[no-any-return]

        def header(context: Any, name: str, value: str) -> None:
            calls.append("strict:header")

        def eom(context: Any, chunk: bytes) -> None:
            context.add_header("X-Strict", "1")

        client.connect("envelope-from", mail)
        client.connect("header", header)
        client.connect("end-of-message", eom)

    return setup


def test_an_evaluated_reject_is_logged_not_sent(caplog: pytest.LogCaptureFixture) -> None:
    calls: list[str] = []
    composed = Composed([spec("strict", strict(calls), evaluation=True),
                         spec("other", recording(calls, ["header"]))])
    with caplog.at_level(logging.INFO, "milterkit.compose"):
        result = composed.run()
    assert composed.answer("envelope-from") is S.CONTINUE
    assert result.last.status is S.CONTINUE
    assert result.last.delivered
    # The verdict ends its part in the message, as it would if it were trusted.
    assert calls.count("strict:envelope-from") == 1
    assert "strict:header" not in calls
    assert "other:header" in calls
    messages = [r.getMessage() for r in caplog.records]
    assert any("evaluation: filter strict would answer reject at envelope-from (550 5.7.1 "
               "not you)" in m for m in messages)
    assert composed.results[-1].filter_verdicts == {"strict": "reject (evaluation)",
                                                    "other": "continue"}


def test_evaluated_changes_are_logged_not_applied(caplog: pytest.LogCaptureFixture) -> None:
    def adds(client: Any) -> None:
        client.connect("end-of-message",
                       lambda context, chunk: context.add_header("X-Watched", "1"))

    composed = Composed([spec("watched", adds, evaluation=True)])
    with caplog.at_level(logging.INFO, "milterkit.compose"):
        result = composed.run()
    assert result.last.message.header("X-Watched") is None
    assert result.last.modifications == []
    assert any("evaluation: filter watched would add_header('X-Watched', '1')" in r.getMessage()
               for r in caplog.records)


def test_the_same_filter_trusted_rejects() -> None:
    calls: list[str] = []
    composed = Composed([spec("strict", strict(calls))])
    result = composed.run()
    assert result.last.status is S.REJECT
    assert result.last.smtp_reply == "550 5.7.1 not you"
