"""SMTP replies: the texts of ``set_reply``, validated as libmilter and Postfix check them, and
the packet each verdict goes out as.

A reply is a 3-digit code ``[45]dd``, an optional enhanced code ``c.ddd.ddd`` whose class equals the
code's first digit (Postfix refuses ``550 4.7.1``), and up to 32 lines of at most 980 characters
with no CR, LF or NUL inside a line. Every ``%`` is doubled, because both MTAs read the text as a
format. Lines are joined with CRLF, every line but the last marked with ``-``.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from .errors import ReplyError as ReplyError  # re-exported: it was defined here
from .protocol.constants import MAX_REPLY_LINE_LENGTH, MAX_REPLY_LINES
from .protocol.replies import (
    ACCEPT_PACKET,
    CONTINUE_PACKET,
    DISCARD_PACKET,
    REJECT_PACKET,
    SKIP_PACKET,
    TEMPFAIL_PACKET,
    ReplyText,
)
from .status import Status

_CODE = re.compile(r"[45][0-9][0-9]\Z")
_XCODE = re.compile(r"([245])\.([0-9]{1,3})\.([0-9]{1,3})\Z")


#: The packet of each verdict without a reply text. NO_REPLY at a stage the MTA still waits on
#: (an emulated no-reply step) is a ``c``, as libmilter writes.
VERDICT_PACKETS: dict[Status, bytes] = {
    Status.CONTINUE: CONTINUE_PACKET,
    Status.NO_REPLY: CONTINUE_PACKET,
    Status.REJECT: REJECT_PACKET,
    Status.TEMPORARY_FAILURE: TEMPFAIL_PACKET,
    Status.ACCEPT: ACCEPT_PACKET,
    Status.DISCARD: DISCARD_PACKET,
    Status.SKIP: SKIP_PACKET,
}
#: Verdicts that carry the reply text set with ``set_reply``, with the code class they need.
REPLY_CLASS: dict[Status, str] = {Status.REJECT: "5", Status.TEMPORARY_FAILURE: "4"}


def verdict_packet(status: Status, reply: str | None = None) -> bytes:
    """The packet for ``status``: a ``y`` with ``reply`` for REJECT or TEMPORARY_FAILURE when
    one is set, else the bare verdict."""
    if reply is not None and status in REPLY_CLASS:
        return ReplyText(reply).to_bytes()
    return VERDICT_PACKETS[status]


def parse_reply(reply: str) -> str:
    """Validate a whole reply given as one string: ``"451 4.3.0 text"``."""
    code, _, rest = reply.partition(" ")
    first, _, text = rest.partition(" ")
    if first and first[0].isdigit() and "." in first:
        return format_reply(code, first, text or None)
    return format_reply(code, None, rest or None)


def format_reply(
    code: str | int,
    xcode: str | None = None,
    text: str | Sequence[str] | None = None,
) -> str:
    """Validate and format a reply; return the ``y`` packet's text (no trailing CRLF).

    ``text`` is one string (``\\n`` separates lines; a ``\\r`` before it is dropped) or a
    sequence of lines.
    """
    code = str(code)
    if not _CODE.match(code):
        raise ReplyError(f"reply code must be three digits starting with 4 or 5, not {code!r}")
    if xcode is not None:
        match = _XCODE.match(xcode)
        if not match:
            raise ReplyError(
                f"enhanced status code must look like 5.7.1 (class.subject.detail), not {xcode!r}"
            )
        if match.group(1) != code[0]:
            raise ReplyError(
                f"enhanced status code {xcode!r} has class {match.group(1)}, but reply code "
                f"{code!r} has class {code[0]}; MTAs refuse mismatched classes"
            )
    if text is None:
        lines: list[str] = [""]
    elif isinstance(text, str):
        lines = [line[:-1] if line.endswith("\r") else line for line in text.split("\n")]
    else:
        lines = list(text)
        if not lines:
            lines = [""]
    if len(lines) > MAX_REPLY_LINES:
        raise ReplyError(f"reply has {len(lines)} lines; at most {MAX_REPLY_LINES} are allowed")
    out = []
    last = len(lines) - 1
    for number, line in enumerate(lines):
        for bad, what in (("\r", "CR"), ("\n", "LF"), ("\0", "NUL")):
            if bad in line:
                raise ReplyError(f"reply line {number + 1} contains {what}: {line!r}")
        line = line.replace("%", "%%")
        if len(line) > MAX_REPLY_LINE_LENGTH:
            raise ReplyError(
                f"reply line {number + 1} is {len(line)} characters long (after doubling %); "
                f"at most {MAX_REPLY_LINE_LENGTH} are allowed"
            )
        separator = " " if number == last else "-"
        parts = [part for part in (xcode, line) if part]
        # Postfix wants a space or '-' right after the code, even with no text.
        out.append(code + separator + " ".join(parts))
    return "\r\n".join(out)


__all__ = ["REPLY_CLASS", "VERDICT_PACKETS", "format_reply", "parse_reply", "verdict_packet"]
