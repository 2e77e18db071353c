"""How the statuses of several composed filters become the one status the MTA gets.

milter-manager's ranking (``milter_status_compare``), strongest first:
DISCARD > REJECT > TEMPORARY_FAILURE > CONTINUE > SKIP > ACCEPT. A refusal (DISCARD, REJECT,
TEMPORARY_FAILURE) from any filter wins at once. The weak end of the ranking needs everyone:
ACCEPT reaches the MTA only when no filter is still working on the message (every one that is
still attached has accepted), SKIP only when every filter still working skips; otherwise the
MTA gets CONTINUE and the filters that want more go on.
"""

from __future__ import annotations

from collections.abc import Iterable

from ..protocol.constants import ProtocolFlag
from ..protocol.steps import STEPS
from ..status import Status

S = Status

#: Rank of each status a filter can give, strongest first (higher = stronger).
RANK: dict[Status, int] = {
    S.DISCARD: 5, S.REJECT: 4, S.TEMPORARY_FAILURE: 3, S.CONTINUE: 2, S.SKIP: 1, S.ACCEPT: 0,
}
#: The statuses that refuse: one of them from any filter is the MTA's answer.
REFUSALS = frozenset({S.DISCARD, S.REJECT, S.TEMPORARY_FAILURE})

#: Every replying stage a filter can take part in, in protocol order, with the protocol step
#: that tells the MTA not to send its event (None: the event always comes). Read from the
#: steps table: the stages after negotiation that the MTA waits on.
EVENT_FLAGS: dict[str, ProtocolFlag | None] = {
    step.signal: step.no_event or None
    for step in STEPS if step.signal not in (None, "negotiate") and step.answered
}
STAGE_NAMES: tuple[str, ...] = tuple(EVENT_FLAGS)
#: Stages whose verdict is about the whole SMTP connection, not one message.
CONNECTION_STAGES = frozenset({"connect", "helo"})

_MESSAGE = frozenset({S.CONTINUE, S.REJECT, S.TEMPORARY_FAILURE, S.ACCEPT, S.DISCARD})
#: The statuses a filter may give at each stage (anything else is that filter's error).
ALLOWED: dict[str, frozenset[Status]] = {
    "connect": frozenset({S.CONTINUE, S.REJECT, S.TEMPORARY_FAILURE, S.ACCEPT}),
    "helo": frozenset({S.CONTINUE, S.REJECT, S.TEMPORARY_FAILURE, S.ACCEPT}),
    "envelope-from": _MESSAGE,
    "envelope-recipient": _MESSAGE,
    "data": _MESSAGE,
    "unknown": frozenset({S.CONTINUE, S.REJECT, S.TEMPORARY_FAILURE}),
    "header": _MESSAGE,
    "end-of-header": _MESSAGE,
    "body": _MESSAGE | {S.SKIP},
    "end-of-message": _MESSAGE,
}


def stronger(first: Status, second: Status) -> Status:
    """The stronger of two statuses by milter-manager's ranking (the first on a tie)."""
    return second if RANK[second] > RANK[first] else first


def strongest(statuses: Iterable[Status]) -> Status | None:
    """The strongest of ``statuses`` by the ranking, or None for none."""
    best: Status | None = None
    for status in statuses:
        best = status if best is None else stronger(best, status)
    return best


def combine(refusals: Iterable[Status], working: Iterable[Status], accepted: bool) -> Status:
    """The status for the MTA at one stage.

    ``refusals`` are the refusing statuses filters gave at this stage (their strongest wins);
    ``working`` holds, for every filter still working on the message or connection after this
    stage, what it says (CONTINUE or SKIP); ``accepted`` is whether any filter has accepted.
    With nobody refusing: ACCEPT when nobody is still working and someone accepted, SKIP when
    everyone still working skips, else CONTINUE.
    """
    refusal = strongest(refusals)
    if refusal is not None:
        return refusal
    still = list(working)
    if not still:
        return S.ACCEPT if accepted else S.CONTINUE
    if all(status is S.SKIP for status in still):
        return S.SKIP
    return S.CONTINUE
