"""The message as the MTA holds it: envelope, headers and body, and how milter changes apply.

Header values are stored *raw*: the exact text after the colon, leading space included
(``("Subject", " Hello")`` is ``Subject: Hello``). The MTA strips one leading space when it sends
a header to a milter that did not negotiate ``HEADER_LEADING_SPACE`` and prepends one to values
the milter adds; :meth:`Message.apply` does the same, so a test sees the message as it would be
delivered.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from ..protocol.replies import (
    AddHeader,
    AddRecipient,
    AddRecipientWithParameters,
    AnyReply,
    ChangeFrom,
    ChangeHeader,
    DeleteRecipient,
    InsertHeader,
    ReplaceBody,
)


@dataclass(frozen=True, slots=True)
class Recipient:
    """One envelope recipient (angle brackets kept, as the MTA sends it) and its ESMTP args."""

    address: str
    parameters: tuple[str, ...] = ()


def bracket(address: str) -> str:
    """``user@example.com`` -> ``<user@example.com>``; an address in brackets is kept."""
    address = address.strip()
    return address if address.startswith("<") and address.endswith(">") else f"<{address}>"


def _bare(address: str) -> str:
    return address.strip().removeprefix("<").removesuffix(">").lower()


def raw_value(value: str) -> str:
    """The raw form of a header value given as a user writes it: ``"Hi"`` -> ``" Hi"``."""
    return value if value[:1] in (" ", "\t") or not value else " " + value


@dataclass(slots=True)
class Message:
    """One mail: envelope sender and recipients, headers (name, raw value) and body bytes.

    The body uses CRLF line ends, as MTAs send it to milters.
    """

    sender: str = "<sender@example.com>"
    sender_parameters: tuple[str, ...] = ()
    recipients: list[Recipient] = field(
        default_factory=lambda: [Recipient("<receiver@example.org>")]
    )
    headers: list[tuple[str, str]] = field(default_factory=list)
    body: bytes = b""

    def __post_init__(self) -> None:
        # A recipient given as a string is taken as its raw form (as ``sender`` is); anything
        # else fails here, not deep inside the MTA simulation.
        recipients: list[Recipient] = []
        for recipient in self.recipients:
            if isinstance(recipient, str):
                recipient = Recipient(recipient)
            elif not isinstance(recipient, Recipient):
                raise TypeError(
                    f"Message recipients must be Recipient objects or strings, not {recipient!r}"
                )
            recipients.append(recipient)
        self.recipients = recipients

    @classmethod
    def build(
        cls,
        sender: str = "sender@example.com",
        recipients: Sequence[str] = ("receiver@example.org",),
        headers: Iterable[tuple[str, str]] = (),
        body: bytes | str = b"",
    ) -> Message:
        """A message from friendly values: bare addresses, header values without their
        leading space, a body as text or bytes (bare LF becomes CRLF)."""
        data = body.encode("utf-8", "surrogateescape") if isinstance(body, str) else bytes(body)
        return cls(
            sender=bracket(sender),
            recipients=[Recipient(bracket(r)) for r in recipients],
            headers=[(name, raw_value(value)) for name, value in headers],
            body=to_crlf(data),
        )

    def copy(self) -> Message:
        """A copy whose lists can be changed without touching this one."""
        return dataclasses.replace(
            self, recipients=list(self.recipients), headers=list(self.headers)
        )

    # ------------------------------------------------------------------ reading

    def header(self, name: str, index: int = 1) -> str | None:
        """The ``index``-th (1-based) header called ``name`` (any case), one leading space
        removed; None if there is no such header."""
        values = self.header_values(name)
        return values[index - 1] if 0 < index <= len(values) else None

    def header_values(self, name: str) -> list[str]:
        """Every value of the headers called ``name``, in order, one leading space removed."""
        lowered = name.lower()
        return [strip_one_space(v) for n, v in self.headers if n.lower() == lowered]

    @property
    def recipient_addresses(self) -> list[str]:
        """The recipients' addresses, in order."""
        return [r.address for r in self.recipients]

    def header_lines(self) -> list[str]:
        """The headers as they are written in the message: ``Name: value``."""
        return [f"{name}:{value}" for name, value in self.headers]

    def to_bytes(self) -> bytes:
        """The RFC 5322 text: headers (folding ``\\n`` turned into CRLF), a blank line, body."""
        head = "".join(line.replace("\n", "\r\n") + "\r\n" for line in self.header_lines())
        return head.encode("utf-8", "surrogateescape") + b"\r\n" + self.body

    # ------------------------------------------------------------------ changing

    def apply(
        self,
        modifications: Iterable[AnyReply],
        *,
        leading_space: bool = False,
        renumber_deleted: bool = True,
    ) -> Message:
        """A copy with ``modifications`` applied with MTA semantics (protocol.md 1.9).

        ``leading_space`` says whether ``HEADER_LEADING_SPACE`` was negotiated (values are then
        taken verbatim, else one space is prepended). ``renumber_deleted`` is Postfix's way: a
        deleted header no longer counts for later ``m`` indexes; Sendmail keeps counting it.
        """
        result = self.copy()
        # Sendmail keeps a deleted header in its list (with no value), so later indexes do not
        # shift; a None value stands for such a header until the end.
        headers: list[tuple[str, str | None]] = list(result.headers)
        new_body: list[bytes] | None = None

        def value_of(value: str) -> str:
            return value if leading_space else " " + value

        for mod in modifications:
            if isinstance(mod, AddHeader):
                headers.append((mod.name, value_of(mod.value)))
            elif isinstance(mod, InsertHeader):
                position = _position_of_visible(headers, mod.index)
                headers.insert(position, (mod.name, value_of(mod.value)))
            elif isinstance(mod, ChangeHeader):
                _change_header(headers, mod, value_of(mod.value), renumber_deleted)
            elif isinstance(mod, ChangeFrom):
                result.sender = mod.sender
                result.sender_parameters = tuple((mod.parameters or "").split())
            elif isinstance(mod, AddRecipient):
                result.recipients.append(Recipient(mod.recipient))
            elif isinstance(mod, AddRecipientWithParameters):
                result.recipients.append(
                    Recipient(mod.recipient, tuple(mod.parameters.split()))
                )
            elif isinstance(mod, DeleteRecipient):
                wanted = _bare(mod.recipient)
                result.recipients = [r for r in result.recipients if _bare(r.address) != wanted]
            elif isinstance(mod, ReplaceBody):
                new_body = [] if new_body is None else new_body
                new_body.append(mod.chunk)
        result.headers = [(name, value) for name, value in headers if value is not None]
        if new_body is not None:
            result.body = b"".join(new_body)
        return result


def _position_of_visible(headers: list[tuple[str, str | None]], index: int) -> int:
    """Where to insert so the new header has ``index`` visible headers above it."""
    seen = 0
    for position, (_, value) in enumerate(headers):
        if seen == index:
            return position
        if value is not None:
            seen += 1
    return len(headers)


def _change_header(
    headers: list[tuple[str, str | None]], mod: ChangeHeader, value: str, renumber: bool
) -> None:
    lowered = mod.name.lower()
    wanted = max(mod.index, 1)  # both MTAs read index 0 as 1
    count = 0
    for position, (name, old) in enumerate(headers):
        if name.lower() != lowered or (old is None and renumber):
            continue
        count += 1
        if count == wanted:
            if not mod.value:
                if renumber:
                    del headers[position]
                else:
                    headers[position] = (name, None)
            else:
                headers[position] = (name, value)
            return
    if mod.value:
        # No such header: both MTAs add it.
        headers.append((mod.name, value))


def strip_one_space(value: str) -> str:
    """What a milter without ``HEADER_LEADING_SPACE`` receives: one leading SP (not TAB) off."""
    return value[1:] if value.startswith(" ") else value


def to_crlf(data: bytes) -> bytes:
    """Turn bare LF (and bare CR-less lines) into CRLF, leaving CRLF alone."""
    return data.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")


def parse_message(data: bytes) -> Message:
    """Read an RFC 5322 message: headers (folded lines joined with ``\\n``), body as CRLF.

    The envelope comes from the ``From:`` and ``To:``/``Cc:`` headers when they hold a plain
    address, else stays at its defaults; set it explicitly for anything subtle.
    """
    text = data.replace(b"\r\n", b"\n")
    head, separator, body = text.partition(b"\n\n")
    if not separator and not _looks_like_header(head.split(b"\n", 1)[0]):
        head, body = b"", text
    headers: list[tuple[str, str]] = []
    for line in head.decode("utf-8", "surrogateescape").split("\n"):
        if not line:
            continue
        if line[0] in " \t" and headers:
            name, value = headers[-1]
            headers[-1] = (name, value + "\n" + line)
            continue
        name, colon, value = line.partition(":")
        if not colon:
            continue  # not a header line (an mbox "From " line, say): MTAs would not keep it
        headers.append((name.rstrip(), value))
    message = Message(headers=headers, body=to_crlf(body))
    sender = _first_address(message.header_values("From"))
    if sender:
        message.sender = bracket(sender)
    recipients = [
        a for v in message.header_values("To") + message.header_values("Cc")
        for a in _addresses(v)
    ]
    if recipients:
        message.recipients = [Recipient(bracket(a)) for a in recipients]
    return message


def _looks_like_header(line: bytes) -> bool:
    name, colon, _ = line.partition(b":")
    return bool(colon) and bool(name) and b" " not in name


def _addresses(value: str) -> list[str]:
    found = []
    for part in value.replace("\n", " ").split(","):
        part = part.strip()
        if "<" in part and ">" in part:
            part = part[part.index("<") + 1 : part.index(">")]
        if "@" in part and " " not in part:
            found.append(part)
    return found


def _first_address(values: list[str]) -> str | None:
    for value in values:
        addresses = _addresses(value)
        if addresses:
            return addresses[0]
    return None
