"""Responses a handler may return instead of a :class:`~milterkit.Status`.

purepythonmilter's users return what they mean: a reply with its code and text, or a change to
the message. milterkit takes the same from any handler (:func:`to_status` is the one place the
context turns such a result into a status):

- :class:`Reply` ``("550", "5.7.1", "No")``: sets the SMTP reply and answers REJECT (a 5xx
  code) or TEMPORARY_FAILURE (4xx), as ``context.reject(...)`` does.
- A modification from :mod:`milterkit.protocol` (``AddHeader("X-Spam", "yes")``,
  ``InsertHeader``, ``ChangeHeader``, ``AddRecipient``, ``AddRecipientWithParameters``,
  ``DeleteRecipient``, ``ChangeFrom``, ``ReplaceBody``, ``Quarantine``): at end-of-message it is
  carried out with the action of the same meaning and the handler has no opinion. Before
  end-of-message it is an :class:`~milterkit.ActionError`, as calling the action there is,
  unless it is wrapped in :class:`Queued`: then it waits in the transaction and is carried out
  when end-of-message arrives, before the end-of-message handlers run. Queuing is that explicit
  choice; nothing is queued silently.
- A list or tuple of the above: each in turn; the last status wins.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from .protocol import replies as rep
from .reply import format_reply
from .status import Status

if TYPE_CHECKING:
    from .context import ClientContext

#: The shelf key under which modifications wrapped in :class:`Queued` wait.
QUEUE_KEY = "milterkit.queued"


@dataclass(frozen=True, slots=True)
class Reply:
    """A verdict with its SMTP reply: ``return Reply("451", "4.7.1", "Try later")``.

    Validated when built, as :meth:`~milterkit.ClientContext.set_reply` validates.
    """

    code: str | int
    xcode: str | None = None
    text: str | Sequence[str] | None = None

    def __post_init__(self) -> None:
        format_reply(self.code, self.xcode, self.text)

    @property
    def status(self) -> Status:
        """REJECT for a 5xx code, TEMPORARY_FAILURE for a 4xx one."""
        return Status.REJECT if str(self.code)[0] == "5" else Status.TEMPORARY_FAILURE


#: The modifications a handler may return.
Modification = (
    rep.AddHeader | rep.InsertHeader | rep.ChangeHeader | rep.AddRecipient
    | rep.AddRecipientWithParameters | rep.DeleteRecipient | rep.ChangeFrom | rep.ReplaceBody
    | rep.Quarantine
)
_MODIFICATIONS = (
    rep.AddHeader, rep.InsertHeader, rep.ChangeHeader, rep.AddRecipient,
    rep.AddRecipientWithParameters, rep.DeleteRecipient, rep.ChangeFrom, rep.ReplaceBody,
    rep.Quarantine,
)


@dataclass(frozen=True, slots=True)
class Queued:
    """A modification asked for before end-of-message, to be carried out there."""

    modification: Modification

    def __post_init__(self) -> None:
        if not isinstance(self.modification, _MODIFICATIONS):
            raise TypeError(f"Queued takes a modification (AddHeader...), not "
                            f"{self.modification!r}")


def to_status(context: ClientContext, stage: str, result: Any) -> Status | None:
    """Carry out a response a handler returned at ``stage``; the status it stands for.

    Returns None (no opinion) for a modification. Raises :class:`~milterkit.StatusError` for
    anything that is not a response, :class:`~milterkit.ActionError` for a modification that
    cannot be done here.
    """
    from . import ActionError, StatusError  # the package exports both, wherever they live

    if isinstance(result, Status):
        return result
    if isinstance(result, Reply):
        context.set_reply(result.code, result.xcode, result.text)
        return result.status
    if isinstance(result, Queued):
        if stage == "end-of-message":
            apply_modification(context, result.modification)
        else:
            context.shelf.setdefault(QUEUE_KEY, []).append(result.modification)
        return None
    if isinstance(result, _MODIFICATIONS):
        if stage != "end-of-message":
            raise ActionError(
                f"{type(result).__name__} returned at {stage}: modifications happen at "
                "end-of-message; return milterkit.Queued(...) to queue it for then"
            )
        apply_modification(context, result)
        return None
    if isinstance(result, (list, tuple)):
        status: Status | None = None
        for item in result:
            found = to_status(context, stage, item)
            if found is not None:
                status = found
        return status
    raise StatusError(
        f"a handler of {stage!r} returned {result!r}; return a milterkit.Status, None, a "
        "milterkit.Reply or a modification"
    )


def apply_queued(context: ClientContext) -> None:
    """Carry out the queued modifications (the context calls this as end-of-message starts)."""
    for modification in context.shelf.pop(QUEUE_KEY, ()):
        apply_modification(context, modification)


def apply_modification(context: ClientContext, m: Modification) -> None:
    """Carry out one modification with the context's action of the same meaning."""
    if isinstance(m, rep.AddHeader):
        context.add_header(m.name, m.value)
    elif isinstance(m, rep.InsertHeader):
        context.insert_header(m.index, m.name, m.value)
    elif isinstance(m, rep.ChangeHeader):
        context.change_header(m.name, m.index, m.value)
    elif isinstance(m, rep.AddRecipient):
        context.add_recipient(m.recipient)
    elif isinstance(m, rep.AddRecipientWithParameters):
        context.add_recipient(m.recipient, m.parameters)
    elif isinstance(m, rep.DeleteRecipient):
        context.delete_recipient(m.recipient)
    elif isinstance(m, rep.ChangeFrom):
        context.change_from(m.sender, m.parameters)
    elif isinstance(m, rep.ReplaceBody):
        context.replace_body(m.chunk)
    else:
        context.quarantine(m.reason)
