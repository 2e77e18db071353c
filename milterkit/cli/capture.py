"""``milterkit capture --listen SPEC --upstream SPEC --output DIR``: a recording proxy.

Point the MTA at ``--listen`` and the proxy at the real milter with ``--upstream``: every byte
passes through unchanged, and each connection's two directions are written, with timestamps,
to one file in DIR (format: docs/capture-format.rst). Replay a file with ``milterkit replay``.
Stops on SIGINT or SIGTERM, after the connections in flight end.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

HELP = "Record milter sessions: a proxy between an MTA and a milter that writes capture files."


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add capture's options."""
    parser.add_argument("-l", "--listen", required=True, metavar="SPEC",
                        help="where the MTA connects: unix:/path or inet:PORT@HOST")
    parser.add_argument("-u", "--upstream", required=True, metavar="SPEC",
                        help="the real milter: unix:/path or inet:PORT@HOST")
    parser.add_argument("-o", "--output", required=True, type=Path, metavar="DIR",
                        help="directory for the capture files (created if needed)")
    parser.add_argument("--connect-timeout", type=float, default=30.0, metavar="SECONDS",
                        help="give up reaching the milter after this long (default 30)")
    parser.add_argument("--socket-mode", type=lambda text: int(text, 8), metavar="OCTAL",
                        help="permissions of a unix listening socket, e.g. 666 so Postfix's "
                        "smtpd (user postfix) can connect")
    parser.add_argument("--log-level", choices=("debug", "info", "warning", "error"),
                        default="info", help="log level (default info)")


def main(args: argparse.Namespace) -> int:
    """Run the proxy until SIGINT or SIGTERM."""
    import asyncio
    import logging
    import signal

    from ..server.spec import SpecError
    from ..tools.capture import CaptureProxy

    logging.basicConfig(level=args.log_level.upper(), stream=sys.stderr,
                        format="%(asctime)s %(name)s %(levelname)s %(message)s")
    try:
        proxy = CaptureProxy(args.listen, args.upstream, args.output,
                             connect_timeout=args.connect_timeout,
                             socket_mode=args.socket_mode)
    except SpecError as exc:
        print(f"milterkit capture: {exc}", file=sys.stderr)
        return 2

    async def run() -> None:
        await proxy.start()
        logging.getLogger("milterkit.capture").info(
            "recording %s -> %s into %s", proxy.address, args.upstream, args.output)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(signum, stop.set)
        await stop.wait()
        await proxy.close()

    try:
        asyncio.run(run())
    except OSError as exc:
        print(f"milterkit capture: cannot listen on {args.listen}: {exc}", file=sys.stderr)
        return 1
    return 0
