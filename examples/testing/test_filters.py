"""Tests a filter author would write for the example filters, with milterkit's pytest plugin.

Run them:  python -m pytest examples/testing -q

Installing milterkit is enough: its pytest plugin gives the ``milter`` (in-process),
``milter_server`` (``milterkit run`` in a subprocess) and ``message`` fixtures. A filter is
named the way ``milterkit run`` takes it (a file, ``file.py:function``) or given as its
``setup(client)`` function.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Callable
from pathlib import Path

import filters  # examples/testing/filters.py: pytest puts this folder on sys.path
import pytest
import quarantine  # examples/quarantine.py: conftest.py puts examples/ on sys.path
import replace_body

from milterkit.protocol import Abort, AddHeader, Body, Continue, EndOfMessage
from milterkit.testing import (
    POSTFIX,
    SENDMAIL,
    InProcess,
    Message,
    Profile,
    Recipient,
    SessionResult,
    Submission,
    Timeouts,
    assert_body_replaced,
    assert_from_changed,
    assert_header_added,
    assert_header_changed,
    assert_header_deleted,
    assert_header_inserted,
    assert_not_modified,
    assert_not_quarantined,
    assert_quarantined,
    assert_recipient_added,
    assert_recipient_deleted,
    assert_recipient_rejected,
    assert_verdict,
    parse_message,
    run_in_process,
    run_session,
    run_session_async,
)
from milterkit.testing.pytest_plugin import MilterProcess

EXAMPLES = Path(__file__).resolve().parents[1]
#: The fixtures' types, for annotated tests.
Milter = Callable[..., InProcess]
MilterServer = Callable[..., MilterProcess]
MakeMessage = Callable[..., Message]
#: Short waits: a filter under test answers at once, and a hang should fail fast.
QUICK = Timeouts(connect=5.0, command=5.0, content=5.0)
#: Every test marked with this runs once as Postfix and once as Sendmail would speak.
BOTH_MTAS = pytest.mark.parametrize("profile", [POSTFIX, SENDMAIL], ids=lambda p: p.name)

# What a mail client might have saved: Postfix hands these headers to the milter unchanged.
SAVED_MAIL = b"""\
From: Alice <alice@example.net>
To: Bob <bob@example.org>, closed@example.com
Subject: [EXTERNAL] Quarterly figures
X-Originating-IP: 192.0.2.7
X-Mailer: Tinker 1.0
X-Originating-IP: 198.51.100.23

The figures are attached.
"""


def example(name: str) -> str:
    """The path of ``examples/<name>.py``, as ``milterkit run`` takes it."""
    return str(EXAMPLES / f"{name}.py")


# ---------------------------------------------------------------------- the examples, in-process


def test_add_header(milter: Milter, message: MakeMessage) -> None:
    result = milter(example("add_header")).run(message(headers=[("Subject", "hi")]))
    assert_verdict(result, "pass")
    assert_header_added(result, "X-Milterkit", "yes")
    assert_not_quarantined(result)
    # The message as the MTA would deliver it: the new header comes last.
    assert result.last.message.header_lines() == ["Subject: hi", "X-Milterkit: yes"]


def test_a_failed_assertion_says_what_the_milter_did(milter: Milter, message: MakeMessage) -> None:
    result = milter(example("add_header")).run(message())
    with pytest.raises(AssertionError, match=r"modifications: add-header X-Milterkit: 'yes'"):
        assert_header_added(result, "X-Milterkit", "no")
    with pytest.raises(AssertionError, match="not quarantined"):
        assert_quarantined(result)


def test_reject_sender(milter: Milter, message: MakeMessage) -> None:
    runner = milter(example("reject_sender"))
    result = runner.run(message(sender="spammer@spam.example"))
    outcome = assert_verdict(result, "reject", code="550", xcode="5.7.1", stage="envelope-from")
    assert outcome.text == ("Mail from spam.example is not accepted here.\n"
                            "If you think this is a mistake,\n"
                            "write to postmaster@example.com.")
    assert not outcome.delivered
    assert_verdict(runner.run(message(sender="friend@example.net")), "pass")


@BOTH_MTAS
def test_reject_recipient(milter: Milter, message: MakeMessage, profile: Profile) -> None:
    result = milter(example("reject_recipient"), profile=profile).run(
        message(recipients=["closed@example.com", "open@example.com"]))
    # A refused recipient is dropped; the message still goes to the others.
    assert_verdict(result, "pass")
    assert_recipient_rejected(result, "closed@example.com", code="550")
    [refused] = result.last.rejected_recipients
    assert refused.recipient == Recipient("<closed@example.com>")
    assert refused.reply == "550 5.1.1 This mailbox is closed"
    assert result.last.message.recipients == [Recipient("<open@example.com>")]
    assert_not_modified(result)


def test_only_closed_recipients_fail_the_message(milter: Milter, message: MakeMessage) -> None:
    result = milter(example("reject_recipient")).run(message(recipients=["closed@example.com"]))
    assert_verdict(result, "reject", code="550", stage="envelope-recipient")


def test_replace_body_in_exact_chunks(milter: Milter, message: MakeMessage) -> None:
    runner = milter(replace_body.setup)  # a setup function works as well as a path
    # Submission says how the MTA sends the message: here, the body in three BODY packets.
    chunks = [b"one\r\n", b"two\r\n", b"three\r\n"]
    result = runner.run([Submission(message(body=b"".join(chunks)), chunks=chunks)])
    assert_body_replaced(result, b"one\r\ntwo\r\nthree\r\n" + replace_body.FOOTER)
    assert result.last.message.body == b"one\r\ntwo\r\nthree\r\n" + replace_body.FOOTER
    sent = [e.command for e in result.exchanges if isinstance(e.command, Body)]
    assert [b.chunk for b in sent] == chunks


def test_a_profile_of_your_own(milter: Milter, message: MakeMessage) -> None:
    # A Profile is a frozen dataclass: change one habit of an MTA and keep the rest.
    tiny_chunks = dataclasses.replace(POSTFIX, name="postfix-tiny-chunks", chunk_size=10)
    result = milter(example("replace_body"), profile=tiny_chunks).run(message(body="x" * 25))
    bodies = [e.command for e in result.exchanges if isinstance(e.command, Body)]
    assert [len(b.chunk) for b in bodies] == [10, 10, 5]
    assert_body_replaced(result)


@BOTH_MTAS
def test_quarantine(milter: Milter, profile: Profile) -> None:
    runner = milter(quarantine.setup, profile=profile)
    held = parse_message(b"From: a@example.net\nTo: b@example.org\n"
                         b"Subject: please [QUARANTINE] me\n\nbody\n")
    assert_quarantined(runner.run(held), quarantine.REASON)
    assert_not_quarantined(runner.run(parse_message(b"Subject: fine\n\nbody\n")))


def test_async_lookup_with_run_in_process() -> None:
    # A coroutine handler needs nothing special: the in-process driver runs an event loop.
    result = run_in_process(example("async_lookup"), Message.build(
        recipients=["alice@example.com", "mallory@example.com"]))
    assert_recipient_rejected(result, "mallory@example.com", code="550")
    assert result.last.message.recipient_addresses == ["<alice@example.com>"]


def test_several_messages_on_one_connection(message: MakeMessage) -> None:
    runner = InProcess(example("two_handlers"), timeouts=QUICK)
    result = runner.run([message(body="12345\n"), message(recipients=["a@x.org", "b@x.org"])])
    assert [m.verdict for m in result.messages] == ["pass", "pass"]
    first, second = result.messages
    assert_header_added(first, "X-Body-Size", "7")
    assert_header_added(second, "X-Recipients", "2")
    assert runner.context is not None and runner.context.messages == 2


# ---------------------------------------------------------------------- Postfix and Sendmail


def test_profiles_differ_on_the_wire(milter: Milter, message: MakeMessage) -> None:
    def commands(result: SessionResult) -> list[str]:
        return [type(e.command).__name__ for e in result.exchanges
                if type(e.command).__name__ != "DefineMacro"]

    postfix = milter(example("add_header"), profile=POSTFIX).run(message())
    sendmail = milter(example("add_header"), profile=SENDMAIL).run(message())
    # Postfix sends ABORT after every message; Sendmail only when a message had no verdict.
    assert commands(postfix)[-2:] == ["Abort", "Quit"]
    assert commands(sendmail)[-2:] == ["EndOfMessage", "Quit"]
    assert not any(isinstance(e.command, Abort) for e in sendmail.exchanges)
    # Each Exchange holds the replies to one command: the header change, then the verdict.
    [eom] = [e for e in postfix.exchanges if isinstance(e.command, EndOfMessage)]
    assert eom.replies == [AddHeader("X-Milterkit", "yes"), Continue()]


# ---------------------------------------------------------------------- a filter of our own


@BOTH_MTAS
def test_tidy_headers(milter: Milter, profile: Profile) -> None:
    result = milter(filters.tidy_headers, profile=profile).run(parse_message(SAVED_MAIL))
    assert_verdict(result, "pass")
    assert_header_inserted(result, "X-Tidy", "checked", index=0)
    assert_header_deleted(result, "X-Originating-IP", 2)
    assert_header_deleted(result, "X-Originating-IP", 1)
    assert_header_changed(result, "Subject", "Quarterly figures")
    # Deleting from the bottom up gives the same message under both MTAs' index rules.
    assert result.last.message.header_lines() == [
        "X-Tidy: checked",
        "From: Alice <alice@example.net>",
        "To: Bob <bob@example.org>, closed@example.com",
        "Subject: Quarterly figures",
        "X-Mailer: Tinker 1.0",
    ]


@BOTH_MTAS
def test_redirect(milter: Milter, message: MakeMessage, profile: Profile) -> None:
    result = milter(filters.redirect, profile=profile).run(
        message(sender="carol@internal.example", recipients=["old@example.com", "x@example.org"]))
    assert_recipient_deleted(result, "old@example.com")
    assert_recipient_added(result, "new@example.com")
    assert_recipient_added(result, "archive@example.com", parameters="NOTIFY=NEVER")
    assert_from_changed(result, "carol@example.com")
    delivered = result.last.message
    assert delivered.sender == "<carol@example.com>"
    assert delivered.recipients == [
        Recipient("<x@example.org>"),
        Recipient("<new@example.com>"),
        Recipient("<archive@example.com>", ("NOTIFY=NEVER",)),
    ]


def test_redirect_leaves_outside_senders_alone(milter: Milter, message: MakeMessage) -> None:
    result = milter(filters.redirect).run(message(sender="dave@example.net"))
    with pytest.raises(AssertionError, match="sender not changed"):
        assert_from_changed(result, "dave@example.com")
    assert result.last.message.sender == "<dave@example.net>"


# ---------------------------------------------------------------------- over a real socket


def test_over_a_unix_socket(milter_server: MilterServer, message: MakeMessage) -> None:
    server = milter_server(example("reject_sender"))
    assert server.spec.startswith("unix:")
    result = run_session(server.spec, [message(sender="x@junk.example"), message()],
                         profile=SENDMAIL, timeouts=QUICK)
    assert [m.verdict for m in result.messages] == ["reject", "pass"]
    assert_verdict(result.messages[0], "reject", code="550", xcode="5.7.1")
    assert result.ok and result.quit_sent


def test_concurrent_sessions_over_tcp(milter_server: MilterServer, message: MakeMessage) -> None:
    server = milter_server(str(EXAMPLES / "testing" / "filters.py"), family="inet")

    async def three_sessions() -> list[SessionResult]:
        senders = ["a@internal.example", "b@internal.example", "c@example.net"]
        return await asyncio.gather(*(
            run_session_async(server.spec, message(sender=s), timeouts=QUICK) for s in senders
        ))

    first, second, third = asyncio.run(three_sessions())
    assert_from_changed(first, "a@example.com")
    assert_from_changed(second, "b@example.com")
    assert_recipient_added(third, "archive@example.com")
    assert_header_inserted(third, "X-Tidy", "checked")
