"""What ``milterkit run`` serves when given several filters or ``--config FILE``.

``run.py`` calls :func:`apply_config` before it builds the Client (the file's ``[run]`` table
fills in every option not given on the command line) and :func:`load_filters` for the setup
function: one target is loaded as before; several, or a configuration's ``[[filter]]`` tables,
become a :class:`~milterkit.compose.Composer` (so does one installed filter, which reads its
options from its host).
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import Any

from ..server.target import TargetError, load_setup


class RunConfigError(TargetError):
    """A mistake in ``--config`` or in the filters named: one line for the user."""


def apply_config(args: argparse.Namespace) -> None:
    """Read ``args.config`` (if given) into ``args``; raises :class:`RunConfigError`."""
    path = getattr(args, "config", None)
    if path is None:
        return
    from ..compose.config import ConfigError, read_config

    if args.target:
        raise RunConfigError("give the filters on the command line or in --config, not both")
    try:
        config = read_config(path)
    except ConfigError as exc:
        raise RunConfigError(str(exc)) from None
    parser: argparse.ArgumentParser = args._run_parser
    for key, value in config.run.items():
        action = _action(parser, key)
        if action is None:
            known = ", ".join(sorted(_keys(parser)))
            raise RunConfigError(f"{path}: [run] has no key {key!r} (known: {known})")
        converted = _convert(action, key, value, path)
        if getattr(args, action.dest) == parser.get_default(action.dest):
            setattr(args, action.dest, converted)  # the command line wins where it was used
    args._composed_filters = config.filters
    if config.milters or config.manager:  # [[milter]] or [manager]: a milter manager
        args._managed_milters = config.milters
        args._manager_settings = config.manager


def _keys(parser: argparse.ArgumentParser) -> list[str]:
    return [action.option_strings[-1][2:] for action in parser._actions
            if action.option_strings and action.option_strings[-1].startswith("--")
            and action.dest not in ("help", "config")]


def _action(parser: argparse.ArgumentParser, key: str) -> argparse.Action | None:
    if key in ("help", "config"):
        return None
    for action in parser._actions:
        if f"--{key}" in action.option_strings:
            return action
    return None


def _convert(action: argparse.Action, key: str, value: Any, path: str) -> Any:
    where = f"{path}: [run] {key}"
    if action.nargs == 0:  # a flag
        if not isinstance(value, bool):
            raise RunConfigError(f"{where} must be true or false, not {value!r}")
        return action.const if value else action.default
    if isinstance(value, (dict, list)) or isinstance(value, bool):
        raise RunConfigError(f"{where}: {value!r} is not a value for --{key}")
    if key == "socket-mode" and not isinstance(value, str):
        raise RunConfigError(f"{where} must be a string of octal digits, such as \"0660\"")
    text = str(value)
    converted: Any = text
    if action.type is not None:
        try:
            converted = action.type(text)  # type: ignore[operator]
        except (argparse.ArgumentTypeError, ValueError, TypeError) as exc:
            raise RunConfigError(f"{where}: {exc}") from None
    if action.choices is not None and converted not in action.choices:
        choices = ", ".join(str(choice) for choice in action.choices)
        raise RunConfigError(f"{where}: {value!r} is not one of {choices}")
    return converted


def load_filters(args: argparse.Namespace) -> Callable[[Any], object]:
    """The setup function ``milterkit run`` calls: one filter's, or a composer's."""
    specs = getattr(args, "_composed_filters", None)
    target = args.target
    targets: list[str] = [target] if isinstance(target, str) else list(target or [])
    from ..compose import Composer, FilterLoadError, FilterSpec, load_unit
    from ..compose.unit import find_entry_point

    if specs is None and len(targets) == 1 and find_entry_point(targets[0]) is None:
        return load_setup(targets[0])  # one plain filter: served as before, not composed

    if specs is None:
        if not targets:
            raise RunConfigError("no filter given: name one or more (FILE, MODULE or an "
                                 "installed filter, see milterkit filters) or use --config FILE")
        specs = [FilterSpec(load_unit(target)) for target in targets]
    try:
        milters = getattr(args, "_managed_milters", None)
        if milters is not None:
            from ..manager import Manager

            return Manager(milters, specs, **getattr(args, "_manager_settings", {}))
        return Composer(specs)
    except FilterLoadError as exc:
        raise RunConfigError(str(exc)) from None
