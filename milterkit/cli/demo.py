"""``milterkit demo``: serve a built-in filter on a temporary socket, play Postfix against it and
print the verdicts and the changed messages. Needs no mail server."""

from __future__ import annotations

import argparse
import sys

HELP = "Show milterkit at work: a built-in filter, two messages, their verdicts and diffs."


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add demo's options."""
    parser.add_argument("--color", nargs="?", const="yes", default="auto",
                        choices=("yes", "no", "auto"), help="colour the diffs (default auto)")


def main(args: argparse.Namespace) -> int:
    """Run the demo."""
    from ..tools.demo import main as demo

    color = args.color == "yes" or (args.color == "auto" and sys.stdout.isatty())
    return demo(color=color)
