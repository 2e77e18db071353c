"""A filter as a named, installable unit, and how one is found.

A unit is what ``milterkit run A B C`` and a configuration file name: an entry point of the
group ``milterkit.filters`` (an installed package's filter), a file (``filters/spam.py``) or a
module (``mypackage.spam``), optionally followed by ``:function``. What it points at is one of

- a module with ``setup(client)`` (and, optionally, ``DESCRIPTION`` and ``OPTIONS``);
- a ``setup(client)`` function (its docstring's first line is the description; an ``OPTIONS``
  attribute, if set, the options);
- a session class: one instance per connection, made with the filter's context view, whose
  methods named after the events (``envelope_from(self, address)``...) are its handlers.

``OPTIONS`` maps each option's name to its default; the type of the default is the type a
configured value must have. The filter reads the merged values from ``client.options``.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from importlib import metadata
from types import ModuleType
from typing import Any

from ..server.target import TargetError, load_module

#: The entry-point group installed filters are published under.
ENTRY_POINT_GROUP = "milterkit.filters"

SetupFunction = Callable[[Any], object]


class FilterLoadError(TargetError):
    """A filter cannot be found, imported or used (the message says which and why)."""


@dataclass(frozen=True)
class FilterUnit:
    """One loadable filter: its name, its ``setup(client)``, its description and options."""

    name: str
    setup: SetupFunction
    description: str = ""
    #: Option name -> default value (its type is the type a configured value must have).
    options: Mapping[str, Any] = field(default_factory=dict)
    #: Where it came from: ``entry point NAME (DIST VERSION)``, a file or a module.
    source: str = ""

    def check_options(self, given: Mapping[str, Any]) -> dict[str, Any]:
        """The defaults updated with ``given``; an unknown name or a wrong type is an error."""
        merged = dict(self.options)
        for key, value in given.items():
            if key not in self.options:
                known = ", ".join(sorted(self.options)) or "none"
                raise FilterLoadError(
                    f"filter {self.name!r} has no option {key!r} (its options: {known})"
                )
            default = self.options[key]
            if default is not None and not _fits(value, default):
                raise FilterLoadError(
                    f"filter {self.name!r}: option {key!r} must be {type(default).__name__}, "
                    f"not {type(value).__name__} ({value!r})"
                )
            merged[key] = value
        return merged


def _fits(value: object, default: object) -> bool:
    if isinstance(default, bool) or isinstance(value, bool):
        return isinstance(value, bool) and isinstance(default, bool)
    if isinstance(default, float):
        return isinstance(value, (int, float))
    return isinstance(value, type(default))


def installed_filters() -> list[metadata.EntryPoint]:
    """The entry points of the group ``milterkit.filters``, sorted by name."""
    return sorted(metadata.entry_points(group=ENTRY_POINT_GROUP), key=lambda ep: ep.name)


def find_entry_point(name: str) -> metadata.EntryPoint | None:
    """The installed filter called ``name`` (group ``milterkit.filters``), if there is one."""
    return _entry_point(name)


def _entry_point(name: str) -> metadata.EntryPoint | None:
    for ep in metadata.entry_points(group=ENTRY_POINT_GROUP):
        if ep.name == name:
            return ep
    return None


def load_entry_point(ep: metadata.EntryPoint) -> FilterUnit:
    """The unit an entry point names (importing its code)."""
    dist = getattr(ep, "dist", None)
    source = f"entry point {ep.name}" + (f" ({dist.name} {dist.version})" if dist else "")
    try:
        obj = ep.load()
    except Exception as exc:
        raise FilterLoadError(f"filter {ep.name!r} ({ep.value}) cannot be loaded: "
                              f"{type(exc).__name__}: {exc}") from exc
    return unit_from_object(ep.name, obj, source)


def load_unit(target: str) -> FilterUnit:
    """Find the filter ``target`` names: an installed entry point, a file or a module."""
    if not target:
        raise FilterLoadError("an empty filter name")
    ep = _entry_point(target)
    if ep is not None:
        return load_entry_point(ep)
    name, attribute = target, None
    head, colon, tail = target.rpartition(":")
    if colon and head and tail.isidentifier():
        name, attribute = head, tail
    try:
        module = load_module(name)
    except TargetError as exc:
        raise FilterLoadError(f"{exc} (and no installed filter is called {target!r}; "
                              "see milterkit filters)") from None
    unit_name = _short_name(name)
    if attribute is None:
        return unit_from_object(unit_name, module, name)
    obj = getattr(module, attribute, None)
    if obj is None:
        raise FilterLoadError(f"{name} defines no {attribute}")
    return unit_from_object(unit_name if attribute == "setup" else attribute, obj, target)


def _short_name(name: str) -> str:
    """``filters/spam.py`` -> ``spam``; ``mypackage.spam`` -> ``spam``."""
    if name.endswith(".py") or "/" in name:
        base = name.rstrip("/").rsplit("/", 1)[-1]
        return base[:-3] if base.endswith(".py") else base
    return name.rsplit(".", 1)[-1]


def _first_line(text: str | None) -> str:
    return (text or "").strip().split("\n", 1)[0].strip()


def unit_from_object(name: str, obj: object, source: str) -> FilterUnit:
    """A unit from a module, a setup function or a session class."""
    if isinstance(obj, ModuleType):
        setup = getattr(obj, "setup", None)
        if not callable(setup):
            raise FilterLoadError(f"{source} defines no setup(client) function")
        description = getattr(obj, "DESCRIPTION", None) or _first_line(obj.__doc__)
        return FilterUnit(name, setup, str(description), _options(obj, source), source)
    if inspect.isclass(obj):
        from .session import session_setup

        description = getattr(obj, "DESCRIPTION", None) or _first_line(obj.__doc__)
        return FilterUnit(name, session_setup(obj), str(description), _options(obj, source),
                          source)
    if callable(obj):
        description = getattr(obj, "DESCRIPTION", None) or _first_line(obj.__doc__)
        return FilterUnit(name, obj, str(description), _options(obj, source), source)
    raise FilterLoadError(f"{source} is neither a module, a setup function nor a session "
                          f"class ({type(obj).__name__})")


def _options(obj: object, source: str) -> dict[str, Any]:
    options = getattr(obj, "OPTIONS", None)
    if options is None:
        return {}
    if not isinstance(options, Mapping) or not all(isinstance(k, str) for k in options):
        raise FilterLoadError(f"{source}: OPTIONS must map option names to default values")
    return dict(options)
