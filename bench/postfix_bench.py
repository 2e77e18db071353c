"""Messages per second through a real Postfix, without a milter and with ``milterkit run``.

Postfix's own load generator ``smtp-source`` sends N messages from C parallel SMTP sessions (one
message per session, as most clients do) to a private Postfix on 127.0.0.1 whose every
transport is ``discard``, so what is timed is the SMTP side: smtpd, cleanup and the milter
that both call. Three set-ups are measured in turn, each on a fresh Postfix:

* ``no milter``
* ``milterkit``: ``milterkit run examples/add_header.py`` on a unix socket (one process)
* ``milterkit --workers 2``: the same with two pre-forked worker processes

For each the median of ``--repeat`` runs is printed with its ratio to ``no milter``. Needs
root, Postfix (``smtp-source`` is in the postfix package) and the harness in
``tests/integration``. Run it as::

    python bench/postfix_bench.py --messages 2000 --concurrency 20

The numbers depend on the machine; compare set-ups within one run only.
"""

from __future__ import annotations

import argparse
import re
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "integration"))

from milterproc import EXAMPLES, MilterProcess  # type: ignore[import-not-found]  # noqa: E402
from postfix import PrivatePostfix, postfix_available  # type: ignore[import-not-found]  # noqa: E402

#: Every destination is discarded: delivery is not what is measured.
DISCARD = {
    "default_transport": "discard:benchmark",
    "local_transport": "discard:benchmark",
    "relay_transport": "discard:benchmark",
    # smtp-source's sessions all come from 127.0.0.1: no per-client limits
    "smtpd_client_connection_count_limit": "0",
    "smtpd_client_connection_rate_limit": "0",
    "default_process_limit": "200",
}
SETUPS: list[tuple[str, list[str] | None]] = [
    ("no milter", None),
    ("milterkit", []),
    ("milterkit --workers 2", ["--workers", "2"]),
]


def run_source(pf: PrivatePostfix, messages: int, concurrency: int, size: int) -> float:
    """Run smtp-source once; return the wall-clock seconds it took."""
    argv = [
        shutil.which("smtp-source") or "/usr/sbin/smtp-source",
        "-s", str(concurrency), "-m", str(messages), "-l", str(size),
        "-M", "bench.example.net", "-f", "sender@example.net", "-t", "rcpt@example.org",
        f"{pf.host}:{pf.port}",
    ]
    started = time.perf_counter()
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=600, check=False)
    elapsed = time.perf_counter() - started
    if proc.returncode != 0:
        tail = "\n".join(pf.log_lines()[-20:])
        raise SystemExit(f"smtp-source failed ({proc.returncode}): {proc.stderr}\n{tail}")
    return elapsed


def queued(pf: PrivatePostfix) -> int:
    """Messages Postfix accepted so far (one ``client=`` log line each)."""
    pattern = re.compile(r"smtpd\[\d+\]: [0-9A-F]+: client=")
    return sum(1 for line in pf.log_lines() if pattern.search(line))


def measure(
    options: list[str] | None, messages: int, concurrency: int, size: int, repeat: int,
) -> list[float]:
    """Messages per second of each run for one set-up."""
    pf = PrivatePostfix(extra_main_cf=DISCARD, milter_default_action="tempfail")
    milter: MilterProcess | None = None
    if options is not None:
        milter = MilterProcess(
            EXAMPLES / "add_header.py", f"unix:{pf.socket_path('milter.sock')}",
            ["--socket-group", "postfix", "--log-level", "warning", *options],
        )
        pf.smtpd_milters = milter.postfix_spec
        milter.start()
    rates = []
    try:
        pf.start()
        run_source(pf, min(100, messages), concurrency, size)  # warm-up: spawn smtpd, cleanup
        for _ in range(repeat):
            before = queued(pf)
            elapsed = run_source(pf, messages, concurrency, size)
            # postlogd writes asynchronously: wait until every message shows up
            deadline = time.monotonic() + 10
            while queued(pf) - before < messages and time.monotonic() < deadline:
                time.sleep(0.05)
            if queued(pf) - before != messages:
                raise SystemExit(f"{queued(pf) - before} of {messages} messages were queued")
            rates.append(messages / elapsed)
    finally:
        pf.stop()
        if milter is not None:
            milter.close()
    return rates


def main(argv: list[str] | None = None) -> int:
    """Measure every set-up and print messages per second and the ratio to no milter."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--messages", "-n", type=int, default=2000, help="messages per run")
    parser.add_argument("--concurrency", "-c", type=int, default=20, help="parallel sessions")
    parser.add_argument("--size", type=int, default=1024, help="body bytes per message")
    parser.add_argument("--repeat", type=int, default=3, help="runs per set-up (median shown)")
    args = parser.parse_args(argv)

    ok, reason = postfix_available()
    if not ok:
        print(f"cannot run: {reason}", file=sys.stderr)
        return 2
    print(f"smtp-source: {args.messages} messages x {args.size} bytes, "
          f"{args.concurrency} sessions in parallel, median of {args.repeat} runs; {reason}")
    baseline: float | None = None
    for name, options in SETUPS:
        rates = measure(options, args.messages, args.concurrency, args.size, args.repeat)
        rate = statistics.median(rates)
        baseline = baseline or rate
        runs = ", ".join(f"{r:.0f}" for r in rates)
        print(f"{name:24} {rate:8.0f} msg/s  {rate / baseline:5.2f} x no milter   (runs: {runs})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
