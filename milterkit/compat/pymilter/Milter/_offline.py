"""What the two offline test harnesses (:mod:`.testctx`, :mod:`.test`) share: reading a message
file, recording modifications, and macro visibility per stage."""

from __future__ import annotations

import email
import email.message
import email.policy
from io import BytesIO
from typing import IO, Any


def read_message(fp: IO[bytes]) -> email.message.Message:
    """Parse a message file as pymilter's ``mime.message_from_file`` does (bytes in)."""
    return email.message_from_binary_file(fp, policy=email.policy.compat32)


def header_bytes(value: Any) -> bytes:
    """A parsed header value back as the raw bytes an MTA would send."""
    chunks = getattr(value, "_chunks", None)
    if chunks is not None:  # an email.header.Header (undecodable bytes)
        return b"".join(str(text).encode("ascii", "surrogateescape") for text, _ in chunks)
    return str(value).encode("ascii", "surrogateescape")


def split_message(msg: email.message.Message) -> tuple[bytes, bytes]:
    """The message's header block and its body, as written back out."""
    data = msg.as_bytes()
    head, _, body = data.partition(b"\n\n")
    return head, body


def macro_names(macros: str | bytes | list[Any] | tuple[Any, ...]) -> set[bytes]:
    """setsymlist's argument(s) as a set of byte names."""
    items = macros if isinstance(macros, (list, tuple)) else [macros]
    names: set[bytes] = set()
    for item in items:
        raw = item.encode("utf8") if isinstance(item, str) else bytes(item)
        names.update(part for part in raw.split(b" ") if part)
    return names


class Recorder:
    """Stubs of the modification actions, recording what a filter did at end-of-message."""

    _sender: str | None

    def _reset_recording(self) -> None:
        self._body: BytesIO | None = None
        self._bodyreplaced = False
        self._headerschanged = False
        self._envfromchanged = False
        self._reply: tuple[Any, ...] | None = None
        self._msg: email.message.Message | None = None
        self._addrcpt: list[Any] = []
        self._delrcpt: list[str] = []
        self._quarantine: str | None = None

    def _in_eom(self, action: str) -> email.message.Message:
        if not self._body:
            raise OSError(f"{action} not called from eom()")
        assert self._msg is not None
        return self._msg

    def addheader(self, field: str, value: str, idx: int = -1) -> None:
        self._in_eom("addheader")[field] = value
        self._headerschanged = True

    def chgheader(self, field: str, idx: int, value: str | None) -> None:
        msg = self._in_eom("chgheader")
        if not value:
            del msg[field]
        else:
            msg.replace_header(field, value) if field in msg else msg.__setitem__(field, value)
        self._headerschanged = True

    def addrcpt(self, rcpt: str, params: str | None = None) -> None:
        self._in_eom("addrcpt")
        self._addrcpt.append((rcpt, params))

    def delrcpt(self, rcpt: str) -> None:
        self._in_eom("delrcpt")
        self._delrcpt.append(rcpt)

    def replacebody(self, chunk: bytes) -> None:
        if not self._body:
            raise OSError("replacebody not called from eom()")
        self._body.write(chunk)
        self._bodyreplaced = True

    def chgfrom(self, sender: str, params: str | None = None) -> None:
        self._in_eom("chgfrom")
        self._envfromchanged = True
        self._sender = sender

    def quarantine(self, reason: str) -> None:
        self._in_eom("quarantine")
        self._quarantine = reason

    def setreply(self, rcode: str, xcode: str | None = None, *msg: str | None) -> None:
        self._reply = (rcode, xcode, *msg)
