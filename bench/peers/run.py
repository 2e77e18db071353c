"""milterkit against its peers, one command: ``python bench/peers/run.py [--quick]`` (as root on
a Debian machine; it installs what it needs).

It installs pymilter (built against Debian's libmilter-dev), purepythonmilter and
python-libmilter from PyPI, each in a venv of its own under ``--peers-dir``, builds the C
libmilter reference milter from ``ref_milter.c``, and runs the same job on each (an X-Load
header at end-of-message) over TCP on 127.0.0.1: milterkit with a handler on every event
(``bench/load_filter.py``) and with only the one it needs (``milterkit_needed.py``), each on
uvloop and on the stdlib loop, the peers, and the bare-asyncio floor (``floor.py``) on both
loops. The load generator is ``loadgen.py`` (one message per session, as Postfix sends one
SMTP session's message). Runs are interleaved (every milter in turn, then again), three rounds,
medians shown; the milter's CPU per message and its peak RSS come from ``/proc``. The
generator's own CPU per message is measured against the C milter and its ceiling printed.

Output: a markdown table per body size (also written to ``--out``/peers.md), the raw figures
(peers.json) and a PNG chart (``docs/images/peers.png`` by default), shown by
docs/performance.rst.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
PEERS = {  # venv name: pip requirement
    "pymilter": "pymilter==1.0.5",
    "ppm": "purepythonmilter==0.0.1",
    "pylibmilter": "python-libmilter==2.0.0",
}
DEBIAN = ["libmilter-dev", "python3-dev", "python3-venv", "gcc"]
TICK = os.sysconf("SC_CLK_TCK")


def cpu_times(pid: int) -> tuple[float, float]:
    """User and system CPU seconds (all threads) process ``pid`` used so far, from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return int(fields[11]) / TICK, int(fields[12]) / TICK


@dataclass
class Milter:
    """One contender: how to start it on a port."""

    name: str
    argv: list[str]
    process: subprocess.Popen[bytes] | None = None
    port: int = 0
    cwd: Path = ROOT

    def start(self, port: int) -> None:
        self.port = port
        argv = [a.format(port=port, spec=f"inet:{port}@127.0.0.1") for a in self.argv]
        self.process = subprocess.Popen(argv, cwd=self.cwd, stdout=subprocess.DEVNULL,
                                        stderr=subprocess.DEVNULL, start_new_session=True)

    def wait_listening(self, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        assert self.process is not None
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise SystemExit(f"{self.name} exited with {self.process.returncode}: "
                                 f"{' '.join(self.argv)}")
            try:
                socket.create_connection(("127.0.0.1", self.port), 1).close()
                return
            except OSError:
                time.sleep(0.1)
        raise SystemExit(f"{self.name} did not listen on {self.port}")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    def cpu(self) -> float:
        """CPU seconds (user + system, all threads) the milter used so far."""
        assert self.process is not None
        return sum(cpu_times(self.process.pid))

    def rss(self) -> int:
        """Resident set size in bytes now."""
        assert self.process is not None
        for line in Path(f"/proc/{self.process.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
        return 0


@dataclass
class Run:
    """One measurement."""

    milter: str
    body: int
    concurrency: int
    rate: float
    cpu_per_msg: float
    rss: int
    errors: int
    gen_cpu_per_msg: float


@dataclass
class Results:
    runs: list[Run] = field(default_factory=list)

    def median(self, milter: str, body: int, concurrency: int, attr: str) -> float:
        values = [getattr(r, attr) for r in self.runs
                  if (r.milter, r.body, r.concurrency) == (milter, body, concurrency)]
        return statistics.median(values) if values else float("nan")


# ---------------------------------------------------------------------------- installing


def run_quiet(argv: list[str], **kwargs: Any) -> None:
    proc = subprocess.run(argv, capture_output=True, text=True, check=False, **kwargs)
    if proc.returncode != 0:
        raise SystemExit(f"failed: {' '.join(argv)}\n{proc.stdout}\n{proc.stderr}")


def install(peers_dir: Path) -> dict[str, Path]:
    """The peers' venvs (made once) and the C milter (built once); returns their paths."""
    missing = [p for p in DEBIAN if subprocess.run(
        ["dpkg-query", "-W", "-f=${Status}", p], capture_output=True, text=True, check=False,
    ).stdout != "install ok installed"]
    if missing and shutil.which("apt-get"):
        print(f"# apt-get install {' '.join(missing)}", flush=True)
        run_quiet(["apt-get", "update", "-qq"])
        run_quiet(["apt-get", "install", "-y", "-q", *missing],
                  env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"})
    peers_dir.mkdir(parents=True, exist_ok=True)
    paths: dict[str, Path] = {}
    for name, requirement in PEERS.items():
        venv = peers_dir / name
        python = venv / "bin" / "python"
        if not (venv / ".installed").exists():
            print(f"# installing {requirement} in {venv}", flush=True)
            run_quiet(["python3", "-m", "venv", str(venv)])
            run_quiet([str(python), "-m", "pip", "install", "-q", requirement])
            (venv / ".installed").write_text(requirement + "\n")
        paths[name] = python
    binary = peers_dir / "ref_milter"
    source = HERE / "ref_milter.c"
    if not binary.exists() or binary.stat().st_mtime < source.stat().st_mtime:
        print(f"# building {binary}", flush=True)
        run_quiet(["cc", "-O2", "-Wall", "-o", str(binary), str(source), "-lmilter",
                   "-lpthread"])
    paths["c"] = binary
    return paths


def contenders(paths: dict[str, Path], loops: list[str],
               baseline: Path | None = None) -> list[Milter]:
    py = sys.executable
    mk = [py, "-m", "milterkit", "run", "-l", "{spec}", "--log-level", "warning",
          "--timeout", "0"]
    milters = [
        Milter("C libmilter", [str(paths["c"]), "{spec}"]),
        Milter("pymilter", [str(paths["pymilter"]), str(HERE / "pymilter_milter.py"),
                            "{spec}"]),
        Milter("purepythonmilter", [str(paths["ppm"]), str(HERE / "ppm_milter.py"),
                                    "127.0.0.1", "{port}"]),
        Milter("python-libmilter", [str(paths["pylibmilter"]),
                                    str(HERE / "pylibmilter_milter.py"),
                                    "inet:127.0.0.1:{port}"]),
    ]
    for loop in loops:
        milters += [
            Milter(f"milterkit every handler ({loop})",
                   [*mk, "--loop", loop, str(ROOT / "bench" / "load_filter.py")]),
            Milter(f"milterkit only needed ({loop})",
                   [*mk, "--loop", loop, str(HERE / "milterkit_needed.py")]),
            Milter(f"bare asyncio floor ({loop})",
                   [py, str(HERE / "floor.py"), "{spec}", "--loop", loop]),
        ]
        if loop == "asyncio":  # the standard loop's floor again, without a bytes object per read
            milters.append(Milter("bare asyncio floor, buffered reads (asyncio)",
                                  [py, str(HERE / "floor.py"), "{spec}", "--loop", loop,
                                   "--buffered"]))
    if baseline is not None:
        # Another milterkit checkout (run from its directory, so `-m milterkit` is that one),
        # with this interpreter: its figures next to this one's.
        milters += [
            Milter("baseline milterkit every handler (uvloop)",
                   [*mk, "--loop", "uvloop", str(ROOT / "bench" / "load_filter.py")],
                   cwd=baseline),
            Milter("baseline milterkit only needed (uvloop)",
                   [*mk, "--loop", "uvloop", str(HERE / "milterkit_needed.py")], cwd=baseline),
        ]
    return milters


# ---------------------------------------------------------------------------- measuring


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def generate(port: int, concurrency: int, body: int, seconds: float, procs: int,
             warmup: float = 0.0) -> list[dict[str, Any]]:
    """Run ``procs`` generator processes sharing ``concurrency`` sessions; their JSON lines."""
    shares = [concurrency // procs + (i < concurrency % procs) for i in range(procs)]
    children = [subprocess.Popen(
        [sys.executable, str(HERE / "loadgen.py"), f"inet:{port}@127.0.0.1", "-c", str(share),
         "--body", str(body), "--seconds", str(seconds), "--warmup", str(warmup)],
        stdout=subprocess.PIPE, text=True) for share in shares if share]
    out = []
    for child in children:
        stdout, _ = child.communicate(timeout=seconds + 120)
        out.append(json.loads(stdout.strip().splitlines()[-1]))
    return out


def measure(milter: Milter, body: int, concurrency: int, seconds: float, procs: int) -> Run:
    peak = [milter.rss()]
    stop = threading.Event()

    def sample() -> None:
        while not stop.wait(0.05):
            try:
                peak[0] = max(peak[0], milter.rss())
            except OSError:
                return

    sampler = threading.Thread(target=sample, daemon=True)
    cpu0 = milter.cpu()
    sampler.start()
    lines = generate(milter.port, concurrency, body, seconds, min(procs, concurrency))
    stop.set()
    sampler.join()
    cpu = milter.cpu() - cpu0
    messages = sum(line["messages"] for line in lines)
    errors = sum(line["errors"] for line in lines)
    rate = sum(line["rate"] for line in lines)
    gen = sum(line["gen_cpu_per_msg"] * line["messages"] for line in lines)
    return Run(milter.name, body, concurrency, rate, cpu / max(1, messages + errors), peak[0],
               errors, gen / max(1, messages))


# ---------------------------------------------------------------------------- reporting


def table(results: Results, milters: list[str], body: int, concurrencies: list[int],
          reference: str) -> str:
    head = ["milter", *[f"c={c} msg/s" for c in concurrencies],
            *[f"x {reference} c={c}" for c in concurrencies],
            f"CPU µs/msg c={concurrencies[len(concurrencies) // 2]}", "peak RSS MiB"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    mid = concurrencies[len(concurrencies) // 2]
    for name in milters:
        rates = [results.median(name, body, c, "rate") for c in concurrencies]
        refs = [results.median(reference, body, c, "rate") for c in concurrencies]
        cpu = results.median(name, body, mid, "cpu_per_msg") * 1e6
        rss = max((r.rss for r in results.runs if r.milter == name and r.body == body),
                  default=0) / 2**20
        cells = [name, *[f"{r:,.0f}" for r in rates],
                 *[f"{r / ref:.2f}" if ref else "-" for r, ref in zip(rates, refs, strict=True)],
                 f"{cpu:,.0f}", f"{rss:.1f}"]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def chart(results: Results, milters: list[str], bodies: list[int], concurrencies: list[int],
          path: Path) -> None:
    """Messages per second (top) and the milter's CPU per message (bottom), per body size."""
    try:
        import matplotlib
    except ImportError:
        run_quiet([sys.executable, "-m", "pip", "install", "-q", "matplotlib"])
        import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(2, len(bodies), figsize=(7 * len(bodies), 10), squeeze=False)
    width = 0.8 / len(milters)
    colours = plt.get_cmap("tab20")
    for column, body in enumerate(bodies):
        for row, (attr, scale, label) in enumerate((("rate", 1.0, "msg/s"),
                                                    ("cpu_per_msg", 1e6, "CPU µs/msg"))):
            ax = axes[row][column]
            for i, name in enumerate(milters):
                xs = [c + (i - len(milters) / 2) * width for c in range(len(concurrencies))]
                ax.bar(xs, [results.median(name, body, c, attr) * scale for c in concurrencies],
                       width, label=name, color=colours(i % 20))
            ax.set_xticks(range(len(concurrencies)), [f"c={c}" for c in concurrencies])
            what = "messages per second" if attr == "rate" else "milter CPU per message"
            ax.set_title(f"{body // 1024} KiB body: {what} (median)")
            ax.set_ylabel(label)
            ax.grid(axis="y", alpha=0.3)
    axes[0][0].legend(fontsize=7, loc="upper left")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=80)


def replot(source: Path, chart_path: Path) -> None:
    """Redraw the chart from a peers.json."""
    data = json.loads(source.read_text())
    results = Results([Run(**run) for run in data["runs"]])
    names = list(dict.fromkeys(r.milter for r in results.runs))
    bodies = sorted({r.body for r in results.runs})
    concurrencies = sorted({r.concurrency for r in results.runs})
    chart(results, names, bodies, concurrencies, chart_path)


def machine() -> str:
    model = next((line.split(":", 1)[1].strip()
                  for line in Path("/proc/cpuinfo").read_text().splitlines()
                  if line.startswith("model name")), platform.processor())
    load = os.getloadavg()
    return (f"{os.cpu_count()} CPUs ({model}), Linux {platform.release()}, Python "
            f"{platform.python_version()}, load average at start {load[0]:.2f}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true",
                        help="1-second runs instead of 3 (about 6 minutes in all)")
    parser.add_argument("--seconds", type=float, help="seconds per run")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds (median)")
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 10, 100])
    parser.add_argument("--body", type=int, nargs="+", default=[2048, 204800])
    parser.add_argument("--loops", nargs="+", default=["uvloop", "asyncio"],
                        choices=("uvloop", "asyncio"))
    parser.add_argument("--only", nargs="+", metavar="NAME",
                        help="only the milters whose name contains one of these words")
    parser.add_argument("--baseline", type=Path, metavar="DIR",
                        help="also run the milterkit checkout in DIR (e.g. `git archive` of an "
                        "older commit) on uvloop, as 'baseline milterkit'")
    parser.add_argument("--gen-procs", type=int, default=2,
                        help="load generator processes for c > 1 (default 2)")
    parser.add_argument("--peers-dir", type=Path, default=Path(tempfile.gettempdir())
                        / "milterkit-peers", help="where the peers' venvs and the C milter go")
    parser.add_argument("--out", type=Path, default=HERE / "results",
                        help="directory of peers.md and peers.json")
    parser.add_argument("--chart", type=Path, default=ROOT / "docs" / "images" / "peers.png")
    parser.add_argument("--replot", type=Path, metavar="JSON",
                        help="only redraw the chart from a peers.json")
    args = parser.parse_args(argv)
    if args.replot is not None:
        replot(args.replot, args.chart)
        return 0
    seconds = args.seconds or (1.0 if args.quick else 3.0)

    paths = install(args.peers_dir)
    milters = contenders(paths, args.loops, args.baseline)
    if args.only:
        milters = [m for m in milters if any(w in m.name for w in args.only)
                   or m.name == "C libmilter"]
    print(f"# {machine()}", flush=True)
    print(f"# {seconds:g} s per run, {args.rounds} interleaved rounds, bodies "
          f"{args.body}, concurrency {args.concurrency}, {args.gen_procs} generator "
          "process(es) for c > 1", flush=True)
    results = Results()
    try:
        for milter in milters:
            milter.start(free_port())
        for milter in milters:
            milter.wait_listening()
            generate(milter.port, 10, 2048, 0.5, 1)  # warm-up: imports, caches, threads
        for round_ in range(args.rounds):
            for body in args.body:
                for concurrency in args.concurrency:
                    # Rotate the order each round so no milter always runs first or last.
                    order = milters[round_ % len(milters):] + milters[:round_ % len(milters)]
                    for milter in order:
                        run = measure(milter, body, concurrency, seconds, args.gen_procs)
                        results.runs.append(run)
                        print(f"round {round_ + 1} body {body} c={concurrency} "
                              f"{milter.name}: {run.rate:,.0f} msg/s, "
                              f"{run.cpu_per_msg * 1e6:,.0f} µs CPU/msg, "
                              f"{run.rss / 2**20:.1f} MiB, {run.errors} errors", flush=True)
    finally:
        for milter in milters:
            milter.stop()

    names = [m.name for m in milters]
    reference = "pymilter" if "pymilter" in names else names[0]
    report = [f"Machine: {machine()}. {seconds:g} s per run, median of {args.rounds} "
              "interleaved rounds, TCP on 127.0.0.1, one message per session."]
    for body in args.body:
        report += ["", f"**{body // 1024} KiB body** (ratios to {reference})", "",
                   table(results, names, body, args.concurrency, reference)]
    gen = [r.gen_cpu_per_msg for r in results.runs if r.milter == "C libmilter"]
    if gen:
        per = statistics.median(gen)
        best = max((r.rate for r in results.runs), default=0.0)
        report += ["", f"Load generator: {per * 1e6:,.0f} µs of its own CPU per message "
                   f"against the C milter (median), so at most {1 / per:,.0f} msg/s per "
                   f"generator process on one free core; {args.gen_procs} processes for "
                   f"c > 1. Fastest run measured: {best:,.0f} msg/s."]
    text = "\n".join(report)
    print()
    print(text)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "peers.md").write_text(text + "\n")
    (args.out / "peers.json").write_text(json.dumps(
        {"machine": machine(), "seconds": seconds, "rounds": args.rounds,
         "runs": [r.__dict__ for r in results.runs]}, indent=1) + "\n")
    chart(results, names, args.body, args.concurrency, args.chart)
    print(f"\nwrote {args.out / 'peers.md'}, {args.out / 'peers.json'}, {args.chart}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
