"""The milter side's view of each replying stage: its states and the statuses it takes.

The wire facts of each stage (command byte, step flags, macro list) are rows of
:mod:`milterkit.protocol.steps`; a :class:`Stage` adds only what the milter side decides: the
:class:`~milterkit.State` it is in and the :class:`~milterkit.Status` values a handler may return.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .protocol.constants import ProtocolFlag as P
from .protocol.steps import STEP_OF_SIGNAL, CommandStep
from .status import NO_VERDICT, State, Status

S = Status
_CONNECTION_STATUSES = frozenset({S.REJECT, S.TEMPORARY_FAILURE, S.ACCEPT, S.NO_REPLY, S.PROGRESS})
_MESSAGE_STATUSES = _CONNECTION_STATUSES | {S.DISCARD}


@dataclass(frozen=True, slots=True)
class Stage:
    """A replying stage: its wire step, its states and its valid statuses."""

    step: CommandStep
    state: State
    replied: State
    allowed: frozenset[Status]
    # Derived from ``step`` once (issue 15): these were properties, read a hundred times per
    # message on the emission path.
    #: The signal name (``"envelope-from"``).
    name: str = field(init=False, compare=False)
    no_event: P = field(init=False, compare=False)
    no_reply: P = field(init=False, compare=False)
    #: The name of the stage's response signal (``"envelope-from-response"``).
    response: str = field(init=False, compare=False)
    #: The class handler a :class:`~milterkit.ClientContext` subclass overrides.
    method: str = field(init=False, compare=False)

    def __post_init__(self) -> None:
        name = self.step.signal
        assert name is not None
        for attribute, value in (
            ("name", name), ("no_event", self.step.no_event), ("no_reply", self.step.no_reply),
            ("response", name + "-response"), ("method", "do_" + name.replace("-", "_")),
        ):
            object.__setattr__(self, attribute, value)


def _stage(signal: str, state: State, replied: State, allowed: frozenset[Status]) -> Stage:
    return Stage(STEP_OF_SIGNAL[signal], state, replied, allowed)


NEGOTIATE = _stage("negotiate", State.NEGOTIATE, State.NEGOTIATE_REPLIED,
                   NO_VERDICT | {S.ALL_OPTIONS, S.REJECT, S.TEMPORARY_FAILURE, S.PROGRESS})
CONNECT = _stage("connect", State.CONNECT, State.CONNECT_REPLIED, NO_VERDICT | _CONNECTION_STATUSES)
HELO = _stage("helo", State.HELO, State.HELO_REPLIED, NO_VERDICT | _CONNECTION_STATUSES)
ENVELOPE_FROM = _stage("envelope-from", State.ENVELOPE_FROM, State.ENVELOPE_FROM_REPLIED,
                       NO_VERDICT | _MESSAGE_STATUSES)
ENVELOPE_RECIPIENT = _stage("envelope-recipient", State.ENVELOPE_RECIPIENT,
                            State.ENVELOPE_RECIPIENT_REPLIED, NO_VERDICT | _MESSAGE_STATUSES)
DATA = _stage("data", State.DATA, State.DATA_REPLIED, NO_VERDICT | _MESSAGE_STATUSES)
UNKNOWN = _stage("unknown", State.UNKNOWN, State.UNKNOWN_REPLIED,
                 NO_VERDICT | {S.REJECT, S.TEMPORARY_FAILURE, S.NO_REPLY, S.PROGRESS})
HEADER = _stage("header", State.HEADER, State.HEADER_REPLIED, NO_VERDICT | _MESSAGE_STATUSES)
END_OF_HEADER = _stage("end-of-header", State.END_OF_HEADER, State.END_OF_HEADER_REPLIED,
                       NO_VERDICT | _MESSAGE_STATUSES)
BODY = _stage("body", State.BODY, State.BODY_REPLIED, NO_VERDICT | _MESSAGE_STATUSES | {S.SKIP})
END_OF_MESSAGE = _stage("end-of-message", State.END_OF_MESSAGE, State.END_OF_MESSAGE_REPLIED,
                        NO_VERDICT | {S.REJECT, S.TEMPORARY_FAILURE, S.ACCEPT, S.DISCARD,
                                      S.PROGRESS})
ABORT = _stage("abort", State.ABORT, State.ABORT_REPLIED, frozenset(Status))

#: Every stage a handler answers, by signal name, in session order.
STAGES: dict[str, Stage] = {
    stage.name: stage
    for stage in (NEGOTIATE, CONNECT, HELO, ENVELOPE_FROM, ENVELOPE_RECIPIENT, DATA, UNKNOWN,
                  HEADER, END_OF_HEADER, BODY, END_OF_MESSAGE, ABORT)
}
#: Stages whose events the MTA can be asked not to send.
EVENT_STAGES = tuple(stage for stage in STAGES.values() if stage.no_event)
#: Signals with no status and no response.
NOTIFICATIONS = ("define-macro", "timeout", "message-processed", "finished", "error", "reset")
#: Every signal of a context.
SIGNAL_NAMES: tuple[str, ...] = (
    *STAGES, *(stage.response for stage in STAGES.values()), *NOTIFICATIONS,
)
#: Statuses after which a message is complete: no ``abort`` follows them (libmilter's rule,
#: and milter-manager's contract for the ``abort`` signal).
MESSAGE_VERDICTS = frozenset({S.ACCEPT, S.REJECT, S.DISCARD, S.TEMPORARY_FAILURE})
