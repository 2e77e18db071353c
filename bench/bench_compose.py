"""What composition costs: messages per second through ``feed()`` for the same work done by
plain handlers on one context, and by :mod:`milterkit.compose` with one and with three filters.

A benchmark, not a test: nothing here asserts a speed. The stream is bench_feed.py's (Postfix's
packets for one message: MAIL, RCPT, DATA, 10 headers, a 2 KiB body, end of message, ABORT),
fed one message per ``feed()`` after one negotiate/connect/helo. The variants:

- ``plain``: a ``header`` handler and an ``end-of-message`` handler that adds a header, on a
  Client's context (no composition);
- ``composed-1``: the same two handlers as one composed filter;
- ``composed-3``: three composed filters: the same two split in two filters, plus an
  ``envelope-from`` check that passes.

Run::

    python bench/bench_compose.py          # 20000 messages per variant
"""

from __future__ import annotations

import argparse
import platform
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_feed import message, prologue

from milterkit import Client, Status
from milterkit.compose import Composer, FilterSpec, unit_from_object


def count_headers(client: Any) -> None:
    client.connect("header", lambda context, name, value: None)


def stamp(client: Any) -> None:
    def end(context: Any, chunk: bytes) -> Status:
        context.add_header("X-Scanned", "yes")
        return Status.CONTINUE

    client.connect("end-of-message", end)


def both(client: Any) -> None:
    count_headers(client)
    stamp(client)


def check_sender(client: Any) -> None:
    client.connect("envelope-from", lambda context, sender: None)


def build(variant: str) -> Client:
    client = Client()
    if variant == "plain":
        both(client)
        return client
    setups = {"composed-1": [both], "composed-3": [check_sender, count_headers, stamp]}[variant]
    specs = [FilterSpec(unit_from_object(f.__name__, f, "bench")) for f in setups]
    Composer(specs).setup(client)
    return client


def run(variant: str, count: int) -> float:
    context = build(variant).create_context(lambda data: None)
    context.feed(b"".join(c.to_bytes() for c in prologue()))
    chunks = [b"".join(c.to_bytes() for c in message(n)) for n in range(count)]
    start = time.perf_counter()
    for chunk in chunks:
        context.feed(chunk)
    elapsed = time.perf_counter() - start
    if context.messages != count or context.finished:
        raise SystemExit(f"benchmark broken: {context.messages} of {count} messages")
    return elapsed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", type=int, default=20000, help="messages per variant (20000)")
    args = parser.parse_args(argv)
    print(f"milterkit compose benchmark: Python {platform.python_version()} "
          f"({platform.python_implementation()}) on {platform.machine()}")
    for variant in ("plain", "composed-1", "composed-3"):
        seconds = run(variant, args.n)
        print(f"{variant:<11} {args.n:>7} messages in {seconds:7.3f} s  "
              f"{args.n / seconds:>10,.0f} msg/s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
