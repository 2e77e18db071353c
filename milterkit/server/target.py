"""Loading the filter ``milterkit run`` serves: a file path or a module name that defines
``setup(client)`` (or ``TARGET:function`` for another function name)."""

from __future__ import annotations

import importlib
import importlib.util
import os
import sys
from collections.abc import Callable
from types import ModuleType
from typing import Any


class TargetError(Exception):
    """The target cannot be imported or has no setup function."""


def load_setup(target: str) -> Callable[[Any], object]:
    """Import ``target`` and return its setup function.

    ``target`` is ``path/to/filter.py``, ``package.module``, or either followed by
    ``:function``. A file is loaded by path (its directory goes on ``sys.path`` so it can import
    its neighbours); a module name is imported with the current directory on ``sys.path``, as
    ``python -m`` does.
    """
    name, function = target, "setup"
    head, colon, tail = target.rpartition(":")
    if colon and head and tail.isidentifier():
        name, function = head, tail
    module = _load_file(name) if _is_path(name) else _load_module(name)
    setup = getattr(module, function, None)
    if not callable(setup):
        raise TargetError(f"{name} defines no {function}(client) function")
    return setup  # type: ignore[no-any-return]


def load_module(name: str) -> ModuleType:
    """Import a file path or a module name as :func:`load_setup` does (no function looked up)."""
    return _load_file(name) if _is_path(name) else _load_module(name)


def _is_path(name: str) -> bool:
    return name.endswith(".py") or os.sep in name or os.path.isfile(name)


def _load_file(path: str) -> ModuleType:
    if not os.path.isfile(path):
        raise TargetError(f"no such file: {path}")
    directory = os.path.dirname(os.path.abspath(path))
    if directory not in sys.path:
        sys.path.insert(0, directory)
    stem = os.path.splitext(os.path.basename(path))[0]
    module_name = f"milterkit_target_{stem}"
    spec = importlib.util.spec_from_file_location(module_name, path)
    if spec is None or spec.loader is None:
        raise TargetError(f"cannot load {path} as Python code")
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module  # dataclasses and pickling look modules up here
    try:
        spec.loader.exec_module(module)
    except BaseException:
        del sys.modules[module_name]
        raise
    return module


def _load_module(name: str) -> ModuleType:
    if "" not in sys.path and os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    try:
        return importlib.import_module(name)
    except ModuleNotFoundError as exc:
        if exc.name is not None and name.startswith(exc.name):
            raise TargetError(f"no module named {name!r} (nor a file of that name)") from None
        raise
