"""Real Redis and real HAProxy for the scale-out tests, on loopback ports, in temp dirs.

:class:`RedisServer` runs ``redis-server`` with no persistence; :class:`HAProxy` runs
``haproxy -db`` on the configuration shipped in ``examples/scale-out/haproxy.cfg``, its
addresses set through the environment variables that file reads (as ``run.sh`` does).
:func:`scrape` reads a metrics endpoint into ``{(name, labels): value}``; :func:`one_message`
sends one message with the raw MTA, :func:`taken_port` holds a port that is in use.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from availability import need
from postfix import free_port

from milterkit.testing.raw_mta import MTA, Outcome

ROOT = Path(__file__).resolve().parents[2]
SCALE_OUT = ROOT / "examples" / "scale-out"
HAPROXY_CFG = SCALE_OUT / "haproxy.cfg"

__all__ = ["HAPROXY_CFG", "HAProxy", "RedisServer", "SCALE_OUT", "Sample", "http_get",
           "need_scale_tools", "one_message", "scrape", "taken_port", "wait_for"]

Sample = tuple[str, tuple[tuple[str, str], ...]]


def need_scale_tools() -> None:
    """Skip (fail in CI) unless haproxy, redis-server, redis-py and prometheus_client exist."""
    for program in ("haproxy", "redis-server"):
        need(shutil.which(program) is not None,
             f"{program} is not installed (apt-get install -y haproxy redis-server)")
    for module in ("redis", "prometheus_client"):
        try:
            __import__(module)
            found = True
        except ImportError:
            found = False
        need(found, f"the Python module {module} is missing (pip install '.[redis,metrics]')")


def wait_for(condition: object, what: str, timeout: float = 15.0, pause: float = 0.05) -> None:
    """Poll ``condition()`` until it is true; AssertionError naming ``what`` after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        if condition():  # type: ignore[operator]
            return
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(pause)


async def one_message(spec: str, address: str, **message: Any) -> Outcome:
    """One message (``message``: the raw MTA's sender, recipients...) from SMTP client
    ``address``, on a connection of its own to ``spec`` that is closed after."""
    mta = await MTA.open(spec)
    try:
        await mta.negotiate()
        await mta.connect(address=address)
        return await mta.message(**message)
    finally:
        await mta.close()


@contextlib.contextmanager
def taken_port() -> Iterator[int]:
    """A loopback TCP port that is bound and listened on for the body: one a program is to
    refuse to serve on."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        yield taken.getsockname()[1]


def _accepts(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=1.0):
            return True
    except OSError:
        return False


class _Process:
    """A child process whose output goes to a log file in its own temp dir."""

    def __init__(self, prefix: str) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix=prefix))
        self.log_path = self.dir / "output.log"
        self.process: subprocess.Popen[bytes] | None = None

    def _spawn(self, argv: Sequence[str], env: Mapping[str, str] | None = None) -> None:
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(list(argv), stdin=subprocess.DEVNULL, stdout=log,
                                            stderr=log, cwd=self.dir,
                                            env={**os.environ, **(env or {})})

    def _start_listening(self, argv: Sequence[str], port: int,
                         env: Mapping[str, str] | None = None) -> None:
        """Spawn ``argv`` and wait until it listens on loopback ``port``; RuntimeError with its
        log if it exits first."""
        self._spawn(argv, env)
        assert self.process is not None
        process = self.process
        wait_for(lambda: process.poll() is not None or _accepts("127.0.0.1", port),
                 f"{argv[0]} to listen")
        if process.poll() is not None:
            raise RuntimeError(f"{argv[0]} exited with {process.returncode}\n{self.log()}")

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def stop(self) -> None:
        proc, self.process = self.process, None
        if proc is not None and proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)

    def close(self) -> None:
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)


class RedisServer(_Process):
    """``redis-server`` on 127.0.0.1, no persistence; :attr:`url` for the stores."""

    def __init__(self) -> None:
        super().__init__("milterkit-redis-")
        self.port = 0

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> RedisServer:
        self.port = free_port()
        self._start_listening(["redis-server", "--port", str(self.port), "--bind", "127.0.0.1",
                               "--save", "", "--appendonly", "no", "--dir", str(self.dir),
                               "--daemonize", "no"], self.port)
        return self

    def __enter__(self) -> RedisServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()


class HAProxy(_Process):
    """HAProxy on ``examples/scale-out/haproxy.cfg``: the frontend on a free loopback port,
    ``servers`` as ``(milter address, health port)`` for m1..m3 (the file has three)."""

    def __init__(self, servers: Sequence[tuple[str, int]]) -> None:
        super().__init__("milterkit-haproxy-")
        if len(servers) != 3:
            raise ValueError("examples/scale-out/haproxy.cfg names three servers")
        self.servers = list(servers)
        self.port = 0
        self.socket = self.dir / "admin.sock"

    @property
    def postfix_spec(self) -> str:
        return f"inet:127.0.0.1:{self.port}"

    @property
    def milterkit_spec(self) -> str:
        return f"inet:{self.port}@127.0.0.1"

    def environment(self) -> dict[str, str]:
        env = {"MILTER_FRONTEND": f"127.0.0.1:{self.port}",
               "HAPROXY_SOCKET": str(self.socket)}
        for number, (address, health) in enumerate(self.servers, 1):
            env[f"MILTER_{number}"] = address
            env[f"HEALTH_{number}"] = str(health)
        return env

    def start(self) -> HAProxy:
        self.port = free_port()
        check = subprocess.run(["haproxy", "-c", "-q", "-f", str(HAPROXY_CFG)],
                               capture_output=True, text=True, timeout=30,
                               env={**os.environ, **self.environment()})
        if check.returncode != 0:
            raise RuntimeError(f"haproxy -c refused {HAPROXY_CFG}:\n{check.stdout}{check.stderr}")
        self._start_listening(["haproxy", "-db", "-f", str(HAPROXY_CFG)], self.port,
                              self.environment())
        return self

    def command(self, line: str) -> str:
        """One command on HAProxy's admin socket (``show servers state``...)."""
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(5.0)
            sock.connect(str(self.socket))
            sock.sendall(line.encode() + b"\n")
            chunks = []
            while True:
                data = sock.recv(65536)
                if not data:
                    break
                chunks.append(data)
        return b"".join(chunks).decode(errors="replace")

    def server_states(self) -> dict[str, str]:
        """``{"m1": "UP", ...}`` from ``show stat`` (CSV)."""
        lines = self.command("show stat").splitlines()
        if not lines:
            return {}
        fields = lines[0].lstrip("# ").split(",")
        states: dict[str, str] = {}
        for line in lines[1:]:
            row = dict(zip(fields, line.split(","), strict=False))
            if row.get("pxname") == "milterkit" and row.get("svname", "").startswith("m"):
                states[row["svname"]] = row.get("status", "")
        return states

    def wait_states(self, wanted: Mapping[str, str], timeout: float = 20.0) -> None:
        """Wait until the named servers have the given states (``UP``, ``DOWN``...)."""
        def matches() -> bool:
            with contextlib.suppress(OSError):
                states = self.server_states()
                return all(states.get(name, "").startswith(state)
                           for name, state in wanted.items())
            return False
        wait_for(matches, f"HAProxy servers {dict(wanted)}", timeout)

    def __enter__(self) -> HAProxy:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()


def http_get(url: str, timeout: float = 5.0) -> tuple[int, str]:
    """GET ``url``: (status, body), error statuses included."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def scrape(url: str) -> dict[Sample, float]:
    """Every sample of the Prometheus text at ``url``, by (name, sorted labels)."""
    from prometheus_client.parser import text_string_to_metric_families

    status, text = http_get(url)
    assert status == 200, f"{url} answered {status}: {text}"
    samples: dict[Sample, float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples[sample.name, tuple(sorted(sample.labels.items()))] = sample.value
    return samples
