"""The response objects purepythonmilter's hooks return, validated when they are built.

Verdicts (``Accept``, ``Reject``, ``RejectWithCode``...) and ``Continue`` may carry
``manipulations``; every manipulation is kept until end-of-message and applied then, whatever
stage returned it. What each becomes in milterkit is decided in
:mod:`milterkit.compat.purepythonmilter.session`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal, TypeAlias

from ..api import models
from .definitions import MAX_DATA_SIZE


def validate_headername_rfc5322(headername: str) -> None:
    """Refuse a header name RFC 5322 does not allow (printable US-ASCII, no space or colon)."""
    if not headername:
        raise ValueError("Header field name cannot be empty.")
    if not headername.isascii() or not headername.isprintable() or " " in headername:
        raise ValueError(
            "Header field names must contain only US-ASCII printable characters "
            "with values between 33 and 126 (RFC5322)"
        )
    if ":" in headername:
        raise ValueError("Header field names must not contain a colon (RFC5322)")


class AbstractBaseResponse:
    """Anything a hook may hand back."""

    __slots__ = ()

    def __str__(self) -> str:
        return f"{type(self).__name__} response"


class AbstractManipulation(AbstractBaseResponse):
    """A change to the message, applied at end-of-message."""

    __slots__ = ()


@dataclass(kw_only=True)
class AbstractResponse(AbstractBaseResponse):
    """A reply to a command, with the manipulations to queue for end-of-message."""

    manipulations: list[AbstractManipulation] = field(default_factory=list)


class AbstractVerdict(AbstractResponse):
    """A reply that decides about the message (or the connection)."""

    def __str__(self) -> str:
        return f"{type(self).__name__} (verdict)"


class BaseResponseNoData(AbstractResponse):
    """A reply without arguments."""


class BaseVerdictNoData(BaseResponseNoData, AbstractVerdict):
    """A verdict without arguments."""


@dataclass(kw_only=True)
class Continue(BaseResponseNoData):
    """Go on; at end-of-message: accept the message with its manipulations."""


@dataclass(kw_only=True)
class Accept(BaseVerdictNoData):
    """Accept the message (or, before MAIL, everything on this connection) unfiltered."""


@dataclass(kw_only=True)
class Reject(BaseVerdictNoData):
    """Reject with the MTA's default 5xx reply."""


@dataclass(kw_only=True)
class DiscardMessage(BaseVerdictNoData):
    """Accept for the sender but drop the message silently (not valid at connect or HELO)."""


@dataclass(kw_only=True)
class CauseConnectionFail(BaseVerdictNoData):
    """Make the MTA treat the milter as failed (``f``; the MTA applies its default action)."""


@dataclass(kw_only=True)
class BaseReplyWithCode(AbstractVerdict):
    """A verdict with an SMTP reply: ``primary_code=(5, 5, 0)``, ``enhanced_code=(5, 7, 1)``."""

    primary_code: tuple[Literal[4, 5], int, int]
    enhanced_code: tuple[Literal[4, 5], int, int] | None = None
    text: str | None = None

    @property
    def code_text(self) -> str:
        """``"550"``."""
        return "".join(str(part) for part in self.primary_code)

    @property
    def enhanced_text(self) -> str | None:
        """``"5.7.1"`` or None."""
        if not self.enhanced_code:
            return None
        return ".".join(str(part) for part in self.enhanced_code)


@dataclass(kw_only=True)
class RejectWithCode(BaseReplyWithCode):
    """Reject with a 5xx reply of your own."""

    primary_code: tuple[Literal[5], int, int]


@dataclass(kw_only=True)
class TempFailWithCode(BaseReplyWithCode):
    """Fail temporarily with a 4xx reply of your own."""

    primary_code: tuple[Literal[4], int, int]


@dataclass(kw_only=True)
class Quarantine(AbstractVerdict):
    """Put the message on hold with ``reason`` (end-of-message only; the message is accepted)."""

    reason: str


@dataclass(kw_only=True)
class SkipToNextStage(BaseResponseNoData):
    """From a body hook: send no more body chunks, go to end-of-message."""


@dataclass(kw_only=True)
class Progress(BaseResponseNoData):
    """A keep-alive; not a final answer, so no hook may return it."""


@dataclass(kw_only=True)
class BaseChangeRecipient(AbstractManipulation):
    """A manipulation naming one envelope recipient."""

    recipient: str


@dataclass(kw_only=True)
class AddRecipient(BaseChangeRecipient):
    """Add an envelope recipient (the To: header is not touched)."""


@dataclass(kw_only=True)
class AddRecipientWithEsmtpArgs(BaseChangeRecipient):
    """Add an envelope recipient with ESMTP arguments."""

    esmtp_args: models.EsmtpArgsType


@dataclass(kw_only=True)
class RemoveRecipient(BaseChangeRecipient):
    """Remove an envelope recipient, spelled as the MTA sent it."""


@dataclass(kw_only=True)
class ReplaceBodyChunk(AbstractManipulation):
    """One piece of the new body; several are concatenated in order."""

    chunk: bytes

    def __post_init__(self) -> None:
        if len(self.chunk) > MAX_DATA_SIZE - 1:
            raise ValueError(
                f"Length of 'chunk' must be <= {MAX_DATA_SIZE - 1}: {len(self.chunk)}"
            )


@dataclass(kw_only=True)
class ChangeMailFrom(AbstractManipulation):
    """Replace the envelope sender, optionally with ESMTP arguments."""

    mail_from: str
    esmtp_args: models.EsmtpArgsType = field(default_factory=dict)


@dataclass(kw_only=True)
class BaseHeaderManipulation(AbstractManipulation):
    """A manipulation of one header, whose name is checked against RFC 5322."""

    headername: str
    headertext: str

    def __post_init__(self) -> None:
        validate_headername_rfc5322(self.headername)


@dataclass(kw_only=True)
class AppendHeader(BaseHeaderManipulation):
    """Add a header after the existing ones."""


@dataclass(kw_only=True)
class InsertHeader(BaseHeaderManipulation):
    """Insert a header at ``index`` (0 = topmost)."""

    index: int

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.index < 0:
            raise ValueError("Header index must be positive.")


@dataclass(kw_only=True)
class ChangeHeader(BaseHeaderManipulation):
    """Change the ``nth_occurrence`` of the header (0 and 1 both mean the first); an empty
    ``headertext`` deletes it."""

    nth_occurrence: int = 0

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.nth_occurrence < 0:
            raise ValueError("Header index (nth_occurrence) must be positive.")


#: What the hooks before end-of-message may return (besides None).
VerdictOrContinue: TypeAlias = AbstractVerdict | Continue
