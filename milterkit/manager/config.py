"""The ``[[milter]]`` tables (and the ``[manager]`` table) of a configuration file.

::

    [manager]
    verdict-header = "X-Milter-Verdicts"   # optional: each member's verdict, in a header
    order = ["opendkim", "add-header"]     # optional: the member order (default: the
                                           # [[milter]] tables, then the [[filter]] tables)

    [[milter]]                    # one table per child milter, in order (before the filters)
    name = "opendkim"             # its name in logs and verdicts (required)
    connection = "inet:8891@127.0.0.1"   # its connection spec (required)
    fallback = "accept"           # what its failure becomes (accept, continue, reject, tempfail)
    timeout = 20.0                # seconds per answer (0: none)
    connect-timeout = 5.0         # seconds to connect and negotiate, per attempt
    connect-attempts = 2          # attempts per MTA connection
    reconnect-delay = 0.2         # seconds between attempts
    retry-after = 0.0             # seconds not to try a child that could not be reached
    evaluation = false            # record and log its verdicts and changes, send none
    conditions = ["unauthenticated"]
    command = ["opendkim", "-f", "-x", "/etc/opendkim.conf"]   # optional: start it
    start-timeout = 10.0          # seconds for the started command to listen
    max-restarts = 3              # starts again after it exited

Every unknown key and every value of the wrong type is an error naming the file and the key.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from ..compose.conditions import ConditionError, make_condition
from ..compose.spec import DEFAULT_FILTER_TIMEOUT
from ..status import Status
from .spec import (
    DEFAULT_CONNECT_ATTEMPTS,
    DEFAULT_CONNECT_TIMEOUT,
    DEFAULT_RECONNECT_DELAY,
    ChildSpec,
)

_NUMBERS = {
    "timeout": DEFAULT_FILTER_TIMEOUT, "connect-timeout": DEFAULT_CONNECT_TIMEOUT,
    "reconnect-delay": DEFAULT_RECONNECT_DELAY, "start-timeout": 10.0, "retry-after": 0.0,
}
_INTEGERS = {"connect-attempts": DEFAULT_CONNECT_ATTEMPTS, "max-restarts": 3}
MILTER_KEYS = ("name", "connection", "fallback", "evaluation", "conditions", "command",
               *_NUMBERS, *_INTEGERS)
MANAGER_KEYS = ("verdict-header", "order")


class MilterConfigError(ValueError):
    """A ``[[milter]]`` or ``[manager]`` table is wrong (the message names file and key)."""


def parse_manager(table: Any, name: str) -> dict[str, Any]:
    """The ``[manager]`` table, checked: ``{"verdict_header": ..., "order": ...}``."""
    if not isinstance(table, dict):
        raise MilterConfigError(f"{name}: manager must be a table ([manager])")
    unknown = sorted(set(table) - set(MANAGER_KEYS))
    if unknown:
        raise MilterConfigError(f"{name}: [manager] has no key {unknown[0]!r} (known: "
                                f"{', '.join(MANAGER_KEYS)})")
    header = table.get("verdict-header")
    if header is not None and (not isinstance(header, str) or not header
                               or any(c in header for c in ": \t\r\n")):
        raise MilterConfigError(f"{name}: [manager] verdict-header must be a header name")
    order = table.get("order")
    if order is not None and (not isinstance(order, list)
                              or not all(isinstance(item, str) for item in order)):
        raise MilterConfigError(f"{name}: [manager] order must be a list of member names")
    return {"verdict_header": header, "order": order}


def check_order(order: Sequence[str], members: Sequence[str], name: str) -> None:
    """``[manager] order`` must name every member (child milter or filter) exactly once."""
    unknown = [item for item in order if item not in members]
    if unknown:
        raise MilterConfigError(f"{name}: [manager] order names {unknown[0]!r}, which is no "
                                f"child milter or filter (members: {', '.join(members)})")
    if sorted(order) != sorted(members):
        raise MilterConfigError(f"{name}: [manager] order must name every child milter and "
                                f"filter exactly once (members: {', '.join(members)})")


def parse_milters(tables: Any, name: str) -> list[ChildSpec]:
    """The ``[[milter]]`` tables, checked, as :class:`ChildSpec` objects, in order."""
    if not isinstance(tables, list) or not all(isinstance(t, dict) for t in tables):
        raise MilterConfigError(f"{name}: milter must be an array of tables ([[milter]])")
    specs: list[ChildSpec] = []
    for number, table in enumerate(tables, 1):
        specs.append(_milter(table, f"{name}: milter #{number}"))
    names = [spec.name for spec in specs]
    for spec in specs:
        if names.count(spec.name) > 1:
            raise MilterConfigError(f"{name}: two milters are called {spec.name!r}")
    return specs


def _milter(table: Mapping[str, Any], where: str) -> ChildSpec:
    unknown = sorted(set(table) - set(MILTER_KEYS))
    if unknown:
        raise MilterConfigError(f"{where}: unknown key {unknown[0]!r} (known: "
                                f"{', '.join(MILTER_KEYS)})")
    label = table.get("name")
    if not isinstance(label, str) or not label:
        raise MilterConfigError(f"{where}: needs name = \"NAME\"")
    where = f"{where} ({label})"
    connection = table.get("connection")
    if not isinstance(connection, str) or not connection:
        raise MilterConfigError(f"{where}: needs connection = \"SPEC\" (inet:PORT@HOST, "
                                "unix:PATH...)")
    values: dict[str, Any] = {}
    for key, default in _NUMBERS.items():
        value = table.get(key, default)
        if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
            raise MilterConfigError(f"{where}: {key} must be a number of seconds")
        values[key.replace("-", "_")] = float(value)
    for key, default in _INTEGERS.items():
        value = table.get(key, default)
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise MilterConfigError(f"{where}: {key} must be a whole number")
        values[key.replace("-", "_")] = value
    values["timeout"] = values["timeout"] or None
    evaluation = table.get("evaluation", False)
    if not isinstance(evaluation, bool):
        raise MilterConfigError(f"{where}: evaluation must be true or false")
    command = table.get("command")
    if command is not None:
        if isinstance(command, str):
            command = command.split()
        if not isinstance(command, Sequence) or not command or not all(
                isinstance(part, str) for part in command):
            raise MilterConfigError(f"{where}: command must be a list of strings")
    conditions = table.get("conditions", [])
    if not isinstance(conditions, list):
        raise MilterConfigError(f"{where}: conditions must be a list")
    fallback = table.get("fallback", "accept")
    if not isinstance(fallback, str):
        raise MilterConfigError(f"{where}: fallback must be a string")
    try:
        return ChildSpec(label, connection, fallback=Status.from_name(fallback),
                         evaluation=evaluation, command=list(command) if command else None,
                         conditions=[make_condition(item) for item in conditions], **values)
    except (ConditionError, ValueError) as exc:
        raise MilterConfigError(f"{where}: {exc}") from None
