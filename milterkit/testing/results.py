"""What the MTA side saw: each command with its replies, each message's verdict and changes."""

from __future__ import annotations

from dataclasses import dataclass, field

from ..protocol.commands import AnyCommand
from ..protocol.replies import (
    MODIFICATIONS,
    Accept,
    AnyReply,
    Continue,
    Discard,
    NegotiateReply,
    Reject,
    ReplyText,
    Shutdown,
    Skip,
    TempFail,
)
from ..status import Status
from .message import Message, Recipient


@dataclass(slots=True)
class Exchange:
    """One command the MTA sent and every reply packet it got for it (none for NR stages)."""

    command: AnyCommand
    replies: list[AnyReply] = field(default_factory=list)


def status_of(reply: AnyReply) -> Status:
    """The verdict a final reply stands for (``y`` by its code's first digit)."""
    if isinstance(reply, Continue):
        return Status.CONTINUE
    if isinstance(reply, Reject):
        return Status.REJECT
    if isinstance(reply, (TempFail, Shutdown)):
        return Status.TEMPORARY_FAILURE
    if isinstance(reply, Accept):
        return Status.ACCEPT
    if isinstance(reply, Discard):
        return Status.DISCARD
    if isinstance(reply, Skip):
        return Status.SKIP
    if isinstance(reply, ReplyText):
        return Status.REJECT if reply.text.startswith("5") else Status.TEMPORARY_FAILURE
    raise TypeError(f"{reply!r} is not a verdict")


#: The default texts Postfix uses for a bare verdict (protocol.md 1.3).
DEFAULT_REPLIES = {
    Status.REJECT: "550 5.7.1 Command rejected",
    Status.TEMPORARY_FAILURE: "451 4.7.1 Service unavailable - try again later",
}


@dataclass(slots=True)
class RejectedRecipient:
    """A recipient the milter refused at RCPT; the MTA drops it and goes on."""

    recipient: Recipient
    status: Status
    reply: str | None


@dataclass(slots=True)
class MessageOutcome:
    """One message as the MTA ended it.

    ``status`` is the milter's verdict (``CONTINUE`` is milter-test-server's "pass"), ``stage``
    the event that produced it, ``reply`` the ``y`` text if one came. ``original`` is the message
    as sent; ``message`` is it with rejected recipients removed and every modification applied,
    as the MTA would deliver it.
    """

    original: Message
    message: Message
    status: Status = Status.CONTINUE
    stage: str = "end-of-message"
    reply: str | None = None
    modifications: list[AnyReply] = field(default_factory=list)
    quarantine_reason: str | None = None
    rejected_recipients: list[RejectedRecipient] = field(default_factory=list)
    #: Status of the UNKNOWN command's reply, when one was sent.
    unknown_status: Status | None = None
    #: How many ``p`` (progress) packets arrived for this message.
    progress: int = 0
    #: Whether the milter asked to skip the rest of the body.
    skipped_body: bool = False
    #: Whether the milter answered ``4`` (shutdown: Postfix says 421 and disconnects).
    shutdown: bool = False
    exchanges: list[Exchange] = field(default_factory=list)
    elapsed: float = 0.0
    #: Exceptions the milter's handlers raised during this message, as ``(stage, error)``
    #: (in-process runs only; the exception policy answered them).
    handler_errors: list[tuple[str, BaseException]] = field(default_factory=list)

    @property
    def verdict(self) -> str:
        """``pass``, ``accept``, ``reject``, ``temporary-failure`` or ``discard``."""
        return "pass" if self.status in (Status.CONTINUE, Status.DEFAULT) else self.status.nick

    @property
    def delivered(self) -> bool:
        """Whether the MTA would deliver the message (to at least one recipient)."""
        return self.status in (Status.CONTINUE, Status.ACCEPT) and bool(self.message.recipients)

    @property
    def smtp_reply(self) -> str | None:
        """The SMTP reply the client would see for a refusal (the MTA's default if no ``y``)."""
        return self.reply or DEFAULT_REPLIES.get(self.status)

    @property
    def code(self) -> str | None:
        """The 3-digit code of :attr:`reply` (None without a ``y`` reply)."""
        return self.reply[:3] if self.reply else None

    @property
    def xcode(self) -> str | None:
        """The enhanced status code of :attr:`reply`'s last line, if it has one."""
        if not self.reply:
            return None
        parts = self.reply.split("\r\n")[-1][4:].split(" ", 1)
        first = parts[0]
        return first if first[:1].isdigit() and "." in first else None

    @property
    def text(self) -> str | None:
        """The text of :attr:`reply` without codes, lines joined with ``\\n``, ``%%`` read as
        ``%`` (as both MTAs print it)."""
        if not self.reply:
            return None
        lines = []
        xcode = self.xcode
        for line in self.reply.split("\r\n"):
            rest = line[4:]
            if xcode and rest.startswith(xcode):
                rest = rest[len(xcode) + 1 :]
            lines.append(rest.replace("%%", "%"))
        return "\n".join(lines)

    @property
    def header_changes(self) -> list[AnyReply]:
        """The modifications, without body chunks."""
        return [m for m in self.modifications if isinstance(m, MODIFICATIONS[:-1])]


@dataclass(slots=True)
class SessionResult:
    """Everything one milter connection produced."""

    negotiation: NegotiateReply | None = None
    #: Status of CONNECT and HELO replies (CONTINUE if not sent or not answered).
    connect_status: Status = Status.CONTINUE
    helo_status: Status = Status.CONTINUE
    #: Verdict of the connection as a whole when CONNECT or HELO ended it.
    connection_verdict: Status | None = None
    connection_reply: str | None = None
    messages: list[MessageOutcome] = field(default_factory=list)
    exchanges: list[Exchange] = field(default_factory=list)
    error: Exception | None = None
    #: Whether the MTA sent QUIT (Postfix just closes after a connection-level verdict).
    quit_sent: bool = False
    elapsed: float = 0.0
    #: Every exception the milter's handlers raised, as ``(stage, error)`` (in-process runs).
    handler_errors: list[tuple[str, BaseException]] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """The session ran to its end without a protocol error or timeout."""
        return self.error is None

    @property
    def last(self) -> MessageOutcome:
        """The last message's outcome (raises IndexError if no message was sent)."""
        return self.messages[-1]
