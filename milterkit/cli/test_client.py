"""``milterkit test-client``: a milter that prints every event with its macros and always
answers CONTINUE (milter-test-client's twin): point an MTA at it to see what it really sends."""

from __future__ import annotations

import argparse
import sys

HELP = "Run a milter that prints every event the MTA sends, with its macros."


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add test-client's options."""
    from ..server.client import DEFAULT_SPEC

    parser.add_argument("-s", "--connection-spec", "-l", "--listen", dest="spec",
                        default=DEFAULT_SPEC, metavar="SPEC",
                        help=f"where to listen (default {DEFAULT_SPEC})")
    parser.add_argument("--socket-mode", type=lambda text: int(text, 8), default=0o660,
                        metavar="OCTAL", help="permissions of a unix socket (default 660)")
    parser.add_argument("--timeout", type=float, default=7210.0, metavar="SECONDS",
                        help="inactivity timeout of a connection (default 7210)")


def main(args: argparse.Namespace) -> int:
    """Serve the printing filter until SIGINT or SIGTERM."""
    from ..server import Client, ListenError, SpecError
    from ..tools.event_printer import setup_printer

    try:
        client = Client(args.spec, timeout=args.timeout, socket_mode=args.socket_mode)
    except (SpecError, ValueError) as exc:
        print(f"milterkit test-client: {exc}", file=sys.stderr)
        return 2
    setup_printer(client, lambda line: print(line, flush=True))
    try:
        client.run()
    except (ListenError, RuntimeError) as exc:
        print(f"milterkit test-client: {exc}", file=sys.stderr)
        return 1
    return 0
