"""The ``milterkit`` command: one subcommand per module in this package.

Each subcommand module defines ``HELP`` (one line), ``add_arguments(parser)`` and
``main(args) -> int``; :data:`SUBCOMMANDS` lists them in the order ``--help`` shows them.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from .. import __version__

#: Subcommand name -> module (in this package) that implements it.
SUBCOMMANDS: dict[str, str] = {
    "run": "run",
    "test-server": "test_server",
    "capture": "capture",
    "replay": "replay",
    "test-client": "test_client",
    "demo": "demo",
    "compat": "compat",
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="milterkit",
        description="A pure-Python, signal-driven toolkit for writing milters.",
    )
    parser.add_argument("--version", action="version", version=f"milterkit {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, module_name in SUBCOMMANDS.items():
        module = importlib.import_module(f".{module_name}", __name__)
        sub = subparsers.add_parser(name, help=module.HELP, description=module.HELP)
        module.add_arguments(sub)
        sub.set_defaults(_main=module.main)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if getattr(args, "_main", None) is None:
        parser.print_help()
        return 2
    result: int = args._main(args)
    return result


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
