"""Statuses a handler returns and states a context passes through (milter-manager's enums)."""

from __future__ import annotations

import enum


class Status(enum.IntEnum):
    """What a handler says about an event; ``None`` from a handler means ``NOT_CHANGE``.

    ``DEFAULT``, ``NOT_CHANGE`` and ``CONTINUE`` pass; ``NOT_CHANGE`` is transparent when several
    handlers are connected; the first *decisive* status (anything but those three and
    ``ALL_OPTIONS``) wins and stops the emission.
    """

    DEFAULT = 0
    NOT_CHANGE = 1
    CONTINUE = 2
    REJECT = 3
    DISCARD = 4
    ACCEPT = 5
    TEMPORARY_FAILURE = 6
    NO_REPLY = 7
    SKIP = 8
    ALL_OPTIONS = 9
    PROGRESS = 10
    ABORT = 11

    TEMPFAIL = 6

    @property
    def nick(self) -> str:
        """The lower-case hyphenated name, as milter-manager writes it (``temporary-failure``)."""
        return self.name.lower().replace("_", "-")

    @classmethod
    def from_name(cls, name: str) -> Status:
        """Parse ``"reject"``, ``"temporary-failure"``, ``"TEMPFAIL"`` and the like."""
        key = name.strip().upper().replace("-", "_")
        try:
            return cls[key]
        except KeyError:
            raise ValueError(f"unknown status {name!r}") from None


#: Statuses after which the next handler of the signal still runs (the accumulator's rule):
#: ``NOT_CHANGE`` is not one of them only because it is skipped before this test.
NEXT_HANDLER_RUNS = frozenset({Status.DEFAULT, Status.CONTINUE, Status.ALL_OPTIONS})
#: Statuses that are no verdict: as a reply they mean "go on" and are valid at every stage.
NO_VERDICT = frozenset({Status.DEFAULT, Status.NOT_CHANGE, Status.CONTINUE})
#: The older names of :data:`NEXT_HANDLER_RUNS` and :data:`NO_VERDICT`.
PASSING = NEXT_HANDLER_RUNS
PASS = NO_VERDICT


class State(enum.IntEnum):
    """Where a context is in the session; numeric order matters (``in_message_processing``)."""

    START = 1
    NEGOTIATE = 2
    NEGOTIATE_REPLIED = 3
    CONNECT = 4
    CONNECT_REPLIED = 5
    HELO = 6
    HELO_REPLIED = 7
    ENVELOPE_FROM = 8
    ENVELOPE_FROM_REPLIED = 9
    ENVELOPE_RECIPIENT = 10
    ENVELOPE_RECIPIENT_REPLIED = 11
    DATA = 12
    DATA_REPLIED = 13
    UNKNOWN = 14
    UNKNOWN_REPLIED = 15
    HEADER = 16
    HEADER_REPLIED = 17
    END_OF_HEADER = 18
    END_OF_HEADER_REPLIED = 19
    BODY = 20
    BODY_REPLIED = 21
    END_OF_MESSAGE = 22
    END_OF_MESSAGE_REPLIED = 23
    QUIT = 24
    ABORT = 26
    ABORT_REPLIED = 27
    FINISHED = 28

    @property
    def nick(self) -> str:
        """The lower-case hyphenated name (``body-replied``)."""
        return self.name.lower().replace("_", "-")
