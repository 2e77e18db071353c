"""The metrics endpoint: a real Client on loopback, driven over a real socket by the raw MTA,
scraped over HTTP; and ``milterkit run --metrics-listen``."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from milterproc import MilterProcess
from postfix import free_port
from scalelib import Sample, http_get, need_scale_tools, scrape, taken_port, wait_for

from milterkit import Client, ClientContext, Status
from milterkit.server.client import CLIENT_SIGNAL_NAMES
from milterkit.testing.raw_mta import MTA

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(autouse=True)
def _tools() -> None:
    need_scale_tools()


def value(samples: dict[Sample, float], name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


async def check_recipient(context: ClientContext, recipient: str) -> Status | None:
    await asyncio.sleep(0.01)  # a lookup: its wait belongs to the handler's latency
    if "unknown" in recipient:
        return context.reject("550", "5.1.1", "No such user")
    return None


def stamp(context: ClientContext, chunk: bytes) -> None:
    context.add_header("X-Checked", "yes")


def make_client() -> Client:
    from milterkit.metrics import enable_metrics

    client = Client("inet:0@127.0.0.1", shutdown_timeout=10)
    client.connect("envelope-recipient", check_recipient)
    client.connect("end-of-message", stamp)
    client.metrics_server = enable_metrics(client, "127.0.0.1:0")  # type: ignore[attr-defined]
    return client


def test_the_endpoint_reports_verdicts_latency_and_health() -> None:
    async def scenario() -> None:
        client = make_client()
        server = client.metrics_server  # type: ignore[attr-defined]
        host, port = server.address
        url = f"http://{host}:{port}"
        await client.start()
        await asyncio.sleep(0)  # the endpoint starts from listen-started
        mta = await MTA.open(client.address_spec)
        outcomes = await mta.session(messages=3, recipients=["<a@example.com>",
                                                             "<unknown@example.com>"])
        assert all(o.verdict is not None for o in outcomes)
        await mta.close()
        await wait_for_async(lambda: not client.connections)
        samples = await asyncio.to_thread(scrape, url + "/metrics")
        assert value(samples, "milterkit_connections_total") == 1
        assert value(samples, "milterkit_connections_open") == 0
        rcpt = "envelope-recipient"
        assert value(samples, "milterkit_verdicts_total", stage=rcpt, status="reject") == 3
        assert value(samples, "milterkit_verdicts_total", stage=rcpt, status="continue") == 3
        assert value(samples, "milterkit_verdicts_total", stage="end-of-message",
                     status="continue") == 3
        assert value(samples, "milterkit_messages_total", status="continue") == 3
        assert value(samples, "milterkit_handler_seconds_count", stage=rcpt) == 6
        # Six awaited sleeps of 10 ms each are inside the measured time.
        assert value(samples, "milterkit_handler_seconds_sum", stage=rcpt) >= 6 * 0.005
        assert value(samples, "milterkit_handler_seconds_count", stage="end-of-message") == 3
        # Stages nobody handles are not timed (nor sent by the MTA).
        assert value(samples, "milterkit_handler_seconds_count", stage="helo") == 0
        assert value(samples, "milterkit_protocol_errors_total") == 0
        assert await asyncio.to_thread(http_get, url + "/health") == (200, "ok\n")
        assert (await asyncio.to_thread(http_get, url + "/nothing"))[0] == 404

        # Draining: a session stays open, shutdown begins, /health says 503 until the end.
        held = await MTA.open(client.address_spec)
        await held.negotiate()
        await held.connect()
        await wait_for_async(lambda: len(client.connections) == 1)
        open_now = await asyncio.to_thread(scrape, url + "/metrics")
        assert value(open_now, "milterkit_connections_open") == 1
        shutdown = asyncio.get_running_loop().create_task(client.shutdown())
        await asyncio.sleep(0.05)
        assert await asyncio.to_thread(http_get, url + "/health") == (503, "draining\n")
        await held.close()
        await asyncio.wait_for(shutdown, 10)
        server.close()

    asyncio.run(scenario())


async def wait_for_async(condition: object, timeout: float = 10.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not condition():  # type: ignore[operator]
        assert loop.time() < deadline, "timed out"
        await asyncio.sleep(0.01)


def test_a_real_flow_control_pause_is_counted() -> None:
    from milterkit.metrics import enable_metrics
    from milterkit.protocol.framing import encode_packet

    async def scenario() -> None:
        release = asyncio.Event()

        async def hang(context: ClientContext, sender: str) -> None:
            await release.wait()

        client = Client("inet:0@127.0.0.1", shutdown_timeout=10, backlog_pause=(4, 64 * 1024))
        client.connect("envelope-from", hang)
        server = enable_metrics(client, "127.0.0.1:0")
        host, port = server.address
        await client.start()
        mta = await MTA.open(client.address_spec)
        await mta.negotiate()
        # MAIL waits on its handler; what follows piles up past the 4-packet pause bound.
        mta.send_nowait(encode_packet(b"M", b"<a@b>\0"),
                        *[encode_packet(b"D", b"Ma\0b\0")] * 50)
        await mta.writer.drain()
        await wait_for_async(lambda: any(c.paused for c in client.connections))
        samples = await asyncio.to_thread(scrape, f"http://{host}:{port}/metrics")
        assert value(samples, "milterkit_backlog_pauses_total") == 1
        release.set()
        await mta.close()
        await client.shutdown()
        server.close()

    asyncio.run(scenario())


def test_protocol_errors_and_backlog_pauses_are_counted() -> None:
    async def scenario() -> None:
        client = make_client()
        server = client.metrics_server  # type: ignore[attr-defined]
        host, port = server.address
        await client.start()
        await asyncio.sleep(0)
        mta = await MTA.open(client.address_spec)
        await mta.negotiate()
        mta.send_nowait(b"\x00\x00\x00\x02Zz")  # an unknown command
        await mta.writer.drain()
        assert await mta.at_eof()
        await mta.close()
        await wait_for_async(lambda: not client.connections)
        # "backlog-paused" is a Client signal only in versions that pause on a full backlog.
        paused = "backlog-paused" in CLIENT_SIGNAL_NAMES
        assert client.metrics_server.metrics.counts_backlog_pauses is paused  # type: ignore[attr-defined]
        if paused:
            client.emit("backlog-paused")
        samples = await asyncio.to_thread(scrape, f"http://{host}:{port}/metrics")
        assert value(samples, "milterkit_protocol_errors_total") == 1
        assert value(samples, "milterkit_backlog_pauses_total") == (1 if paused else 0)
        await client.shutdown()
        server.close()

    asyncio.run(scenario())


def test_a_handler_exception_is_counted_as_a_handler_error() -> None:
    async def scenario() -> None:
        from milterkit.metrics import Metrics, MetricsServer

        client = Client("inet:0@127.0.0.1")

        def broken(context: ClientContext, address: str) -> None:
            raise RuntimeError("directory down")

        client.connect("envelope-from", broken)
        metrics = Metrics()
        metrics.install(client)
        await client.start()
        mta = await MTA.open(client.address_spec)
        outcome = (await mta.session())[0]
        assert type(outcome.steps["envelope-from"].final).__name__ == "ReplyText"  # the 451
        await mta.close()
        await wait_for_async(lambda: not client.connections)
        text = metrics.render().decode()
        assert "milterkit_handler_errors_total 1.0" in text
        assert ('milterkit_verdicts_total{stage="envelope-from",status="temporary-failure"} 1.0'
                in text)
        assert isinstance(MetricsServer(metrics, client, "127.0.0.1", 0).bind(), socket.socket)
        await client.shutdown()

    asyncio.run(scenario())


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "milterkit", "run", "examples/add_header.py",
                           "-l", f"inet:{free_port()}@127.0.0.1", *args],
                          capture_output=True, text=True, timeout=60, cwd=ROOT)


@pytest.mark.parametrize(("args", "message"), [
    (["--metrics-listen", "nonsense"], "not HOST:PORT: 'nonsense'"),
    (["--metrics-listen", "127.0.0.1:0", "--workers", "2"], "serves one process"),
])
def test_cli_refuses_bad_metrics_options(args: list[str], message: str) -> None:
    done = run_cli(*args)
    assert done.returncode == 2
    assert message in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1
    assert "Traceback" not in done.stderr


def test_cli_refuses_a_metrics_port_in_use() -> None:
    with taken_port() as port:
        done = run_cli("--metrics-listen", f"127.0.0.1:{port}")
    assert done.returncode == 2
    assert f"metrics endpoint 127.0.0.1:{port}" in done.stderr
    assert "Traceback" not in done.stderr


def test_milterkit_run_serves_metrics_and_drains_on_sigterm() -> None:
    metrics_port = free_port()
    milter = MilterProcess(ROOT / "examples" / "add_header.py", f"inet:{free_port()}@127.0.0.1",
                           ["--metrics-listen", f"127.0.0.1:{metrics_port}",
                            "--shutdown-timeout", "20"])
    url = f"http://127.0.0.1:{metrics_port}"
    with milter:
        wait_for(lambda: _get(url + "/health") == 200, "/health")

        async def one_session() -> MTA:
            mta = await MTA.open(milter.spec)
            await mta.session()
            return mta

        async def sessions() -> None:
            await (await one_session()).close()
            # One more, held open across the SIGTERM: the instance drains.
            held = await MTA.open(milter.spec)
            await held.negotiate()
            assert milter.process is not None
            os.kill(milter.process.pid, signal.SIGTERM)
            await asyncio.to_thread(wait_for, lambda: _get(url + "/health") == 503,
                                    "/health to say draining")
            samples = await asyncio.to_thread(scrape, url + "/metrics")
            assert value(samples, "milterkit_connections_open") == 1
            assert value(samples, "milterkit_verdicts_total", stage="end-of-message",
                         status="continue") == 1
            await held.close()

        asyncio.run(sessions())
        assert milter.process is not None
        assert milter.process.wait(30) == 0


def _get(url: str) -> int | None:
    try:
        return http_get(url, timeout=2)[0]
    except OSError:
        return None


def test_cli_without_prometheus_client_says_what_to_install(tmp_path: Path) -> None:
    # A prometheus_client that cannot be imported, first on the path.
    (tmp_path / "prometheus_client").mkdir()
    (tmp_path / "prometheus_client" / "__init__.py").write_text(
        "raise ImportError('No module named prometheus_client')\n")
    done = subprocess.run(
        [sys.executable, "-m", "milterkit", "run", "examples/add_header.py", "-l",
         f"inet:{free_port()}@127.0.0.1", "--metrics-listen", "127.0.0.1:0"],
        capture_output=True, text=True, timeout=60, cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(tmp_path)},
    )
    assert done.returncode == 2
    assert "pip install 'milterkit[metrics]'" in done.stderr
    assert "Traceback" not in done.stderr
