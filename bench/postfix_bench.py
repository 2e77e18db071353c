"""Messages per second through a real Postfix: no milter, milterkit, pymilter and C libmilter,
each over TCP and over a unix socket.

Postfix's own load generator ``smtp-source`` sends N messages from C parallel SMTP sessions (one
message per session, as most clients do) to a private Postfix on 127.0.0.1 whose every
transport is ``discard``, so what is timed is the SMTP side: smtpd, cleanup and the milter that
both call. Every milter does the same job, an X-Load header added at end-of-message:

* ``milterkit``: ``milterkit run bench/load_filter.py`` (a handler on every event, the wire work
  of the C and pymilter milters, which register every callback); ``milterkit (needed only)``
  serves ``bench/peers/milterkit_needed.py`` (Postfix is told to skip the other events);
  ``milterkit --no-quickack`` and ``milterkit (needed only) --no-quickack`` show what
  re-arming TCP_QUICKACK is worth (TCP only);
* ``pymilter`` and ``C libmilter``: ``bench/peers/pymilter_milter.py`` and
  ``bench/peers/ref_milter.c``, installed and built by ``bench/peers/run.py``'s installer;
* the bounds of the "only needed" style: ``C libmilter, needed only`` (``ref_milter.c``'s
  ``needed`` mode) and ``bare asyncio floor, needed only`` (``bench/peers/floor.py --needed
  --quickack`` on uvloop: frames packets, answers end-of-message, nothing else), which say how
  near to no milter any milter, in C or in asyncio Python, gets on this machine.

The set-ups are interleaved: each round runs every set-up once, on a fresh Postfix; the median
of ``--rounds`` rounds is printed with its ratio to ``no milter``. Needs root, Postfix
(``smtp-source`` is in the postfix package) and the harness in ``tests/integration``::

    python bench/postfix_bench.py --messages 1000 --concurrency 10
    python bench/postfix_bench.py --only milterkit --transports tcp

The numbers depend on the machine; compare set-ups within one run only.
"""

from __future__ import annotations

import argparse
import functools
import importlib.util
import os
import re
import shutil
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "integration"))

from postfix import PrivatePostfix, free_port, postfix_available  # type: ignore[import-not-found]  # noqa: E402

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


@dataclass
class Setup:
    """A milter set-up: a command with ``{spec}`` (milterkit's syntax) or ``{postfix}``
    placeholders, and the transport it listens on; no command for "no milter"."""

    name: str
    transport: str
    argv: list[str] | None

    @property
    def label(self) -> str:
        return self.name if self.argv is None else f"{self.name} ({self.transport})"


@functools.cache
def _peers() -> ModuleType:
    # Loaded once: measure() reads the milter's CPU through it before and after every run.
    path = ROOT / "bench" / "peers" / "run.py"
    spec = importlib.util.spec_from_file_location("milterkit_bench_peers", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up
    spec.loader.exec_module(module)
    return module


def setups(transports: list[str], peers_dir: Path | None) -> list[Setup]:
    """Every set-up, per transport; the peers only if ``peers_dir`` is given."""
    mk = [sys.executable, "-m", "milterkit", "run", "-l", "{spec}", "--log-level", "warning",
          "--socket-mode", "666"]
    found = [Setup("no milter", "-", None)]
    paths = _peers().install(peers_dir) if peers_dir is not None else {}
    for transport in transports:
        found += [
            Setup("milterkit", transport, [*mk, str(ROOT / "bench" / "load_filter.py")]),
            Setup("milterkit (needed only)", transport,
                  [*mk, str(ROOT / "bench" / "peers" / "milterkit_needed.py")]),
        ]
        if transport == "tcp":
            found.append(Setup("milterkit --no-quickack", transport,
                               [*mk, "--no-quickack", str(ROOT / "bench" / "load_filter.py")]))
            # Where the re-arm matters: the macro packets of skipped steps get no reply.
            found.append(Setup("milterkit (needed only) --no-quickack", transport,
                               [*mk, "--no-quickack",
                                str(ROOT / "bench" / "peers" / "milterkit_needed.py")]))
        # The bounds of the "only needed" style: the least an asyncio milter (and a C one) can
        # do for the job, with every other step skipped.
        found.append(Setup("bare asyncio floor, needed only", transport, [
            sys.executable, str(ROOT / "bench" / "peers" / "floor.py"), "{spec}", "--loop",
            "uvloop", "--needed", "--quickack"]))
        if paths:
            found += [
                Setup("pymilter", transport, [str(paths["pymilter"]),
                      str(ROOT / "bench" / "peers" / "pymilter_milter.py"), "{libmilter}"]),
                Setup("C libmilter", transport, [str(paths["c"]), "{libmilter}"]),
                Setup("C libmilter, needed only", transport,
                      [str(paths["c"]), "{libmilter}", "needed"]),
            ]
    return found


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


def milter_failures(pf: PrivatePostfix) -> int:
    """Log lines where Postfix gave up on the milter (the default action then applies)."""
    return sum(1 for line in pf.log_lines() if "warning: milter " in line)


def _start_milter(setup: Setup, pf: PrivatePostfix) -> tuple[subprocess.Popen[bytes], str]:
    assert setup.argv is not None
    if setup.transport == "unix":
        path = str(pf.socket_path("milter.sock"))
        words = {"spec": f"unix:{path}", "libmilter": f"unix:{path}"}
        postfix_spec = f"unix:{path}"
        probe: tuple[str, object] = ("unix", path)
    else:
        port = free_port()
        words = {"spec": f"inet:{port}@127.0.0.1", "libmilter": f"inet:{port}@127.0.0.1"}
        postfix_spec = f"inet:127.0.0.1:{port}"
        probe = ("inet", ("127.0.0.1", port))
    argv = [word.format(**words) for word in setup.argv]
    # umask 0: libmilter's unix socket must be writable by Postfix's smtpd (user postfix).
    process = subprocess.Popen(argv, cwd=ROOT, stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL, preexec_fn=lambda: os.umask(0))
    import socket

    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"{setup.label} exited with {process.returncode}: {' '.join(argv)}")
        try:
            family = socket.AF_UNIX if probe[0] == "unix" else socket.AF_INET
            with socket.socket(family) as sock:
                sock.settimeout(1)
                sock.connect(probe[1])  # type: ignore[arg-type]
            return process, postfix_spec
        except OSError:
            time.sleep(0.05)
    process.kill()
    raise SystemExit(f"{setup.label} did not listen in time")


def measure(setup: Setup, messages: int, concurrency: int, size: int) -> tuple[float, float | None]:
    """Messages per second of one run of ``setup`` on a fresh Postfix, and the milter's CPU
    (user + system, from /proc) per message in µs over the timed run (None for no milter)."""
    pf = PrivatePostfix(extra_main_cf=DISCARD, milter_default_action="tempfail")
    milter: subprocess.Popen[bytes] | None = None
    try:
        if setup.argv is not None:
            milter, pf.smtpd_milters = _start_milter(setup, pf)
        pf.start()
        run_source(pf, min(100, messages), concurrency, size)  # warm-up: spawn smtpd, cleanup
        before = queued(pf)
        cpu_before = sum(_peers().cpu_times(milter.pid)) if milter is not None else 0.0
        elapsed = run_source(pf, messages, concurrency, size)
        cpu = (sum(_peers().cpu_times(milter.pid)) - cpu_before) / messages * 1e6 \
            if milter is not None else None
        # postlogd writes asynchronously: wait until every message shows up
        deadline = time.monotonic() + 10
        while queued(pf) - before < messages and time.monotonic() < deadline:
            time.sleep(0.05)
        if queued(pf) - before < messages:  # (a late log line of the warm-up may add one)
            raise SystemExit(f"{setup.label}: {queued(pf) - before} of {messages} messages "
                             "were queued")
        if milter_failures(pf):
            raise SystemExit(f"{setup.label}: Postfix logged milter warnings:\n"
                             + "\n".join(line for line in pf.log_lines()
                                         if "warning: milter " in line)[:2000])
        return messages / elapsed, cpu
    finally:
        pf.stop()
        if milter is not None:
            milter.terminate()
            try:
                milter.wait(10)
            except subprocess.TimeoutExpired:
                milter.kill()
                milter.wait()


def main(argv: list[str] | None = None) -> int:
    """Measure every set-up, interleaved, and print messages per second and the ratios."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--messages", "-n", type=int, default=1000, help="messages per run")
    parser.add_argument("--concurrency", "-c", type=int, default=10, help="parallel sessions")
    parser.add_argument("--size", type=int, default=2048, help="body bytes per message")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds (median)")
    parser.add_argument("--transports", nargs="+", choices=("tcp", "unix"),
                        default=["tcp", "unix"])
    parser.add_argument("--only", nargs="+", metavar="WORD",
                        help="only the set-ups whose name contains one of these (and no milter)")
    parser.add_argument("--no-peers", action="store_true",
                        help="milterkit only: do not install and run pymilter and C libmilter")
    parser.add_argument("--peers-dir", type=Path, default=Path("/tmp/milterkit-peers"),
                        help="where bench/peers/run.py keeps the peers (default %(default)s)")
    args = parser.parse_args(argv)

    ok, reason = postfix_available()
    if not ok:
        print(f"cannot run: {reason}", file=sys.stderr)
        return 2
    chosen = setups(args.transports, None if args.no_peers else args.peers_dir)
    if args.only:
        chosen = [s for s in chosen if s.argv is None or any(w in s.name for w in args.only)]
    print(f"smtp-source: {args.messages} messages x {args.size} bytes, {args.concurrency} "
          f"sessions in parallel, median of {args.rounds} interleaved rounds; {reason}; "
          f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f}", flush=True)
    rates: dict[str, list[float]] = {s.label: [] for s in chosen}
    cpus: dict[str, list[float]] = {s.label: [] for s in chosen}
    for round_ in range(args.rounds):
        for setup in chosen:
            rate, cpu = measure(setup, args.messages, args.concurrency, args.size)
            rates[setup.label].append(rate)
            spent = ""
            if cpu is not None:
                cpus[setup.label].append(cpu)
                spent = f", milter CPU {cpu:.0f} µs/msg"
            print(f"  round {round_ + 1}: {setup.label}: {rate:.0f} msg/s{spent}", flush=True)
    baseline = statistics.median(rates["no milter"])
    print()
    # The milter's own CPU says how much of a gap to no milter is the milter's work (the rest
    # is what Postfix does to talk to any milter).
    print("| set-up | msg/s (median) | x no milter | runs | milter CPU µs/msg (median) |")
    print("|---|---|---|---|---|")
    for label, values in rates.items():
        rate = statistics.median(values)
        runs = ", ".join(f"{r:.0f}" for r in values)
        cpu_text = f"{statistics.median(cpus[label]):.0f}" if cpus[label] else "-"
        print(f"| {label} | {rate:,.0f} | {rate / baseline:.2f} | {runs} | {cpu_text} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
