"""The TOML configuration of a composed milter (``milterkit run --config FILE``).

::

    [run]                      # any long option of `milterkit run`, without its dashes
    listen = "inet:10025@127.0.0.1"
    log-level = "info"

    [[filter]]                 # one table per filter, in order
    use = "size-limit"         # an entry point, a file or a module
    name = "size"              # optional: its name in logs (default: from `use`)
    evaluation = false         # record and log its verdicts, send none
    fallback = "accept"        # what its exception or timeout becomes
    timeout = 5.0              # seconds per answer (0: none)
    conditions = ["unauthenticated",
                  { name = "remote-network", trusted-networks = ["192.0.2.0/24"] }]
    [filter.options]           # the filter's own options (see `milterkit filters`)
    max-size = 1000000

Every unknown key and every value of the wrong type is an error naming the file and the key.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..status import Status
from .conditions import ConditionError, make_condition
from .spec import DEFAULT_FILTER_TIMEOUT, FilterSpec
from .unit import FilterLoadError, load_unit

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

_FILTER_KEYS = ("use", "name", "evaluation", "fallback", "timeout", "conditions", "options")


class ConfigError(ValueError):
    """The configuration file is unreadable or wrong (the message names file and key)."""


@dataclass
class Config:
    """A parsed configuration: ``milterkit run``'s settings and the filters, in order."""

    path: str
    run: dict[str, Any] = field(default_factory=dict)
    filters: list[FilterSpec] = field(default_factory=list)
    #: The ``[[milter]]`` tables: child milters for :class:`milterkit.manager.Manager`.
    milters: list[Any] = field(default_factory=list)
    #: The ``[manager]`` table's settings (``verdict_header``).
    manager: dict[str, Any] = field(default_factory=dict)


def read_config(path: str | Path) -> Config:
    """Read and check ``path``; loads every filter it names (so a missing one fails now)."""
    name = str(path)
    try:
        with open(path, "rb") as stream:
            data = tomllib.load(stream)
    except OSError as exc:
        raise ConfigError(f"{name}: cannot read: {exc.strerror or exc}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{name}: not valid TOML: {exc}") from None
    return parse_config(data, name, Path(path).parent)


def parse_config(data: Mapping[str, Any], name: str = "<config>",
                 base: Path | None = None) -> Config:
    """A :class:`Config` from TOML data already parsed; a filter's relative file path is
    taken relative to ``base`` (the file's directory) when it exists there."""
    unknown = sorted(set(data) - {"run", "filter", "milter", "manager"})
    if unknown:
        raise ConfigError(f"{name}: unknown key {unknown[0]!r} (known: run, filter, milter, "
                          "manager)")
    run = data.get("run", {})
    if not isinstance(run, dict):
        raise ConfigError(f"{name}: run must be a table ([run])")
    filters = data.get("filter", [])
    if not isinstance(filters, list) or not all(isinstance(f, dict) for f in filters):
        raise ConfigError(f"{name}: filter must be an array of tables ([[filter]])")
    config = Config(name, dict(run))
    if "milter" in data or "manager" in data:  # a milter manager (docs/manager.rst)
        from ..manager.config import MilterConfigError, parse_manager, parse_milters

        try:
            config.milters = parse_milters(data.get("milter", []), name)
            config.manager = parse_manager(data.get("manager", {}), name)
        except MilterConfigError as exc:
            raise ConfigError(str(exc)) from None
    if not filters and not config.milters:
        raise ConfigError(f"{name}: no filter: add a [[filter]] table with use = \"...\"")
    for number, table in enumerate(filters, 1):
        config.filters.append(_filter(table, f"{name}: filter #{number}", base))
    if config.manager.get("order") is not None:
        from ..manager.config import MilterConfigError, check_order

        try:
            check_order(config.manager["order"], [m.name for m in config.milters]
                        + [f.label for f in config.filters], name)
        except MilterConfigError as exc:
            raise ConfigError(str(exc)) from None
    return config


def _filter(table: Mapping[str, Any], where: str, base: Path | None) -> FilterSpec:
    unknown = sorted(set(table) - set(_FILTER_KEYS))
    if unknown:
        raise ConfigError(f"{where}: unknown key {unknown[0]!r} (known: {', '.join(_FILTER_KEYS)})")
    use = table.get("use")
    if not isinstance(use, str) or not use:
        raise ConfigError(f"{where}: needs use = \"FILTER\" (an entry point, file or module)")
    where = f"{where} ({use})"
    name = _typed(table, "name", str, where, None)
    evaluation = _typed(table, "evaluation", bool, where, False)
    fallback_name = _typed(table, "fallback", str, where, None)
    timeout = table.get("timeout", DEFAULT_FILTER_TIMEOUT)
    if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or timeout < 0:
        raise ConfigError(f"{where}: timeout must be a number of seconds (0: none)")
    options = table.get("options", {})
    if not isinstance(options, dict):
        raise ConfigError(f"{where}: options must be a table ([filter.options])")
    conditions = table.get("conditions", [])
    if not isinstance(conditions, list):
        raise ConfigError(f"{where}: conditions must be a list")
    target = use
    if base is not None and (use.endswith(".py") or "/" in use) and not Path(use).is_absolute():
        candidate = base / use.split(":", 1)[0]
        if candidate.exists():
            target = str(base / use)
    try:
        unit = load_unit(target)
        fallback = Status.from_name(fallback_name) if fallback_name else None
        made = [make_condition(item) for item in conditions]
        spec = FilterSpec(unit, name=name, options=options, evaluation=evaluation,
                          fallback=fallback, timeout=float(timeout) or None, conditions=made)
        unit.check_options(options)
    except (FilterLoadError, ConditionError, ValueError) as exc:
        raise ConfigError(f"{where}: {exc}") from None
    return spec


def _typed(table: Mapping[str, Any], key: str, kind: type, where: str, default: Any) -> Any:
    value = table.get(key, default)
    if value is not default and not isinstance(value, kind):
        raise ConfigError(f"{where}: {key} must be a {kind.__name__}, not {value!r}")
    return value
