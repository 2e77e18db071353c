"""Load a filter: a file or module that defines ``setup(client)``, a callable, or a Client.

The same targets ``milterkit run`` takes, so a test and a deployment load a filter one way.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any, TypeAlias

from ..server.client import Client

#: What the test tools accept as a filter.
Target: TypeAlias = "str | Path | Callable[[Client], Any] | Client"


class TargetError(ValueError):
    """A target that cannot be loaded (no such file or module, no ``setup``)."""


def load_module(target: str | Path) -> ModuleType:
    """Import a ``.py`` file by path, or a module by dotted name."""
    text = str(target)
    path = Path(text)
    if text.endswith(".py") or path.is_file():
        if not path.is_file():
            raise TargetError(f"no such filter file: {text}")
        name = f"_milterkit_target_{path.stem}_{abs(hash(str(path.resolve())))}"
        spec = importlib.util.spec_from_file_location(name, path)
        if spec is None or spec.loader is None:
            raise TargetError(f"cannot load {text} as Python")
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
        return module
    try:
        return importlib.import_module(text)
    except ImportError as exc:
        raise TargetError(f"cannot import filter module {text!r}: {exc}") from exc


def setup_function(target: str | Path | Callable[[Client], Any]) -> Callable[[Client], Any]:
    """The ``setup(client)`` function a target names."""
    if callable(target):
        return target
    module = load_module(target)
    setup = getattr(module, "setup", None)
    if not callable(setup):
        raise TargetError(f"{target} defines no setup(client) function")
    return setup  # type: ignore[no-any-return]


def load_client(target: Target, **options: Any) -> Client:
    """A :class:`~milterkit.server.client.Client` with the target's handlers connected.

    ``options`` go to the Client's constructor (ignored when ``target`` is a Client).
    """
    if isinstance(target, Client):
        return target
    client = Client(**options)
    setup_function(target)(client)
    return client
