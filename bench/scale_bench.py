"""Messages per second through HAProxy with 1, 2 and 3 milterkit instances, against one
instance directly: the cost of the balancer (docs/scaling.rst).

The load is ``bench/load.py``'s: C concurrent MTA connections speaking the milter protocol
(no Postfix), each sending M full messages to ``bench/load_filter.py``. Set-ups, in turn:

* ``direct``: one ``milterkit run`` on TCP, no metrics;
* ``direct +metrics``: the same with ``--metrics-listen`` (what the HAProxy set-ups run);
* ``haproxy N``: N instances with metrics behind HAProxy running
  ``examples/scale-out/haproxy.cfg`` (its unused server lines point at a closed port and are
  marked down by the health checks before the run).

Needs haproxy on PATH and ``pip install 'milterkit[metrics]'``. Run it as::

    python bench/scale_bench.py -c 30 -m 100 --drivers 2 --repeat 3

Each set-up runs ``--repeat`` times, in rounds; the median run is shown, with every run's rate.
The driver is Python and shares the machine's cores with everything it measures: compare
rows of one run only.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))

from load import HEADER, Result, _drive, _free_port, _load, _wait_listening  # noqa: E402

HAPROXY_CFG = ROOT / "examples" / "scale-out" / "haproxy.cfg"


def _start_instance(target: str, port: int, metrics: int | None) -> subprocess.Popen[bytes]:
    command = [sys.executable, "-m", "milterkit", "run", target, "-l", f"inet:{port}@127.0.0.1",
               "--log-level", "warning"]
    if metrics is not None:
        command += ["--metrics-listen", f"127.0.0.1:{metrics}"]
    process = subprocess.Popen(command, cwd=ROOT)
    _wait_listening(f"inet:{port}@127.0.0.1", process)
    return process


def _stop(processes: list[subprocess.Popen[bytes]]) -> None:
    for process in processes:
        process.send_signal(signal.SIGTERM)
    for process in processes:
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _states(admin: Path) -> dict[str, str]:
    with socket.socket(socket.AF_UNIX) as sock:
        sock.connect(str(admin))
        sock.sendall(b"show stat\n")
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    lines = data.decode().splitlines()
    fields = lines[0].lstrip("# ").split(",")
    rows = [dict(zip(fields, line.split(","), strict=False)) for line in lines[1:] if line]
    return {r["svname"]: r["status"] for r in rows if r.get("pxname") == "milterkit"
            and r.get("svname", "").startswith("m")}


def _haproxy(instances: list[tuple[int, int]], tmp: Path) -> tuple[subprocess.Popen[bytes], str]:
    """HAProxy on the example configuration; waits until the used servers are UP and the
    others DOWN. Returns the process and the frontend's spec."""
    frontend = _free_port()
    closed = _free_port()  # nothing listens there: the spare server lines go DOWN
    env = {**os.environ, "MILTER_FRONTEND": f"127.0.0.1:{frontend}",
           "HAPROXY_SOCKET": str(tmp / "admin.sock")}
    for number in range(1, 4):
        port, health = instances[number - 1] if number <= len(instances) else (closed, closed)
        env[f"MILTER_{number}"] = f"127.0.0.1:{port}"
        env[f"HEALTH_{number}"] = str(health)
    process = subprocess.Popen(["haproxy", "-db", "-f", str(HAPROXY_CFG)], env=env, cwd=tmp,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wanted = {f"m{n}": "UP" if n <= len(instances) else "DOWN" for n in range(1, 4)}
    deadline = time.monotonic() + 30
    while True:
        try:
            states = _states(tmp / "admin.sock")
            if all(states.get(name, "").startswith(state) for name, state in wanted.items()):
                break
        except OSError:
            pass
        if time.monotonic() > deadline or process.poll() is not None:
            process.kill()
            raise SystemExit(f"HAProxy did not reach {wanted}")
        time.sleep(0.2)
    return process, f"inet:{frontend}@127.0.0.1"


def bench(label: str, instances: int | None, metrics: bool, args: argparse.Namespace) -> Result:
    """One set-up: ``instances`` None is one instance addressed directly."""
    tmp = Path(tempfile.mkdtemp(prefix="mk-scale-bench-"))
    processes: list[subprocess.Popen[bytes]] = []
    try:
        ports = [(_free_port(), _free_port()) for _ in range(instances or 1)]
        for port, health in ports:
            processes.append(_start_instance(args.target, port, health if metrics else None))
        if instances is None:
            spec = f"inet:{ports[0][0]}@127.0.0.1"
        else:
            haproxy, spec = _haproxy(ports, tmp)
            processes.insert(0, haproxy)
        if args.warmup:
            import asyncio

            asyncio.run(_load(spec, min(args.connections, 10), args.warmup))
        seconds, latencies, errors = _drive(spec, args.connections, args.messages, args.drivers)
        if metrics:  # the instances really counted the messages
            for _, health in ports:
                with urllib.request.urlopen(f"http://127.0.0.1:{health}/metrics", timeout=5) as r:
                    assert b"milterkit_messages_total" in r.read()
    finally:
        _stop(processes)
        shutil.rmtree(tmp, ignore_errors=True)
    return Result("", instances or 1, len(latencies), seconds, latencies, errors)


def handler_cost(calls: int = 100_000) -> float:
    """Microseconds the metrics add to one timed stage: the timer that starts it and the
    response handler that counts the verdict and observes the latency."""
    from milterkit import Client, Status
    from milterkit.metrics import Metrics

    client = Client("inet:0@127.0.0.1")
    client.connect("header", lambda context, name, value: None)
    metrics = Metrics()
    metrics.install(client)
    start = client.signals.receivers("header", None)[0]
    respond = client.signals.receivers("header-response", None)[0]
    context = object()
    begun = time.perf_counter()
    for _ in range(calls):
        start(context, "Subject", "x")
        respond(context, Status.CONTINUE)
    return (time.perf_counter() - begun) / calls * 1e6


def main(argv: list[str] | None = None) -> int:
    """Parse the options, run every set-up, print a table."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--target", default="bench/load_filter.py")
    parser.add_argument("-c", "--connections", type=int, default=30,
                        help="concurrent MTA connections (default 30)")
    parser.add_argument("-m", "--messages", type=int, default=100,
                        help="messages per connection (default 100)")
    parser.add_argument("--drivers", type=int, default=2,
                        help="driver processes sharing the connections (default 2)")
    parser.add_argument("--warmup", type=int, default=2,
                        help="messages per connection before measuring (default 2)")
    parser.add_argument("--repeat", type=int, default=3,
                        help="runs per set-up, in rounds; the median run is shown (default 3)")
    parser.add_argument("--handler-cost", action="store_true",
                        help="only print what the metrics add to one timed stage, in µs")
    args = parser.parse_args(argv)
    if args.handler_cost:
        print(f"metrics per timed stage: {handler_cost():.1f} µs")
        return 0
    if shutil.which("haproxy") is None:
        raise SystemExit("haproxy is not installed (apt-get install -y haproxy)")
    print(f"# {args.connections} connections x {args.messages} messages, {args.drivers} "
          f"driver process(es), target {args.target}, python {sys.version.split()[0]}, "
          f"{os.cpu_count()} cpus")
    print(f"{'setup':<15}" + HEADER[5:].replace("workers", "  inst."))
    setups: list[tuple[str, int | None, bool]] = [
        ("direct", None, False), ("direct+metrics", None, True),
        ("haproxy", 1, True), ("haproxy", 2, True), ("haproxy", 3, True),
    ]
    # Rounds of every set-up, so that a burst of load on the machine hits them all alike.
    runs: dict[int, list[Result]] = {i: [] for i in range(len(setups))}
    for _ in range(args.repeat):
        for i, (label, instances, metrics) in enumerate(setups):
            runs[i].append(bench(label, instances, metrics, args))
    for i, (label, _, _) in enumerate(setups):
        ordered = sorted(runs[i], key=lambda r: r.messages / r.seconds if r.seconds else 0.0)
        rates = " ".join(f"{r.messages / r.seconds:.0f}" for r in runs[i] if r.seconds)
        print(f"{label:<15}" + ordered[len(ordered) // 2].line()[5:] + f"   runs: {rates}",
              flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
