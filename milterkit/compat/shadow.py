"""Make milterkit modules importable under another library's names, then run an application.

:func:`install` puts a finder at the front of :data:`sys.meta_path` so that ``import Milter``
(and ``import Milter.utils``) give milterkit's stand-in modules even when the real library is
installed too; :func:`run_command` then runs a console script, a ``-m`` module or a ``.py`` file
as ``python`` would, in this process. Nothing here knows any particular flavour.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.machinery
import importlib.metadata
import importlib.util
import runpy
import sys
from collections.abc import Mapping, Sequence
from types import ModuleType


class CommandError(Exception):
    """COMMAND names nothing that can be run (no such script, module or file)."""


class _Alias(importlib.abc.Loader):
    def __init__(self, target: str) -> None:
        self.target = target
        self._own_spec: importlib.machinery.ModuleSpec | None = None

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> ModuleType:
        module = importlib.import_module(self.target)
        self._own_spec = module.__spec__
        return module

    def exec_module(self, module: ModuleType) -> None:
        # The target module ran when it was imported under its own name. The import system
        # has just given it the alias's spec; give its own back, or its __package__ and
        # __spec__.parent disagree and every relative import warns (Python 3.12+).
        module.__spec__ = self._own_spec


class ShadowFinder(importlib.abc.MetaPathFinder):
    """Resolves ``NAME`` and ``NAME.sub`` for every ``NAME`` in ``shadowed`` to the milterkit
    module ``shadowed[NAME]`` (``+ ".sub"``): the same module object under both names."""

    def __init__(self, shadowed: Mapping[str, str]) -> None:
        self.shadowed = dict(shadowed)

    def _target(self, fullname: str) -> str | None:
        top, dot, rest = fullname.partition(".")
        base = self.shadowed.get(top)
        if base is None:
            return None
        return base + dot + rest

    def find_spec(
        self, fullname: str, path: Sequence[str] | None, target: ModuleType | None = None
    ) -> importlib.machinery.ModuleSpec | None:
        name = self._target(fullname)
        if name is None:
            return None
        if importlib.util.find_spec(name) is None:
            return None  # e.g. Milter.greylist, which milterkit does not provide: ImportError
        real = importlib.import_module(name)
        spec = importlib.machinery.ModuleSpec(
            fullname, _Alias(name), is_package=hasattr(real, "__path__")
        )
        return spec


def install(shadowed: Mapping[str, str]) -> ShadowFinder:
    """Shadow the names in ``shadowed`` for the rest of this process; returns the finder.

    Modules already imported under those names (the real library's) are dropped from
    :data:`sys.modules` first, so the next import gets milterkit's.
    """
    finder = ShadowFinder(shadowed)
    for name in list(sys.modules):
        if finder._target(name) is not None:
            del sys.modules[name]
    sys.meta_path.insert(0, finder)
    return finder


def uninstall(finder: ShadowFinder) -> None:
    """Undo :func:`install` (for tests): remove the finder and the aliased modules."""
    if finder in sys.meta_path:
        sys.meta_path.remove(finder)
    for name in list(sys.modules):
        if finder._target(name) is not None:
            del sys.modules[name]


def _console_script(name: str) -> importlib.metadata.EntryPoint | None:
    for entry in importlib.metadata.entry_points(group="console_scripts"):
        if entry.name == name:
            return entry
    return None


def run_command(command: Sequence[str]) -> object:
    """Run ``command`` (``[SCRIPT, *args]``, ``["-m", MODULE, *args]`` or ``[FILE.py, *args]``)
    in this process with ``sys.argv`` set as the program would see it; returns what a console
    script's function returned (its exit status), else None. Raises :class:`CommandError`."""
    if not command:
        raise CommandError("no COMMAND given")
    if command[0] == "-m":
        if len(command) < 2:
            raise CommandError("-m needs a MODULE")
        module = command[1]
        try:
            found = importlib.util.find_spec(module)
        except (ImportError, ValueError):
            found = None
        if found is None:
            raise CommandError(f"no module named {module!r}")
        sys.argv = [module, *command[2:]]
        runpy.run_module(module, run_name="__main__", alter_sys=True)
        return None
    program = command[0]
    if program.endswith(".py") or "/" in program:
        import os

        if not os.path.isfile(program):
            raise CommandError(f"no such file: {program!r}")
        sys.argv = [program, *command[1:]]
        sys.path.insert(0, os.path.dirname(os.path.abspath(program)))
        runpy.run_path(program, run_name="__main__")
        return None
    entry = _console_script(program)
    if entry is None:
        raise CommandError(
            f"{program!r} is not an installed console script, a .py file or -m MODULE"
        )
    sys.argv = [program, *command[1:]]
    function = entry.load()
    return function()
