"""The values a reply can carry: the rules every reply class checks in its constructor, so the
milter's API and the MTA side's decoder apply one rule (h11's events validate themselves too).

Each check raises :class:`~milterkit.protocol.errors.InvalidValue`; the reply decoder turns it
into a :class:`~milterkit.protocol.errors.MalformedPacket`, the peer's fault.
"""

from __future__ import annotations

from .errors import InvalidValue


def check_header_name(name: str) -> None:
    """A header name must be printable ASCII-ish text without spaces, controls or a colon."""
    if not isinstance(name, str):
        raise TypeError("header name and value must be str")
    if not name:
        raise InvalidValue("header name must not be empty")
    for char in name:
        if char == ":" or ord(char) <= 32 or ord(char) == 127:
            raise InvalidValue(f"header name {name!r} contains {char!r}")


def check_header_value(value: str) -> None:
    """A header value may fold with ``\\n`` + whitespace but holds no NUL or CR."""
    if not isinstance(value, str):
        raise TypeError("header name and value must be str")
    if "\0" in value or "\r" in value:
        raise InvalidValue(
            f"header value {value!r} contains NUL or CR; fold lines with '\\n' + whitespace"
        )


def check_header_index(index: int) -> None:
    """A header index is a 32-bit unsigned int (0 = topmost for an insert)."""
    if isinstance(index, bool) or not isinstance(index, int) or not 0 <= index <= 0xFFFFFFFF:
        raise InvalidValue(f"header index must be an int from 0 to 2**32-1, not {index!r}")


def check_line(what: str, text: str) -> None:
    """One non-empty line: no NUL, CR or LF (addresses, quarantine reasons)."""
    if not isinstance(text, str) or not text:
        raise InvalidValue(f"{what} must be one non-empty line, not {text!r}")
    if any(c in text for c in "\0\r\n"):
        raise InvalidValue(f"{what} must be one non-empty line, not {text!r}")
