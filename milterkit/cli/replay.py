"""``milterkit replay FILE [--filter TARGET]``: feed a capture into a ClientContext and trace it.

The capture's MTA-to-milter bytes go through ``ClientContext.feed``, with TARGET's handlers
connected (or none); each command, the signals it caused and the replies are printed. When the
capture recorded the milter's side, the replies are compared and every difference shown. A raw
``.bin`` of MTA-to-milter bytes is accepted too. Exit status: 0 when the replay ran (and matched
the recording, if there was one), 1 when the replies differ or the stream broke the protocol,
2 when the file or the filter cannot be loaded.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

HELP = "Replay a captured session into a filter, trace it and compare the replies."


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add replay's options."""
    parser.add_argument("file", type=Path, metavar="FILE",
                        help="a capture (.mkcap) or a raw stream of MTA-to-milter bytes (.bin)")
    parser.add_argument("-F", "--filter", metavar="TARGET",
                        help="file or module defining setup(client), as for 'milterkit run' "
                        "(default: no handlers, every event answered CONTINUE)")
    parser.add_argument("--timeout", type=float, default=10.0, metavar="SECONDS",
                        help="wait this long for an asynchronous answer (default 10)")
    parser.add_argument("-q", "--quiet", action="store_true",
                        help="print only the comparison, not the trace")
    parser.add_argument("--max-differences", type=int, default=10, metavar="N",
                        help="show at most N differing replies (default 10)")


def main(args: argparse.Namespace) -> int:
    """Load the capture and the filter, replay, print."""
    from ..server.target import TargetError
    from ..testing.target import load_client
    from ..tools.capture_format import CaptureError, read_capture
    from ..tools.replay import replay, trace_lines

    try:
        capture = read_capture(args.file)
    except (OSError, CaptureError) as exc:
        print(f"milterkit replay: {args.file}: {exc}", file=sys.stderr)
        return 2
    factory = None
    if args.filter:
        try:
            factory = load_client(args.filter).create_context
        except (TargetError, OSError) as exc:
            print(f"milterkit replay: {exc}", file=sys.stderr)
            return 2
    result = replay(capture, factory, timeout=args.timeout)
    lines = trace_lines(result, max_differences=args.max_differences)
    if args.quiet:
        lines = lines[lines.index("") + 1:]
    for line in lines:
        print(line)
    if result.error is not None or result.differences:
        return 1
    return 0
