"""examples/session_summary.py under ``milterkit run``: its count ends the runtime's real
"session ended" line, in text and in JSON (``notes``)."""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable
from pathlib import Path

from milterkit.testing import Message
from milterkit.testing.pytest_plugin import MilterProcess

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "session_summary.py"
Server = Callable[..., MilterProcess]
#: Two messages on one connection: one recipient, then two.
MESSAGES = [Message.build(recipients=["a@example.org"]),
            Message.build(recipients=["b@example.org", "c@example.org"])]


def summary_line(process: MilterProcess, pattern: str, timeout: float = 10.0) -> str:
    """The first line of the process's log matching ``pattern``; the runtime logs the summary
    once the connection is gone, which may be a moment after the session returned."""
    deadline = time.monotonic() + timeout
    while True:
        for line in process.output.splitlines():
            if re.search(pattern, line):
                return line
        if time.monotonic() > deadline:
            raise AssertionError(f"no line matching {pattern!r} in\n{process.output}")
        time.sleep(0.05)


def test_the_count_ends_the_session_summary(milter_server: Server) -> None:
    process = milter_server(EXAMPLE)
    result = process.run(MESSAGES)
    assert [outcome.status.name for outcome in result.messages] == ["CONTINUE", "CONTINUE"]
    line = summary_line(process, r"session ended \(finished\): 2 messages")
    assert re.search(r"milterkit\.server\[\d+\]: \[\d+\] session ended \(finished\): 2 messages "
                     r"\(continue 2\), [\d.]+ s, peer unix; recipients: 3$", line), line


def test_the_count_is_a_note_of_the_json_session_event(milter_server: Server) -> None:
    process = milter_server(EXAMPLE, args=["--log-format", "json"])
    process.run(MESSAGES)
    event = json.loads(summary_line(process, r'"event": "session".*"messages": 2'))
    assert event["reason"] == "finished"
    assert event["notes"] == ["recipients: 3"]
    assert event["message"].endswith("; recipients: 3")
