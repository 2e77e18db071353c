"""One filter on one connection: its view and where it stands (``Member``)."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from ..context import ClientContext
from ..status import Status
from .host import FilterHost
from .ranking import CONNECTION_STAGES
from .spec import FilterSpec
from .view import FilterView


@dataclass
class Filter:
    """A filter of a composer: its configuration and the host its setup ran on."""

    spec: FilterSpec
    host: FilterHost

    @property
    def name(self) -> str:
        return self.spec.label


@dataclass
class Member:
    """A filter's state on one connection."""

    filter: Filter
    view: FilterView
    #: Detached for the connection: refused at negotiation or stopped by a condition.
    connection_detached: bool = False
    connection_verdict: Status | None = None
    message_detached: bool = False
    message_verdict: Status | None = None
    skipped_body: bool = False
    failed_at_end: bool = False
    #: The filter failed (exception, timeout, invalid answer) in the current message.
    failed: bool = False
    #: Stages the filter asked the MTA not to send at negotiation.
    unwanted: frozenset[str] = frozenset()
    #: This message's verdict for statistics (``reject``, ``accept (evaluation)``...).
    label: str | None = None
    tally: Counter[str] = field(default_factory=Counter)
    timers: list[Any] = field(default_factory=list)

    @property
    def name(self) -> str:
        return self.filter.name

    @property
    def evaluation(self) -> bool:
        return self.filter.spec.evaluation

    def working(self, stage: str) -> bool:
        """Still attached and undecided for ``stage``'s scope."""
        if self.connection_detached or self.connection_verdict is not None:
            return False
        if stage in CONNECTION_STAGES:
            return True
        return not self.message_detached and self.message_verdict is None

    def wants(self, stage: str) -> bool:
        """Whether the filter asked for this event (and has a handler for it)."""
        if stage in self.unwanted or (stage == "body" and self.skipped_body):
            return False
        return self.view.signals.has_receivers(stage)

    def accepted(self, stage: str) -> bool:
        """Whether this filter accepted the connection (or, at message stages, the message)."""
        if self.evaluation:
            return False
        if self.connection_verdict is Status.ACCEPT:
            return True
        return stage not in CONNECTION_STAGES and self.message_verdict is Status.ACCEPT

    def decide(self, stage: str, status: Status) -> None:
        """Record a verdict that ends this filter's part in the message or connection."""
        if stage in CONNECTION_STAGES:
            self.connection_verdict = status
        else:
            self.message_verdict = status
        self.label = self.describe(status.nick)

    def describe(self, nick: str) -> str:
        """A verdict for the statistics: ``reject``, ``accept (failed)``, ``reject
        (evaluation)``."""
        if self.failed:
            nick += " (failed)"
        return nick + (" (evaluation)" if self.evaluation else "")

    def end_message(self) -> str:
        """Forget the message; returns its label for the statistics."""
        if self.label is not None:
            label = self.label
        elif self.connection_detached or self.message_detached:
            label = "detached"
        elif self.connection_verdict is not None:
            label = self.connection_verdict.nick
        else:
            label = self.describe("continue")
        self.tally[label] += 1
        self.failed = False
        self.label = None
        self.message_detached = False
        self.message_verdict = None
        self.skipped_body = False
        self.failed_at_end = False
        self.view._end_message()
        return label

    def reset_connection(self) -> None:
        """A new SMTP client on the connection (QUIT_NC): start over."""
        self.connection_detached = False
        self.connection_verdict = None
        self.view.connection_data.clear()


def make_member(flt: Filter, context: ClientContext) -> Member:
    return Member(flt, FilterView(context, flt.host))
