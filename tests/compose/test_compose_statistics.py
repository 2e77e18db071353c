"""Each filter's verdict is in the message-processed result and the connection's summary."""

from __future__ import annotations

import logging
from typing import Any

import pytest
from composelib import Composed, recording, returning, spec

from milterkit import Status
from milterkit.testing import Message

S = Status


def test_message_processed_carries_each_filters_verdict() -> None:
    composed = Composed([spec("accepts", returning("envelope-recipient", S.ACCEPT)),
                         spec("watches", recording([], ["header"])),
                         spec("tempfails", returning("header", S.TEMPFAIL), evaluation=True)])
    composed.run()
    (result,) = composed.results
    assert result.filter_verdicts == {"accepts": "accept", "watches": "continue",
                                      "tempfails": "temporary-failure (evaluation)"}


def test_the_connection_summary_counts_verdicts(caplog: pytest.LogCaptureFixture) -> None:
    def picky(client: Any) -> None:
        def mail(context: Any, sender: str) -> Status | None:
            return S.REJECT if "spam" in sender else None

        client.connect("envelope-from", mail)

    composed = Composed([spec("picky", picky), spec("adds", recording([], ["header"]))])
    with caplog.at_level(logging.INFO, "milterkit.compose"):
        composed.run([Message.build(sender="spam@example.com"),
                      Message.build(sender="ok@example.com", headers=[("A", "1")]),
                      Message.build(sender="ok2@example.com", headers=[("A", "1")])])
    (line,) = [r.getMessage() for r in caplog.records if "filter verdicts" in r.getMessage()]
    assert line.endswith("filter verdicts: picky: continue 2, reject 1; adds: continue 3")
