"""A configured filter: which unit, under which name, with which options and policies."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from ..status import Status
from .conditions import Condition
from .unit import FilterUnit

#: Seconds a filter may take to answer one stage (a coroutine, or after PROGRESS) before it
#: counts as failed. Below Postfix's ``milter_command_timeout`` (30 s), so the other filters'
#: verdicts still reach the MTA.
DEFAULT_FILTER_TIMEOUT = 20.0
#: The statuses a filter's failure may become.
FALLBACKS = frozenset({Status.ACCEPT, Status.CONTINUE, Status.REJECT, Status.TEMPORARY_FAILURE})


@dataclass
class FilterSpec:
    """One filter in a composition.

    ``fallback`` is what an exception or a timeout in this filter becomes (None: the context's
    exception policy); ``evaluation`` records and logs its verdicts and changes without sending
    them; ``conditions`` say when it applies; ``timeout`` bounds each of its answers.
    """

    unit: FilterUnit
    name: str | None = None
    options: Mapping[str, Any] = field(default_factory=dict)
    evaluation: bool = False
    fallback: Status | None = None
    timeout: float | None = DEFAULT_FILTER_TIMEOUT
    conditions: Sequence[Condition] = ()

    def __post_init__(self) -> None:
        if self.fallback is not None and self.fallback not in FALLBACKS:
            names = ", ".join(sorted(s.nick for s in FALLBACKS))
            raise ValueError(f"filter {self.label!r}: fallback must be one of {names}, "
                             f"not {self.fallback.nick}")
        if self.timeout is not None and self.timeout <= 0:
            raise ValueError(f"filter {self.label!r}: timeout must be positive")

    @property
    def label(self) -> str:
        """The filter's name in logs and statistics."""
        return self.name or self.unit.name
