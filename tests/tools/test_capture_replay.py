"""The capture proxy between real endpoints, the capture file format, and replay of the stored
Postfix captures."""

from __future__ import annotations

import asyncio
import random
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from milterkit import Client, ClientContext
from milterkit.protocol import PacketDecoder, encode_packet
from milterkit.protocol import commands as cmd
from milterkit.protocol import replies as rep
from milterkit.testing import Message, run_session_async
from milterkit.testing.pytest_plugin import MilterProcess
from milterkit.tools.capture import CaptureProxy
from milterkit.tools.capture_format import (
    FROM_MILTER,
    FROM_MTA,
    MILTER_CLOSED,
    MTA_CLOSED,
    CaptureError,
    CaptureWriter,
    parse_capture,
    read_capture,
)
from milterkit.tools.replay import replay, trace_lines

DATA = Path(__file__).resolve().parents[1] / "data"
EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
CAPTURES = sorted(DATA.glob("postfix-*.mkcap"))
CAPTURE_FILTER = str(DATA / "capture_filter.py")


def filter_factory(target: str) -> Callable[[Callable[[bytes], object]], ClientContext]:
    from milterkit.testing.target import load_client

    return load_client(target).create_context


# ---------------------------------------------------------------------- the file format


def test_format_round_trip_and_raw_streams(tmp_path: Path) -> None:
    path = tmp_path / "one.mkcap"
    with CaptureWriter(path, {"listen": "unix:/x"}) as writer:
        writer.record(FROM_MTA, b"\x00\x00\x00\x01Q", when=1.5)
        writer.record(FROM_MILTER, b"", when=2.0)
        writer.record(MTA_CLOSED, when=2.5)
    data = path.read_bytes()
    assert data.startswith(b"milterkit-capture 1 {")
    header_end = data.index(b"\n") + 1
    assert data[header_end:header_end + 13] == b"m?\xf8\x00\x00\x00\x00\x00\x00\x00\x00\x00\x05"
    capture = read_capture(path)
    assert capture.meta["listen"] == "unix:/x" and "created" in capture.meta
    assert [(r.kind, r.time, r.data) for r in capture.records] == [
        (FROM_MTA, 1.5, b"\x00\x00\x00\x01Q"), (FROM_MILTER, 2.0, b""), (MTA_CLOSED, 2.5, b"")]
    raw = parse_capture(b"\x00\x00\x00\x01Q")
    assert not raw.has_milter_side and raw.mta_bytes == b"\x00\x00\x00\x01Q"


def test_record_times_never_run_backwards(tmp_path: Path,
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    # The wall clock cannot be stepped back in a test, so it is replaced by one that is.
    with CaptureWriter(tmp_path / "c.mkcap") as writer:
        steps = iter([1000.0, 900.0, 800.0])
        monkeypatch.setattr(time, "time", lambda: next(steps))
        for _ in range(3):
            writer.record(FROM_MTA, b"x")
        monkeypatch.undo()
    times = [r.time for r in read_capture(tmp_path / "c.mkcap").records]
    assert times == sorted(times) and abs(times[0] - time.time()) < 60


@pytest.mark.parametrize("bad, match", [
    (b"milterkit-capture 2 {}\n", "version 2"),
    (b"milterkit-capture 1 [1]\n", "JSON object"),
    (b"milterkit-capture 1 {}\nm", "inside a record head"),
    (b"milterkit-capture 1 {}\nx" + bytes(12), "unknown record kind"),
    (b"milterkit-capture 1 {}\nm" + bytes(8) + b"\x00\x00\x00\x09ab", "inside the record"),
])
def test_format_errors(bad: bytes, match: str) -> None:
    with pytest.raises(CaptureError, match=match):
        parse_capture(bad)


# ---------------------------------------------------------------------- the proxy


async def _echo_upstream(path: str, sent_back: bytes) -> asyncio.base_events.Server:
    """A real peer that reads everything, then answers with ``sent_back`` in odd pieces."""
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        received = await reader.read()  # until the proxy forwards the MTA's EOF
        writer.write(len(received).to_bytes(8, "big"))
        rng = random.Random(2)
        offset = 0
        while offset < len(sent_back):
            step = rng.randint(1, 70000)
            writer.write(sent_back[offset:offset + step])
            await writer.drain()
            offset += step
        writer.close()

    return await asyncio.start_unix_server(handle, path)


def test_proxy_loses_no_byte_in_either_direction(tmp_path: Path) -> None:
    rng = random.Random(1)
    up = rng.randbytes(3_000_000)
    down = rng.randbytes(2_000_000)

    async def scenario() -> tuple[bytes, list[Path]]:
        upstream = await _echo_upstream(str(tmp_path / "up.sock"), down)
        proxy = CaptureProxy(f"unix:{tmp_path}/proxy.sock", f"unix:{tmp_path}/up.sock",
                             tmp_path / "out")
        await proxy.start()
        reader, writer = await asyncio.open_unix_connection(str(tmp_path / "proxy.sock"))
        offset = 0
        while offset < len(up):
            step = rng.randint(1, 100000)
            writer.write(up[offset:offset + step])
            await writer.drain()
            offset += step
        writer.write_eof()
        got = await asyncio.wait_for(reader.read(-1), 30)
        writer.close()
        await proxy.close()
        upstream.close()
        await upstream.wait_closed()
        return got, proxy.captures

    got, captures = asyncio.run(asyncio.wait_for(scenario(), 60))
    assert got[:8] == len(up).to_bytes(8, "big")  # the milter side received every byte
    assert got[8:] == down  # and the MTA side every byte back
    (path,) = captures
    capture = read_capture(path)
    assert capture.mta_bytes == up
    assert capture.milter_bytes == len(up).to_bytes(8, "big") + down
    kinds = [r.kind for r in capture.records]
    assert kinds.count(MTA_CLOSED) == 1 and kinds.count(MILTER_CLOSED) == 1
    times = [r.time for r in capture.records]
    assert times == sorted(times)
    assert not (tmp_path / "proxy.sock").exists()


def test_capture_of_a_real_session_replays_identically(
    tmp_path: Path, milter_server: Callable[..., MilterProcess],
) -> None:
    milter = milter_server(EXAMPLES / "reject_recipient.py")

    async def scenario() -> list[Path]:
        proxy = CaptureProxy(f"unix:{tmp_path}/proxy.sock", milter.spec, tmp_path / "out")
        await proxy.start()
        message = Message.build(recipients=["closed@example.com", "open@example.com"])
        result = await run_session_async(proxy.address, [message, message])
        assert [m.verdict for m in result.messages] == ["pass", "pass"]
        await proxy.close()
        return proxy.captures

    (path,) = asyncio.run(asyncio.wait_for(scenario(), 30))
    result = replay(read_capture(path), filter_factory(str(EXAMPLES / "reject_recipient.py")))
    assert result.identical
    assert sum(isinstance(r, rep.ReplyText) for r in result.replayed) == 2


def test_capture_command_runs_as_a_proxy(
    tmp_path: Path, milter_server: Callable[..., MilterProcess],
) -> None:
    milter = milter_server(EXAMPLES / "add_header.py")
    out = tmp_path / "out"
    proxy = subprocess.Popen(
        [sys.executable, "-m", "milterkit", "capture", "-l", f"unix:{tmp_path}/p.sock",
         "-u", milter.spec, "-o", str(out), "--log-level", "warning"])
    try:
        deadline = time.monotonic() + 15
        while not (tmp_path / "p.sock").exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        done = subprocess.run(
            [sys.executable, "-m", "milterkit", "test-server", "-s", f"unix:{tmp_path}/p.sock"],
            capture_output=True, text=True, timeout=30)
        assert done.stdout.startswith("status: pass")
    finally:
        proxy.terminate()
        assert proxy.wait(15) == 0
    (path,) = out.glob("*.mkcap")
    replayed = subprocess.run(
        [sys.executable, "-m", "milterkit", "replay", "-q", str(path),
         "--filter", str(EXAMPLES / "add_header.py")],
        capture_output=True, text=True, timeout=30)
    assert replayed.returncode == 0, replayed.stdout
    assert "identical" in replayed.stdout


# ---------------------------------------------------------------------- replay of stored captures


def test_stored_captures_exist() -> None:
    assert [p.name for p in CAPTURES] == [
        "postfix-no-message.mkcap", "postfix-one-message.mkcap", "postfix-reject-rcpt.mkcap",
        "postfix-two-messages.mkcap"]


@pytest.mark.parametrize("path", CAPTURES, ids=lambda p: p.stem)
def test_replay_gives_the_recorded_replies(path: Path) -> None:
    capture = read_capture(path)
    result = replay(capture, filter_factory(CAPTURE_FILTER))
    assert result.error is None
    assert result.recorded is not None and len(result.recorded) > 1
    assert result.replayed == result.recorded
    assert result.identical
    # The recording ends the way Postfix ends every session: QUIT, then both sides close.
    assert isinstance(result.steps[-1].command, cmd.Quit)
    assert capture.records[-1].kind in (MTA_CLOSED, MILTER_CLOSED)


def test_replay_of_the_rejected_recipient_capture_traces_it() -> None:
    result = replay(read_capture(DATA / "postfix-reject-rcpt.mkcap"),
                    filter_factory(CAPTURE_FILTER))
    lines = trace_lines(result)
    text = "\n".join(lines)
    assert "> RCPT <closed@example.org>" in text
    assert ". envelope-recipient -> reject" in text
    assert "< reply-code 550 5.1.1 This mailbox is closed" in text
    assert "> MACRO R {{rcpt_addr}=closed@example.org" in text
    assert lines[-1].endswith("identical")


def test_replay_without_filter_shows_where_replies_differ() -> None:
    result = replay(read_capture(DATA / "postfix-reject-rcpt.mkcap"))
    assert not result.identical
    answering = [d.answering for d in result.differences]
    assert any("RCPT <closed@example.org>" in a for a in answering)
    assert any("END-OF-MESSAGE" in a for a in answering)
    text = "\n".join(trace_lines(result))
    assert "recorded: reply-code 550 5.1.1 This mailbox is closed" in text


def test_replay_of_a_raw_bin(tmp_path: Path) -> None:
    raw = tmp_path / "session.bin"
    raw.write_bytes(read_capture(DATA / "postfix-two-messages.mkcap").mta_bytes)
    done = subprocess.run(
        [sys.executable, "-m", "milterkit", "replay", str(raw), "--filter", CAPTURE_FILTER],
        capture_output=True, text=True, timeout=30)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "no milter side recorded" in done.stdout
    assert done.stdout.count("< add-header X-Capture-Test:") == 2


def test_replay_command_exit_statuses(tmp_path: Path) -> None:
    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "milterkit", "replay", *args],
                              capture_output=True, text=True, timeout=30)

    assert run("-q", str(DATA / "postfix-one-message.mkcap")).returncode == 1  # differs
    broken = tmp_path / "broken.bin"
    broken.write_bytes(b"\x00\x00\x00\x00")  # a zero-length packet
    done = run(str(broken))
    assert done.returncode == 1 and "length 0" in done.stdout
    missing = run(str(tmp_path / "nothing.mkcap"))
    assert missing.returncode == 2
    bad_filter = run(str(DATA / "postfix-one-message.mkcap"), "--filter", "no_such_module_x")
    assert bad_filter.returncode == 2


def test_replay_waits_for_coroutine_handlers() -> None:
    async def slow(context: object, address: str) -> None:
        await asyncio.sleep(0.01)

    client = Client()
    client.connect("envelope-recipient", slow)
    result = replay(read_capture(DATA / "postfix-one-message.mkcap"), client.create_context)
    assert result.error is None
    rcpt = next(s for s in result.steps if isinstance(s.command, cmd.Rcpt))
    assert rcpt.replies == [rep.Continue()]



def test_proxy_closes_both_sides_when_it_cannot_record(tmp_path: Path) -> None:
    """The output directory vanished: no capture can be written, so the proxy must hang up
    on both peers rather than leave them waiting on a connection it will never serve."""

    async def scenario() -> tuple[bytes, bytes]:
        upstream_saw: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()

        async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            upstream_saw.set_result(await reader.read())  # returns at the proxy's EOF
            writer.close()

        upstream = await asyncio.start_unix_server(handle, str(tmp_path / "up.sock"))
        proxy = CaptureProxy(f"unix:{tmp_path}/proxy.sock", f"unix:{tmp_path}/up.sock",
                             tmp_path / "out")
        await proxy.start()
        (tmp_path / "out").rmdir()
        reader, writer = await asyncio.open_unix_connection(str(tmp_path / "proxy.sock"))
        writer.write(b"\x00\x00\x00\x01Q")
        got = await asyncio.wait_for(reader.read(), 10)
        seen = await asyncio.wait_for(upstream_saw, 10)
        writer.close()
        await asyncio.wait_for(proxy.close(), 10)
        upstream.close()
        await upstream.wait_closed()
        return got, seen

    got, seen = asyncio.run(asyncio.wait_for(scenario(), 30))
    assert got == b"" and seen == b""


@pytest.mark.parametrize("tail, match", [
    (b"\x00\x00\x00\x00garbage", "length 0"),
    (cmd.Mail("<a@example.com>").to_bytes()[:-2], "stream ended inside a packet"),
    (b"\x00\x00", "inside a length prefix"),
])
def test_replay_shows_the_packets_before_garbage_or_a_cut(tail: bytes, match: str) -> None:
    whole = read_capture(DATA / "postfix-two-messages.mkcap").mta_bytes
    packets = PacketDecoder(1 << 20).decode(whole)[:6]  # O D C D H D
    head = b"".join(encode_packet(code, payload) for code, payload in packets)
    result = replay(parse_capture(head + tail))
    assert len(result.steps) == 6 and result.steps[4].command == cmd.Helo("client.example.net")
    assert result.error is not None and match in str(result.error)
    assert trace_lines(result)[-1] == f"error: {result.error}"
