"""Several filters in one milter: named, installable units composed by milter-manager's rules.

- :mod:`~milterkit.compose.unit`: a filter as a unit, found by entry point (group
  ``milterkit.filters``), file or module;
- :class:`Composer`: runs them in one context per connection, each with its own
  :class:`FilterView`, ranks their statuses (:mod:`~milterkit.compose.ranking`), isolates their
  failures, supports evaluation mode and applicable :mod:`~milterkit.compose.conditions`;
- :mod:`~milterkit.compose.config`: the TOML configuration ``milterkit run --config`` reads.

See ``docs/plugins.rst`` for the rules, written down.
"""

from .composer import Composer
from .conditions import (
    Authenticated,
    Condition,
    ConditionError,
    RemoteNetwork,
    Unauthenticated,
    is_authenticated,
    make_condition,
)
from .host import FilterHost
from .ranking import RANK, combine
from .spec import DEFAULT_FILTER_TIMEOUT, FilterSpec
from .unit import (
    ENTRY_POINT_GROUP,
    FilterLoadError,
    FilterUnit,
    installed_filters,
    load_unit,
    unit_from_object,
)
from .view import Change, FilterView

__all__ = [
    "DEFAULT_FILTER_TIMEOUT", "ENTRY_POINT_GROUP", "RANK", "Authenticated", "Change",
    "Composer", "Condition", "ConditionError", "FilterHost", "FilterLoadError", "FilterSpec",
    "FilterUnit", "FilterView", "RemoteNetwork", "Unauthenticated", "combine", "compose",
    "installed_filters", "is_authenticated", "load_unit", "make_condition", "unit_from_object",
]


def compose(*targets: str) -> Composer:
    """A composer of the filters ``targets`` name (entry points, files or modules), in order,
    with default settings: ``compose("size-limit", "examples/add_header.py")``."""
    return Composer(FilterSpec(load_unit(target)) for target in targets)
