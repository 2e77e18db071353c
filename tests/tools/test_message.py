"""The MTA-side message model: parsing mail files, MTA semantics of modifications, the diff."""

from __future__ import annotations

from milterkit import Status
from milterkit.protocol import replies as rep
from milterkit.testing import Message, parse_message
from milterkit.testing.report import message_diff, status_line
from milterkit.testing.results import MessageOutcome


def test_parse_message_keeps_folding_and_takes_the_envelope() -> None:
    message = parse_message(
        b"From: \"Alice A.\" <alice@example.net>\r\nTo: bob@example.org,\r\n"
        b"  Carol <carol@example.org>\r\nSubject: one\r\n\ttwo\r\n\r\nbody\nline\n")
    assert message.sender == "<alice@example.net>"
    assert message.recipient_addresses == ["<bob@example.org>", "<carol@example.org>"]
    assert message.headers[2] == ("Subject", " one\n\ttwo")
    assert message.header("subject") == "one\n\ttwo"
    assert message.body == b"body\r\nline\r\n"
    assert message.to_bytes().endswith(b"Subject: one\r\n\ttwo\r\n\r\nbody\r\nline\r\n")


def test_parse_message_without_headers_is_all_body() -> None:
    message = parse_message(b"just text, no header\n")
    assert message.headers == [] and message.body == b"just text, no header\r\n"


def test_change_header_edge_cases() -> None:
    base = Message.build(headers=[("A", "1"), ("B", "2"), ("a", "3")])
    changed = base.apply([rep.ChangeHeader(0, "a", "first"), rep.ChangeHeader(2, "A", "second"),
                          rep.ChangeHeader(5, "A", "appended"), rep.ChangeHeader(9, "Z", "")])
    assert changed.header_lines() == ["A: first", "B: 2", "a: second", "A: appended"]
    inserted = base.apply([rep.InsertHeader(1, "X", "x"), rep.InsertHeader(99, "Y", "y")])
    assert [name for name, _ in inserted.headers] == ["A", "X", "B", "a", "Y"]
    assert base.header_lines() == ["A: 1", "B: 2", "a: 3"]  # apply() copies


def test_delete_recipient_matches_with_or_without_brackets() -> None:
    base = Message.build(recipients=["Bob@Example.org", "carol@example.org"])
    assert base.apply([rep.DeleteRecipient("bob@example.org")]).recipient_addresses == [
        "<carol@example.org>"]


def test_diff_and_status_line() -> None:
    before = Message.build(headers=[("Subject", "hi")], body="a\nb\n")
    after = before.apply([rep.AddHeader("X", "y"), rep.ReplaceBody(b"a\r\nc\r\n")])
    lines = message_diff(before, after)
    assert lines[lines.index("Header:------------------------------") + 1:] == [
        "  Subject: hi", "+ X: y", "Body:------------------------------", "  a", "- b", "+ c"]
    outcome = MessageOutcome(before, after, status=Status.REJECT,
                             reply="550-5.7.1 one\r\n550 5.7.1 100%% sure")
    assert status_line(outcome) == "status: reject [550]<5.7.1>(one / 100% sure)"
