"""Text reports of a session, in milter-test-server's format.

``status: reject [550]<5.7.1>(Command rejected)``, ``elapsed-time: 0.00136 seconds``,
``Quarantine reason: …``, and a diff of the message before and after the milter (``Envelope:``,
``Header:``, ``Body:`` sections whose lines start with two spaces, or with ``-`` or ``+`` and a
space).
"""

from __future__ import annotations

import difflib
from collections.abc import Iterator, Sequence

from .message import Message
from .results import MessageOutcome, SessionResult

_RED = "\033[31m"
_GREEN = "\033[32m"
_RESET = "\033[0m"
_RULE = "-" * 30


def status_line(outcome: MessageOutcome) -> str:
    """``status: pass`` or ``status: reject [550]<5.7.1>(text)`` (codes only from a ``y``)."""
    line = f"status: {outcome.verdict}"
    if outcome.reply:
        xcode = outcome.xcode
        text = (outcome.text or "").replace("\n", " / ")
        line += f" [{outcome.code}]"
        if xcode:
            line += f"<{xcode}>"
        line += f"({text})"
    return line


def outcome_report(outcome: MessageOutcome, *, show_message: bool = False,
                   color: bool = False) -> list[str]:
    """The lines milter-test-server prints for one message."""
    lines = [status_line(outcome), f"elapsed-time: {outcome.elapsed:.5f} seconds"]
    for rejected in outcome.rejected_recipients:
        reply = f" [{rejected.reply}]" if rejected.reply else ""
        lines.append(f"rejected-recipient: {rejected.recipient.address} "
                     f"({rejected.status.nick}){reply}")
    if outcome.quarantine_reason is not None:
        lines.append(f"Quarantine reason: {outcome.quarantine_reason}")
    if show_message:
        lines.append("")
        lines.extend(message_diff(outcome.original, outcome.message, color=color))
    return lines


def session_report(result: SessionResult, *, show_message: bool = False,
                   color: bool = False) -> list[str]:
    """Every message of a session, separated by a blank line when there are several."""
    lines: list[str] = []
    if result.connection_verdict is not None and not result.messages:
        lines.append(f"status: {result.connection_verdict.nick} (at connect/helo)")
    for number, outcome in enumerate(result.messages):
        if len(result.messages) > 1:
            if number:
                lines.append("")
            lines.append(f"message: {number + 1}")
        lines.extend(outcome_report(outcome, show_message=show_message, color=color))
    if result.error is not None:
        lines.append(f"error: {result.error}")
    return lines


def envelope_lines(message: Message) -> list[str]:
    """``MAIL FROM:<...> ARGS`` and one ``RCPT TO:<...> ARGS`` line per recipient."""
    lines = [" ".join(["MAIL FROM:" + message.sender, *message.sender_parameters])]
    lines += [" ".join(["RCPT TO:" + r.address, *r.parameters]) for r in message.recipients]
    return lines


def body_lines(body: bytes) -> list[str]:
    """The body as text lines (CRLF or LF ends; undecodable bytes shown as escapes)."""
    text = body.decode("utf-8", "backslashreplace").replace("\r\n", "\n")
    if text.endswith("\n"):
        text = text[:-1]
    return text.split("\n") if text else []


def message_diff(before: Message, after: Message, *, color: bool = False) -> list[str]:
    """The three sections of milter-test-server's ``--output-message``."""
    lines: list[str] = []
    sections = (
        ("Envelope", envelope_lines(before), envelope_lines(after)),
        ("Header", before.header_lines(), after.header_lines()),
        ("Body", body_lines(before.body), body_lines(after.body)),
    )
    for title, old, new in sections:
        lines.append(f"{title}:{_RULE}")
        lines.extend(diff_lines(old, new, color=color))
    return lines


def diff_lines(old: Sequence[str], new: Sequence[str], *, color: bool = False) -> list[str]:
    """Two spaces before kept entries, ``-`` and a space before removed ones, ``+`` and a space
    before added ones; an entry with embedded newlines (a folded header) prints one line per
    physical line, all with its prefix."""
    return [_paint(prefix, line, color) for prefix, line in _diff(old, new)]


def _diff(old: Sequence[str], new: Sequence[str]) -> Iterator[tuple[str, str]]:
    matcher = difflib.SequenceMatcher(a=old, b=new, autojunk=False)
    for tag, i1, i2, j1, j2 in matcher.get_opcodes():
        if tag == "equal":
            for entry in old[i1:i2]:
                yield from (("  ", line) for line in entry.split("\n"))
            continue
        for entry in old[i1:i2]:
            yield from (("- ", line) for line in entry.split("\n"))
        for entry in new[j1:j2]:
            yield from (("+ ", line) for line in entry.split("\n"))


def _paint(prefix: str, line: str, color: bool) -> str:
    text = prefix + line
    if not color or prefix == "  ":
        return text
    return f"{_RED if prefix == '- ' else _GREEN}{text}{_RESET}"
