"""How many messages per second one ClientContext takes through ``feed()``, in one process.

A benchmark, not a test: nothing here asserts a speed. It builds the byte stream Postfix sends
for one message (a ``D`` packet before every event, MAIL, one RCPT, DATA, 10 headers, end of
headers, a 2 KiB body chunk, end of message, ABORT), then feeds N of them to one context after
a single negotiate, connect and helo, and prints messages per second for:

- ``handlers``: a handler on ``header`` and one on ``end-of-message`` that adds a header,
  one ``feed()`` per message (the MTA's packets coalesced, as after a burst of reads);
- ``per-packet``: the same, one ``feed()`` per packet, as a live Postfix connection delivers
  them (Postfix waits for each reply before it sends the next command);
- ``no-handlers``: the same stream with nothing connected (the cost of the core alone);
- ``bytewise``: the handlers variant fed one byte at a time (the decoder's worst case).

Every variant asks for all protocol steps, so the context processes exactly the same stream.
Run::

    python bench/bench_feed.py            # 20000 messages
    python bench/bench_feed.py -n 5000 --profile
"""

from __future__ import annotations

import argparse
import cProfile
import platform
import pstats
import sys
import time
from collections.abc import Callable

from milterkit import ClientContext, Status
from milterkit.protocol import (
    Abort,
    ActionFlag,
    AnyCommand,
    Body,
    Connect,
    Data,
    DefineMacro,
    EndOfHeader,
    EndOfMessage,
    Header,
    Helo,
    Mail,
    Negotiate,
    ProtocolFlag,
    Rcpt,
    SocketAddress,
)

BODY = (b"The quick brown fox jumps over the lazy dog. 0123456789 abcdefghij\r\n" * 31)[:2048]


def prologue() -> list[AnyCommand]:
    """What Postfix sends once per SMTP connection: negotiation, connect, helo."""
    return [
        Negotiate(6, ActionFlag.ALL, ProtocolFlag.ALL),
        DefineMacro(b"C", {"j": "mx.example.org", "{daemon_name}": "mx.example.org",
                           "v": "Postfix 3.8.5"}),
        Connect("client.example.net", SocketAddress("4", "192.0.2.10", 49152)),
        DefineMacro(b"H", {}),
        Helo("client.example.net"),
    ]


def message(number: int) -> list[AnyCommand]:
    """One message as Postfix sends it, with a ``D`` packet before every event."""
    queue_id = f"4X{number:08X}"
    commands: list[AnyCommand] = [
        DefineMacro(b"M", {"{mail_addr}": "alice@example.net"}),
        Mail("<alice@example.net>", ("SIZE=2048",)),
        DefineMacro(b"R", {"{rcpt_addr}": "bob@example.org"}),
        Rcpt("<bob@example.org>"),
        DefineMacro(b"T", {"i": queue_id}),
        Data(),
    ]
    for index in range(10):
        commands += [DefineMacro(b"L", {}), Header(f"X-Header-{index}", f"value number {index}")]
    commands += [
        DefineMacro(b"N", {"i": queue_id}),
        EndOfHeader(),
        DefineMacro(b"B", {}),
        Body(BODY),
        DefineMacro(b"E", {"i": queue_id}),
        EndOfMessage(),
        Abort(),
    ]
    return commands


def make_context(with_handlers: bool) -> tuple[ClientContext, list[int]]:
    """A context that counts the bytes it writes, with or without the two handlers."""
    written = [0]

    def write(data: bytes) -> None:
        written[0] += len(data)

    # Ask for every step, so the no-handler context does not negotiate events away.
    context = ClientContext(write, protocol=ProtocolFlag.NONE)
    if with_handlers:
        headers = [0]

        def on_header(context: ClientContext, name: str, value: str) -> None:
            headers[0] += 1

        def on_end_of_message(context: ClientContext, chunk: bytes) -> Status:
            context.add_header("X-Scanned", "yes")
            return Status.CONTINUE

        context.connect("header", on_header)
        context.connect("end-of-message", on_end_of_message)
    return context, written


def run(
    count: int, *, with_handlers: bool, split: str, profiler: cProfile.Profile | None = None
) -> float:
    """Feed ``count`` messages; return the seconds the message feeds took.

    With ``profiler``, only the timed feeds are profiled (not the building of the stream).
    """
    context, _written = make_context(with_handlers)
    context.feed(b"".join(c.to_bytes() for c in prologue()))
    # Build every message's bytes before the clock starts: only feed() is timed.
    chunks: list[bytes] = []
    for number in range(count):
        packets = [c.to_bytes() for c in message(number)]
        if split == "message":
            chunks.append(b"".join(packets))
        elif split == "packet":
            chunks.extend(packets)
        else:
            data = b"".join(packets)
            chunks.extend(data[i : i + 1] for i in range(len(data)))
    feed: Callable[[bytes], None] = context.feed
    if profiler is not None:
        profiler.enable()
    start = time.perf_counter()
    for chunk in chunks:
        feed(chunk)
    elapsed = time.perf_counter() - start
    if profiler is not None:
        profiler.disable()
    if context.messages != count or context.finished:
        raise SystemExit(f"benchmark broken: {context.messages} of {count} messages processed")
    return elapsed


def report(label: str, count: int, seconds: float) -> None:
    """Print one variant's figure."""
    print(f"{label:<12} {count:>7} messages in {seconds:7.3f} s  {count / seconds:>10,.0f} msg/s")


def main(argv: list[str] | None = None) -> int:
    """Run every variant (or profile the main one) and print messages per second."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", type=int, default=20000, help="messages per variant (20000)")
    parser.add_argument("--bytewise", type=int, default=300,
                        help="messages for the one-byte-at-a-time variant (300)")
    parser.add_argument("--profile", action="store_true",
                        help="profile the 'handlers' variant and print the top 20 functions")
    args = parser.parse_args(argv)

    print(f"milterkit feed() benchmark: Python {platform.python_version()} "
          f"({platform.python_implementation()}) on {platform.machine()}")
    if args.profile:
        profiler = cProfile.Profile()
        run(args.n, with_handlers=True, split="message", profiler=profiler)
        stats = pstats.Stats(profiler, stream=sys.stdout)
        stats.strip_dirs().sort_stats("tottime").print_stats(20)
        return 0
    report("handlers", args.n, run(args.n, with_handlers=True, split="message"))
    report("per-packet", args.n, run(args.n, with_handlers=True, split="packet"))
    report("no-handlers", args.n, run(args.n, with_handlers=False, split="message"))
    report("bytewise", args.bytewise, run(args.bytewise, with_handlers=True, split="byte"))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
