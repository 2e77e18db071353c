"""User and system CPU per message of milters on one event loop, split: what
docs/performance.rst's "Reads on the standard loop" table was measured with.

Each contender serves ``bench/peers/loadgen.py`` (one generator process, ``-c`` connections,
one 2 KiB message per session, every step answered) for ``--seconds``; its user and system time
are read from ``/proc/PID/stat`` before and after and divided by the messages done. Contenders
run interleaved, ``--rounds`` times; every run is printed (the machine is shared: compare within
a round). Run::

    python bench/loop_cpu.py                       # the standard loop, 3 rounds of 4 s
    python bench/loop_cpu.py --loop uvloop --baseline DIR   # DIR: an older milterkit checkout
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE / "peers"))

from run import cpu_times, free_port  # noqa: E402  (bench/peers/run.py: the same /proc reading)


def contenders(loop: str, baseline: Path | None) -> dict[str, tuple[list[str], dict[str, str]]]:
    """name: (argv with {spec}, extra environment)."""
    py = sys.executable
    mk = [py, "-m", "milterkit", "run", "-l", "{spec}", "--log-level", "warning", "--timeout",
          "0", "--loop", loop, str(HERE / "load_filter.py")]
    floor = [py, str(HERE / "peers" / "floor.py"), "{spec}", "--loop", loop]
    found: dict[str, tuple[list[str], dict[str, str]]] = {
        "milterkit every handler": (mk, {}),
        "bare asyncio floor": (floor, {}),
        "bare asyncio floor, buffered reads": ([*floor, "--buffered"], {}),
    }
    if baseline is not None:
        # The older checkout's package first on the path, not the current directory's.
        found["baseline milterkit every handler"] = (
            mk, {"PYTHONSAFEPATH": "1", "PYTHONPATH": str(baseline)})
    return found


def measure(argv: list[str], env: dict[str, str], port: int, args: argparse.Namespace) -> str:
    spec = f"inet:{port}@127.0.0.1"
    milter = subprocess.Popen([a.format(spec=spec) for a in argv], cwd=ROOT,
                              env={**os.environ, **env}, stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL)
    try:
        time.sleep(1.5)  # started and listening (the generator retries nothing)
        user0, sys0 = cpu_times(milter.pid)
        out = subprocess.run(
            [sys.executable, str(HERE / "peers" / "loadgen.py"), spec, "-c",
             str(args.concurrency), "--seconds", str(args.seconds), "--warmup", "0"],
            capture_output=True, text=True, check=True, timeout=args.seconds + 60)
        user1, sys1 = cpu_times(milter.pid)
    finally:
        milter.terminate()
        milter.wait(10)
    messages = json.loads(out.stdout.strip().splitlines()[-1])["messages"]
    return (f"{messages:6,d} messages, user {1e6 * (user1 - user0) / messages:5.0f} µs, "
            f"system {1e6 * (sys1 - sys0) / messages:5.0f} µs per message")


def main(argv: list[str] | None = None) -> int:
    """Measure every contender, interleaved, and print each run."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--loop", choices=("asyncio", "uvloop"), default="asyncio")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=4.0)
    parser.add_argument("-c", "--concurrency", type=int, default=10)
    parser.add_argument("--baseline", type=Path, metavar="DIR",
                        help="also run the milterkit of this checkout")
    args = parser.parse_args(argv)
    found = contenders(args.loop, args.baseline)
    print(f"{args.loop} loop, {args.concurrency} connections, {args.seconds:g} s per run, "
          f"load average {os.getloadavg()[0]:.2f}", flush=True)
    for round_ in range(1, args.rounds + 1):
        for name, (command, env) in found.items():
            result = measure(command, env, free_port(), args)
            print(f"round {round_}: {name:36s} {result}", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
