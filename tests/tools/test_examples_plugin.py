"""Every example filter, tested through the pytest plugin: in-process with the ``milter``
fixture, and over a real socket with ``milter_server`` (``milterkit run`` as a subprocess)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from milterkit.testing import (
    InProcess,
    Message,
    assert_body_replaced,
    assert_header_added,
    assert_not_modified,
    assert_not_quarantined,
    assert_quarantined,
    assert_recipient_rejected,
    assert_verdict,
)
from milterkit.testing.pytest_plugin import MilterProcess

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
Milter = Callable[..., InProcess]


def example(name: str) -> str:
    return str(EXAMPLES / f"{name}.py")


def test_add_header(milter: Milter, message: Callable[..., Message]) -> None:
    result = milter(example("add_header")).run(message(headers=[("Subject", "hi")]))
    assert_verdict(result, "pass")
    assert_header_added(result, "X-Milterkit", "yes")
    assert result.last.message.header_lines()[-1] == "X-Milterkit: yes"


def test_reject_sender(milter: Milter, message: Callable[..., Message]) -> None:
    runner = milter(example("reject_sender"))
    result = runner.run(message(sender="spammer@spam.example"))
    outcome = assert_verdict(result, "reject", code="550", xcode="5.7.1", stage="envelope-from")
    assert outcome.text is not None and outcome.text.startswith("Mail from spam.example")
    assert_verdict(runner.run(message(sender="friend@example.net")), "pass")


def test_reject_recipient(milter: Milter, message: Callable[..., Message]) -> None:
    result = milter(example("reject_recipient")).run(
        message(recipients=["closed@example.com", "open@example.com"]))
    assert_verdict(result, "pass")
    assert_recipient_rejected(result, "closed@example.com", code="550")
    assert result.last.message.recipient_addresses == ["<open@example.com>"]
    assert_not_modified(result)


def test_replace_body(milter: Milter, message: Callable[..., Message]) -> None:
    body = "x" * 70000 + "\n"  # two BODY chunks
    result = milter(example("replace_body")).run(message(body=body))
    assert_body_replaced(result, body.replace("\n", "\r\n").encode()
                         + b"\r\n-- \r\nThis message was checked by milterkit.\r\n")


def test_quarantine(milter: Milter, message: Callable[..., Message]) -> None:
    runner = milter(example("quarantine"))
    held = runner.run(message(headers=[("Subject", "please [Quarantine] me")]))
    assert_quarantined(held, "subject asks for quarantine")
    assert_not_quarantined(runner.run(message(headers=[("Subject", "fine")])))


@pytest.mark.parametrize("name", ["async_lookup", "progress_lookup"])
def test_lookups(name: str, milter: Milter, message: Callable[..., Message]) -> None:
    result = milter(example(name)).run(
        message(recipients=["alice@example.com", "nobody@example.com"]))
    assert_verdict(result, "pass")
    assert_recipient_rejected(result, "nobody@example.com", code="550")
    assert result.last.message.recipient_addresses == ["<alice@example.com>"]
    if name == "progress_lookup":
        assert result.last.progress == 2  # one keep-alive per recipient lookup


def test_two_handlers(milter: Milter, message: Callable[..., Message]) -> None:
    result = milter(example("two_handlers")).run(
        message(recipients=["a@example.com", "b@example.com"], body="12345\n"))
    assert_header_added(result, "X-Body-Size", "7")
    assert_header_added(result, "X-Recipients", "2")


def test_sendmail_profile_and_several_messages(milter: Milter,
                                               message: Callable[..., Message]) -> None:
    result = milter(example("add_header"), profile="sendmail").run([message(), message()])
    assert [m.verdict for m in result.messages] == ["pass", "pass"]
    assert all(m.message.header("X-Milterkit") == "yes" for m in result.messages)


@pytest.mark.parametrize("family", ["unix", "inet"])
def test_examples_over_a_real_socket(family: str, milter_server: Callable[..., MilterProcess],
                                     message: Callable[..., Message]) -> None:
    process = milter_server(EXAMPLES / "reject_recipient.py", family=family)
    assert process.spec.startswith(family)
    result = process.run([message(recipients=["closed@example.com", "x@example.com"])] * 2)
    assert len(result.messages) == 2
    assert_recipient_rejected(result, "closed@example.com", code="550")
    server = milter_server(EXAMPLES / "async_lookup.py")
    assert_verdict(server.run(message(recipients=["nobody@example.com"])), "reject",
                   code="550", stage="envelope-recipient")


def test_assertion_messages_say_what_happened(milter: Milter,
                                              message: Callable[..., Message]) -> None:
    result = milter(example("add_header")).run(message())
    with pytest.raises(AssertionError, match=r"verdict is 'pass', not 'reject'"):
        assert_verdict(result, "reject")
    with pytest.raises(AssertionError, match=r"add-header X-Milterkit: 'yes'"):
        assert_header_added(result, "X-Other", "no")
    with pytest.raises(AssertionError, match="not quarantined"):
        assert_quarantined(result)


def test_a_milter_that_never_listens_is_stopped_and_its_log_shown(tmp_path: Path) -> None:
    slow = tmp_path / "slow_setup.py"
    slow.write_text("import time\n\n\ndef setup(client):\n"
                    "    print('setting up slowly', flush=True)\n    time.sleep(30)\n")
    process = MilterProcess(str(slow), f"unix:{tmp_path}/never.sock")
    try:
        with pytest.raises(TimeoutError, match="did not listen") as caught:
            process.wait_ready(timeout=3.0)
        assert process.process.poll() is not None  # stopped, not left running
        assert "setting up slowly" in str(caught.value)
    finally:
        process.stop()
