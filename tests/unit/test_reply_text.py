"""``format_reply``: the SMTP reply text of a ``y`` packet, validated like libmilter and Postfix.

The data-driven cases follow milter-manager's ``test_set_reply`` / ``test_format_reply``
(reference section 9.2), adapted to milterkit's stricter rules and its own messages.
"""

from __future__ import annotations

from collections.abc import Sequence

import pytest

from milterkit import ReplyError, format_reply
from milterkit.protocol import MAX_REPLY_LINE_LENGTH, MAX_REPLY_LINES

ACCEPTED: list[tuple[str | int, str | None, str | Sequence[str] | None, str]] = [
    ("450", None, "rejected", "450 rejected"),
    (450, None, "rejected", "450 rejected"),
    ("450", "4.2.0", "rejected by Greylist", "450 4.2.0 rejected by Greylist"),
    ("550", "5.7.1", None, "550 5.7.1"),
    # Postfix wants a space after the code even when there is nothing else.
    ("550", None, None, "550 "),
    ("421", "4.7.0", "closing", "421 4.7.0 closing"),
    ("554", "5.123.456", "x", "554 5.123.456 x"),
    (
        "551", "5.7.1", "Forwarding to\nremote hosts\r\ndisabled",
        "551-5.7.1 Forwarding to\r\n551-5.7.1 remote hosts\r\n551 5.7.1 disabled",
    ),
    (
        "551", None, "Forwarding to\nremote hosts\r\ndisabled",
        "551-Forwarding to\r\n551-remote hosts\r\n551 disabled",
    ),
    ("550", "5.7.1", ["one", "two"], "550-5.7.1 one\r\n550 5.7.1 two"),
    ("550", "5.7.1", [], "550 5.7.1"),
    ("550", None, "100% spam", "550 100%% spam"),
    ("550", None, "%%", "550 %%%%"),
    ("450", None, "trailing CR\r", "450 trailing CR"),
]


@pytest.mark.parametrize(("code", "xcode", "text", "expected"), ACCEPTED)
def test_accepted_replies_format_exactly(
    code: str | int, xcode: str | None, text: str | Sequence[str] | None, expected: str
) -> None:
    assert format_reply(code, xcode, text) == expected


REFUSED: list[tuple[str | int, str | None, str | Sequence[str] | None, str]] = [
    ("399", None, None, "three digits starting with 4 or 5, not '399'"),
    (600, None, None, "not '600'"),
    ("250", None, None, "not '250'"),
    ("45", None, None, "not '45'"),
    ("4500", None, None, "not '4500'"),
    ("5x0", None, None, "not '5x0'"),
    (" 550", None, None, "not ' 550'"),
    ("450", "5.7.1", None, "class 5, but reply code '450' has class 4"),
    ("550", "4.7.1", None, "class 4, but reply code '550' has class 5"),
    ("550", "2.0.0", None, "class 2, but reply code '550' has class 5"),
    ("550", "", None, "must look like 5.7.1"),
    ("550", "5", None, "not '5'"),
    ("550", "5.", None, "not '5.'"),
    ("550", "5.7", None, "not '5.7'"),
    ("550", "5.7.", None, "not '5.7.'"),
    ("550", "55.7.1", None, "not '55.7.1'"),
    ("550", "5.7489.1", None, "not '5.7489.1'"),
    ("550", "5.7.1234", None, "not '5.7.1234'"),
    ("550", "3.0.0", None, "not '3.0.0'"),
    ("550", "5.7.1", ["a\nb"], "line 1 contains LF"),
    ("550", "5.7.1", ["ok", "a\rb"], "line 2 contains CR"),
    ("550", "5.7.1", "nul\0inside", "line 1 contains NUL"),
    ("550", None, ["x"] * (MAX_REPLY_LINES + 1), "33 lines; at most 32"),
    ("550", None, "x" * (MAX_REPLY_LINE_LENGTH + 1), "981 characters long"),
    # '%' is doubled before the length check: that is what the MTA receives.
    ("550", None, "%" * 491, "982 characters long (after doubling %)"),
]


@pytest.mark.parametrize(("code", "xcode", "text", "message"), REFUSED)
def test_refused_replies_say_why(
    code: str | int, xcode: str | None, text: str | Sequence[str] | None, message: str
) -> None:
    with pytest.raises(ReplyError) as info:
        format_reply(code, xcode, text)
    assert message in str(info.value)
    assert isinstance(info.value, ValueError)


def test_the_caps_are_inclusive() -> None:
    lines = ["x" * MAX_REPLY_LINE_LENGTH] * MAX_REPLY_LINES
    text = format_reply("550", None, lines)
    assert text.count("\r\n") == MAX_REPLY_LINES - 1
    assert format_reply("550", None, "%" * 490) == "550 " + "%" * 980


def test_multiline_reply_marks_every_line_but_the_last() -> None:
    text = format_reply("550", "5.7.0", [f"line {n}" for n in range(5)])
    lines = text.split("\r\n")
    assert [line[:4] for line in lines] == ["550-"] * 4 + ["550 "]
    assert not text.endswith("\r\n")
