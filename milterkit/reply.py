"""SMTP reply texts for ``set_reply``: validated as libmilter and Postfix check them.

A reply is a 3-digit code ``[45]dd``, an optional enhanced code ``c.ddd.ddd`` whose class equals the
code's first digit (Postfix refuses ``550 4.7.1``), and up to 32 lines of at most 980 characters
with no CR, LF or NUL inside a line. Every ``%`` is doubled, because both MTAs read the text as a
format. Lines are joined with CRLF, every line but the last marked with ``-``.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from .protocol.constants import MAX_REPLY_LINE_LENGTH, MAX_REPLY_LINES

_CODE = re.compile(r"[45][0-9][0-9]\Z")
_XCODE = re.compile(r"([245])\.([0-9]{1,3})\.([0-9]{1,3})\Z")


class ReplyError(ValueError):
    """A reply code, enhanced code or text that an MTA would refuse."""


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
