"""Handlers may return a Reply, a modification, or a modification Queued for end-of-message
(milterkit.responses); examples/return_responses.py shows them."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

import pytest

from milterkit import ActionFlag, Client, Queued, Reply, ReplyError
from milterkit.protocol import AddHeader, ChangeHeader, InsertHeader, Quarantine, ReplaceBody
from milterkit.testing import Message, run_in_process

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "return_responses.py"


def example_setup() -> Any:
    spec = importlib.util.spec_from_file_location("return_responses", EXAMPLE)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.setup


def test_reply_is_a_verdict_with_its_smtp_reply() -> None:
    outcome = run_in_process(example_setup(),
                             Message.build(sender="spammer@example.com")).last
    assert (outcome.verdict, outcome.reply) == ("reject", "550 5.7.1 We do not take mail from you")


def test_a_4xx_reply_at_rcpt_fails_that_recipient_temporarily() -> None:
    outcome = run_in_process(example_setup(), Message.build(
        sender="a@example.org", recipients=["x@busy.example", "y@example.org"])).last
    assert [(r.status.name, r.reply) for r in outcome.rejected_recipients] == [
        ("TEMPORARY_FAILURE", "451 4.7.1 Mailbox busy, try again later")]
    assert outcome.verdict == "pass"


def test_queued_modifications_go_out_at_end_of_message_before_its_own() -> None:
    outcome = run_in_process(example_setup(), Message.build(headers=[("X-Scan", "old")])).last
    assert outcome.modifications == [AddHeader("X-Sender-Domain", "example.com"),
                                     AddHeader("X-Filtered-By", "milterkit"),
                                     ChangeHeader(1, "X-Scan", "")]


def test_the_queue_belongs_to_its_message() -> None:
    results = run_in_process(example_setup(), [Message.build(), Message.build(
        sender="other@example.org")])
    assert AddHeader("X-Sender-Domain", "example.com") in results.messages[0].modifications
    assert AddHeader("X-Sender-Domain", "example.com") not in results.messages[1].modifications


def run_with(stage: str, result: object, **options: Any) -> Any:
    def setup(client: Client) -> None:
        client.connect(stage, lambda context, *args: result)

    return run_in_process(setup, Message.build(), check=False, **options)


def test_a_bare_modification_before_end_of_message_is_an_action_error(
    caplog: pytest.LogCaptureFixture,
) -> None:
    outcome = run_with("envelope-from", AddHeader("X-Too", "early")).last
    assert outcome.verdict == "temporary-failure"  # the default exception policy
    assert "return milterkit.Queued(...) to queue it" in caplog.text


def test_every_kind_of_modification_can_be_returned_at_end_of_message() -> None:
    changes = [InsertHeader(0, "X-Top", "1"), ReplaceBody(b"new\r\n"), Quarantine("hold")]
    outcome = run_with("end-of-message", changes).last
    assert outcome.modifications == [InsertHeader(0, "X-Top", "1"), ReplaceBody(b"new\r\n")]
    assert outcome.quarantine_reason == "hold"


def test_a_queued_modification_without_its_action_fails_at_end_of_message(
    caplog: pytest.LogCaptureFixture,
) -> None:
    def setup(client: Client) -> None:
        client.context_options["actions"] = ActionFlag.CHANGE_BODY  # no ADD_HEADERS asked for
        client.connect("envelope-from",
                       lambda context, address: Queued(AddHeader("X-Q", "1")))

    outcome = run_in_process(setup, Message.build(), check=False).last
    assert outcome.verdict == "temporary-failure"
    assert "ADD_HEADERS" in caplog.text


def test_reply_and_queued_are_validated_when_built() -> None:
    with pytest.raises(ReplyError):
        Reply("550", "4.7.1", "class mismatch")
    with pytest.raises(TypeError):
        Queued("not a modification")  # type: ignore[arg-type]


def test_something_else_is_still_a_status_error(caplog: pytest.LogCaptureFixture) -> None:
    outcome = run_with("envelope-from", "reject").last
    assert outcome.verdict == "temporary-failure"
    assert "return a milterkit.Status, None, a milterkit.Reply or a modification" in caplog.text
