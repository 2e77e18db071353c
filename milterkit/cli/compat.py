"""``milterkit compat FLAVOUR COMMAND [ARG...]``: run an application written for another milter
library, unmodified, on milterkit.

``FLAVOUR`` names a compatibility package (:data:`FLAVOURS`); its ``SHADOWED`` mapping says which
top-level import names the application uses and which milterkit module provides each. Those are
put in ``sys.modules`` before the application's code runs, so ``import purepythonmilter`` finds
milterkit's implementation even where the original is installed. ``COMMAND`` is a path to a
``.py`` file, ``-m MODULE``, or the name of a console script on ``PATH``.
"""

from __future__ import annotations

import argparse
import importlib
import os
import runpy
import shutil
import sys

HELP = "Run an application written for another milter library (e.g. purepythonmilter) unmodified."

#: Flavour name -> the dotted name of the module whose ``SHADOWED`` dict names what to provide.
FLAVOURS: dict[str, str] = {
    "purepythonmilter": "milterkit.compat.purepythonmilter",
}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add compat's arguments."""
    parser.add_argument("flavour", metavar="FLAVOUR", help=f"one of: {', '.join(FLAVOURS)}")
    # One REMAINDER positional, so that "-m MODULE" and the application's own options after
    # COMMAND are not taken for options of milterkit compat.
    parser.add_argument("command", metavar="COMMAND [ARG...]", nargs=argparse.REMAINDER,
                        help="a .py file, -m MODULE, or a console script on PATH, then the "
                        "application's arguments")


def shadow(flavour: str) -> dict[str, str]:
    """Import ``flavour``'s modules and register them under the names applications import."""
    provider = importlib.import_module(FLAVOURS[flavour])
    shadowed: dict[str, str] = provider.SHADOWED
    for name, target in shadowed.items():
        sys.modules[name] = importlib.import_module(target)
    return shadowed


def main(args: argparse.Namespace) -> int:
    """Run the application with the flavour's modules shadowed."""
    if args.flavour not in FLAVOURS:
        print(f"milterkit compat: unknown flavour {args.flavour!r} (known: "
              f"{', '.join(FLAVOURS)})", file=sys.stderr)
        return 2
    if not args.command:
        print("milterkit compat: COMMAND is missing (a .py file, -m MODULE or a console "
              "script)", file=sys.stderr)
        return 2
    command: str = args.command[0]
    arguments: list[str] = list(args.command[1:])
    module: str | None = None
    path: str | None = None
    if command == "-m":
        if not arguments:
            print("milterkit compat: -m needs a module name", file=sys.stderr)
            return 2
        module, arguments = arguments[0], arguments[1:]
    elif os.path.exists(command):
        path = command
    else:
        path = shutil.which(command)
        if path is None:
            print(f"milterkit compat: {command!r} is neither a file nor a command on PATH",
                  file=sys.stderr)
            return 2
    shadow(args.flavour)
    sys.argv = [module or command, *arguments]
    try:
        if module is not None:
            runpy.run_module(module, run_name="__main__", alter_sys=True)
        else:
            assert path is not None
            sys.path.insert(0, os.path.dirname(os.path.abspath(path)))
            runpy.run_path(path, run_name="__main__")
    except SystemExit as exc:
        code = exc.code
        if code is None or isinstance(code, int):
            return code or 0
        print(code, file=sys.stderr)
        return 1
    return 0
