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

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol, TypeGuard

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


def is_modification(value: object) -> TypeGuard[Modification]:
    """Whether ``value`` is one of the :data:`Modification` classes (what
    :func:`apply_modification` takes); a caller with replies of other kinds checks first."""
    return isinstance(value, _MODIFICATIONS)


class ModificationTarget(Protocol):
    """What :func:`apply_modification` carries a modification out on: the actions of
    :class:`~milterkit.ClientContext` (and of a composed filter's
    :class:`~milterkit.compose.view.FilterView`) that the nine modification classes stand for.

    They are eight: ``AddRecipient`` and ``AddRecipientWithParameters`` both become
    ``add_recipient``. ``delete_header`` is not among them, since no modification stands for it
    (a ``ChangeHeader`` with no value deletes).
    """

    def add_header(self, name: str, value: str) -> None:
        """Append a header."""

    def insert_header(self, index: int, name: str, value: str) -> None:
        """Insert a header at ``index`` (0 = topmost)."""

    def change_header(self, name: str, index: int, value: str | None) -> None:
        """Change the ``index``-th (1-based) header called ``name``; None or "" deletes it."""

    def add_recipient(self, recipient: str, parameters: str | Iterable[str] | None = None) -> None:
        """Add an envelope recipient, optionally with ESMTP parameters."""

    def delete_recipient(self, recipient: str) -> None:
        """Remove an envelope recipient."""

    def change_from(self, sender: str, parameters: str | Iterable[str] | None = None) -> None:
        """Replace the envelope sender, optionally with ESMTP parameters."""

    def replace_body(self, body: bytes) -> None:
        """Replace the body."""

    def quarantine(self, reason: str) -> None:
        """Put the message on hold with ``reason``."""


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
    if is_modification(result):
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


def apply_modification(target: ModificationTarget, m: Modification) -> None:
    """Carry out one modification with the target's action of the same meaning.

    The target is a :class:`~milterkit.ClientContext` for what a handler returns, or a composed
    filter's view for what a child milter sent (:mod:`milterkit.manager`), so that a change is
    checked as the target checks any call of the action.
    """
    if isinstance(m, rep.AddHeader):
        target.add_header(m.name, m.value)
    elif isinstance(m, rep.InsertHeader):
        target.insert_header(m.index, m.name, m.value)
    elif isinstance(m, rep.ChangeHeader):
        target.change_header(m.name, m.index, m.value)
    elif isinstance(m, rep.AddRecipient):
        target.add_recipient(m.recipient)
    elif isinstance(m, rep.AddRecipientWithParameters):
        target.add_recipient(m.recipient, m.parameters)
    elif isinstance(m, rep.DeleteRecipient):
        target.delete_recipient(m.recipient)
    elif isinstance(m, rep.ChangeFrom):
        target.change_from(m.sender, m.parameters)
    elif isinstance(m, rep.ReplaceBody):
        target.replace_body(m.chunk)
    else:
        target.quarantine(m.reason)


def handler_status(context: ClientContext, stage: str, result: Any) -> Status:
    """A handler's result at ``stage`` as the Status the stage combines.

    A :class:`Reply` or a modification is carried out by :func:`to_status` (a modification has
    no opinion: NOT_CHANGE); anything else, pymilter's bare ints included, is refused with a
    :class:`~milterkit.StatusError`.
    """
    if isinstance(result, Status):
        return result
    if isinstance(result, int) and not isinstance(result, bool):
        from . import StatusError  # the package exports it, wherever it lives

        raise StatusError(
            f"a handler of {stage!r} returned {result!r}; return a milterkit.Status or None"
            " (a bare int is not a status: milterkit's and pymilter's numbers differ; "
            "pymilter filters run under milterkit.compat.pymilter)"
        )
    return to_status(context, stage, result) or Status.NOT_CHANGE
