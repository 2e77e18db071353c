"""What happened to one message: the verdict, the envelope, the modifications, the time taken."""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from .protocol.replies import AnyReply
from .status import Status


@dataclass(slots=True)
class MessageResult:
    """The record of one mail transaction, filled as the context goes and emitted with
    ``message-processed`` after the end-of-message reply."""

    envelope_from: str | None = None
    recipients: list[str] = field(default_factory=list)
    header_count: int = 0
    body_size: int = 0
    status: Status = Status.DEFAULT
    #: The SMTP reply text sent with the verdict (``y`` packet), if any.
    reply: str | None = None
    #: Every modification sent at end-of-message, in wire order.
    modifications: list[AnyReply] = field(default_factory=list)
    quarantine_reason: str | None = None
    #: Each composed filter's verdict, by filter name (set by :mod:`milterkit.compose`):
    #: a status nick, ``"<nick> (evaluation)"`` or ``"detached"``.
    filter_verdicts: dict[str, str] = field(default_factory=dict)
    started: float = field(default_factory=time.monotonic)
    finished: float | None = None

    @property
    def elapsed(self) -> float:
        """Seconds from the first command of the message to its verdict (or until now)."""
        end = self.finished if self.finished is not None else time.monotonic()
        return end - self.started
