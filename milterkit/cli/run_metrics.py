"""``milterkit run --metrics-listen HOST:PORT``: serve Prometheus metrics and ``/health``."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ..server.client import Client


def add_argument(parser: argparse.ArgumentParser) -> None:
    """Add ``--metrics-listen`` to ``run``'s parser."""
    parser.add_argument("--metrics-listen", metavar="HOST:PORT",
                        help="serve Prometheus metrics on http://HOST:PORT/metrics and a health "
                        "check on /health (needs milterkit[metrics]; one process: not with "
                        "--workers > 1)")


def apply(args: argparse.Namespace, client: Client) -> str | None:
    """Enable the metrics endpoint if asked; an error message for the user, or None."""
    listen: str | None = getattr(args, "metrics_listen", None)
    if not listen:
        return None
    if args.workers > 1:
        return ("--metrics-listen serves one process: run one instance per port (behind "
                "HAProxy, docs/scaling.rst) instead of --workers")
    try:
        from ..metrics import MetricsError, enable_metrics
    except ImportError as exc:
        return f"--metrics-listen needs prometheus_client ({exc}): pip install 'milterkit[metrics]'"
    try:
        enable_metrics(client, listen)
    except MetricsError as exc:
        return str(exc)
    return None
