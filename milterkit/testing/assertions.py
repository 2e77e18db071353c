"""Assertion helpers on a message's verdict and modifications, for tests of filters.

Each takes a :class:`~milterkit.testing.results.MessageOutcome` or a whole
:class:`~milterkit.testing.results.SessionResult` (meaning its last message) and raises
``AssertionError`` with a message that shows what the milter really did: every failure ends
with the message's verdict (stage and reply) and any exception a handler raised, so a test that
fails because a handler crashed and was tempfailed says so.
"""

from __future__ import annotations

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
from ..status import Status
from ..tools.trace import describe_reply
from .message import bracket
from .results import MessageOutcome, SessionResult

Result = MessageOutcome | SessionResult

__all__ = [
    "assert_body_replaced", "assert_from_changed", "assert_header_added",
    "assert_header_changed", "assert_header_deleted", "assert_header_inserted",
    "assert_not_modified", "assert_not_quarantined", "assert_quarantined",
    "assert_recipient_added", "assert_recipient_deleted", "assert_recipient_rejected",
    "assert_verdict", "outcome_of",
]


def outcome_of(result: Result) -> MessageOutcome:
    """The outcome itself, or a session's last message (with a clear error if it failed)."""
    if isinstance(result, MessageOutcome):
        return result
    if result.error is not None:
        raise AssertionError(f"the session failed: {result.error}{_errors(result)}")
    if not result.messages:
        verdict = result.connection_verdict
        got = f" (connection verdict {verdict.nick}, reply {result.connection_reply!r})" \
            if verdict is not None else ""
        raise AssertionError(f"the session carried no message{got}{_errors(result)}")
    return result.messages[-1]


def _errors(result: Result) -> str:
    if not result.handler_errors:
        return ""
    shown = "; ".join(f"{error!r} at {stage}" for stage, error in result.handler_errors)
    return f"; a handler raised: {shown}"


def _state(outcome: MessageOutcome) -> str:
    """What the milter decided: the verdict, its stage and reply, and handler errors."""
    reply = f", reply {outcome.reply!r}" if outcome.reply else ""
    return f" [verdict {outcome.verdict} at {outcome.stage}{reply}{_errors(outcome)}]"


def _fail(outcome: MessageOutcome, text: str) -> AssertionError:
    return AssertionError(text + _state(outcome))


def _mods(outcome: MessageOutcome) -> str:
    if not outcome.modifications:
        return "no modification"
    return "modifications: " + "; ".join(describe_reply(m) for m in outcome.modifications)


def assert_verdict(
    result: Result, verdict: str | Status, *, code: str | None = None, xcode: str | None = None,
    text: str | None = None, stage: str | None = None,
) -> MessageOutcome:
    """The verdict is ``verdict`` (``"pass"``, ``"accept"``, ``"reject"``,
    ``"temporary-failure"``/``"tempfail"``, ``"discard"`` or a Status), with the given reply
    code, enhanced code, text and stage when those are given. Returns the outcome."""
    outcome = outcome_of(result)
    wanted = _verdict_name(verdict)
    problems = []
    if outcome.verdict != wanted:
        problems.append(f"verdict is {outcome.verdict!r}, not {wanted!r}")
    for what, expected, actual in (("code", code, outcome.code), ("xcode", xcode, outcome.xcode),
                                   ("text", text, outcome.text), ("stage", stage, outcome.stage)):
        if expected is not None and expected != actual:
            problems.append(f"{what} is {actual!r}, not {expected!r}")
    if problems:
        raise _fail(outcome, "; ".join(problems))
    return outcome


def _verdict_name(verdict: str | Status) -> str:
    if isinstance(verdict, Status):
        return "pass" if verdict in (Status.CONTINUE, Status.DEFAULT) else verdict.nick
    name = verdict.lower().replace("_", "-")
    return {"tempfail": "temporary-failure", "continue": "pass"}.get(name, name)


def _find(outcome: MessageOutcome, wanted: AnyReply, what: str) -> MessageOutcome:
    if wanted not in outcome.modifications:
        raise _fail(outcome, f"no {what}: {describe_reply(wanted)} ({_mods(outcome)})")
    return outcome


def assert_header_added(result: Result, name: str, value: str) -> MessageOutcome:
    """The milter appended the header ``name: value`` (``h``)."""
    return _find(outcome_of(result), AddHeader(name, value), "header added")


def assert_header_inserted(result: Result, name: str, value: str,
                           index: int | None = None) -> MessageOutcome:
    """The milter inserted ``name: value`` (``i``), at ``index`` if given."""
    outcome = outcome_of(result)
    for mod in outcome.modifications:
        if isinstance(mod, InsertHeader) and (mod.name, mod.value) == (name, value):
            if index is None or mod.index == index:
                return outcome
    raise _fail(outcome, f"no header inserted: {name}: {value!r} ({_mods(outcome)})")


def assert_header_changed(result: Result, name: str, value: str,
                          index: int = 1) -> MessageOutcome:
    """The milter changed the ``index``-th ``name`` header to ``value`` (``m``)."""
    return _find(outcome_of(result), ChangeHeader(index, name, value), "header change")


def assert_header_deleted(result: Result, name: str, index: int = 1) -> MessageOutcome:
    """The milter deleted the ``index``-th ``name`` header (``m`` with an empty value)."""
    return _find(outcome_of(result), ChangeHeader(index, name, ""), "header deletion")


def assert_from_changed(result: Result, sender: str,
                        parameters: str | None = None) -> MessageOutcome:
    """The milter replaced the envelope sender (``e``); brackets are added if missing."""
    outcome = outcome_of(result)
    for mod in outcome.modifications:
        if isinstance(mod, ChangeFrom) and bracket(mod.sender) == bracket(sender):
            if parameters is None or mod.parameters == parameters:
                return outcome
    raise _fail(outcome, f"sender not changed to {sender} ({_mods(outcome)})")


def assert_recipient_added(result: Result, recipient: str,
                           parameters: str | None = None) -> MessageOutcome:
    """The milter added ``recipient`` (``+``, or ``2`` with ``parameters``)."""
    outcome = outcome_of(result)
    for mod in outcome.modifications:
        if isinstance(mod, (AddRecipient, AddRecipientWithParameters)):
            if bracket(mod.recipient) != bracket(recipient):
                continue
            got = mod.parameters if isinstance(mod, AddRecipientWithParameters) else None
            if parameters is None or got == parameters:
                return outcome
    raise _fail(outcome, f"recipient {recipient} not added ({_mods(outcome)})")


def assert_recipient_deleted(result: Result, recipient: str) -> MessageOutcome:
    """The milter removed ``recipient`` (``-``)."""
    outcome = outcome_of(result)
    for mod in outcome.modifications:
        if isinstance(mod, DeleteRecipient) and bracket(mod.recipient) == bracket(recipient):
            return outcome
    raise _fail(outcome, f"recipient {recipient} not deleted ({_mods(outcome)})")


def assert_recipient_rejected(result: Result, recipient: str,
                              code: str | None = None) -> MessageOutcome:
    """The milter refused ``recipient`` at RCPT (with reply ``code`` if given)."""
    outcome = outcome_of(result)
    for rejected in outcome.rejected_recipients:
        if bracket(rejected.recipient.address) == bracket(recipient):
            if code is None or (rejected.reply or "")[:3] == code:
                return outcome
            raise _fail(outcome, f"{recipient} refused with {rejected.reply!r}, not {code}")
    refused = [r.recipient.address for r in outcome.rejected_recipients] or "none"
    raise _fail(outcome, f"recipient {recipient} was not refused (refused: {refused})")


def assert_body_replaced(result: Result, body: bytes | None = None) -> MessageOutcome:
    """The milter replaced the body (with exactly ``body`` if given)."""
    outcome = outcome_of(result)
    chunks = [m.chunk for m in outcome.modifications if isinstance(m, ReplaceBody)]
    if not chunks:
        raise _fail(outcome, f"body not replaced ({_mods(outcome)})")
    if body is not None and b"".join(chunks) != body:
        raise _fail(outcome, f"body replaced by {b''.join(chunks)!r}, not {body!r}")
    return outcome


def assert_quarantined(result: Result, reason: str | None = None) -> MessageOutcome:
    """The milter quarantined the message (with ``reason`` if given)."""
    outcome = outcome_of(result)
    if outcome.quarantine_reason is None:
        raise _fail(outcome, "message not quarantined")
    if reason is not None and outcome.quarantine_reason != reason:
        raise _fail(outcome, f"quarantined for {outcome.quarantine_reason!r}, not {reason!r}")
    return outcome


def assert_not_quarantined(result: Result) -> MessageOutcome:
    """The milter did not quarantine the message."""
    outcome = outcome_of(result)
    if outcome.quarantine_reason is not None:
        raise _fail(outcome, f"message quarantined: {outcome.quarantine_reason!r}")
    return outcome


def assert_not_modified(result: Result) -> MessageOutcome:
    """The milter sent no modification at all."""
    outcome = outcome_of(result)
    if outcome.modifications:
        raise _fail(outcome, _mods(outcome))
    return outcome
