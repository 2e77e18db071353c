"""The smaller deviations from libmilter the reliability review found (issue 9, point 5).

* ``K`` (QUIT_NC) followed by ``M`` without a new CONNECT: libmilter does *not* refuse it. Its
  engine finds MAIL is no legal next state after QUIT_NC, retries from HELO, where it is, and
  calls the envfrom callback (engine.c, ``trans_ok`` and the "try to reach the new state from
  HELO" rule). milterkit does the same; the test pins that, against real libmilter when a C
  compiler and libmilter's headers are there.
* Unix socket paths over 107 bytes are refused with a clear error (``sun_path`` holds 108 bytes
  with its NUL; Postfix and libmilter refuse longer names).
* ``milterkit run --max-payload BYTES`` sets the payload cap; 65535 is libmilter's strict one.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from runner import ROOT, RunningServer
from serverlib import MTA, run, serving, short_tmpdir

from milterkit import ClientContext, Status
from milterkit.protocol import commands as cmd
from milterkit.protocol.constants import STRICT_MAX_PAYLOAD, ActionFlag
from milterkit.protocol.constants import ProtocolFlag as P
from milterkit.protocol.framing import encode_packet
from milterkit.server import Client, SpecError, parse_spec
from milterkit.server.spec import MAX_UNIX_PATH

C_MILTER = textwrap.dedent(r"""
    #include <stdio.h>
    #include <libmilter/mfapi.h>
    static sfsistat on_connect(SMFICTX *c, char *host, _SOCK_ADDR *a) {
        fprintf(stderr, "connect %s\n", host); return SMFIS_CONTINUE; }
    static sfsistat on_envfrom(SMFICTX *c, char **argv) {
        fprintf(stderr, "envfrom %s\n", argv[0]); return SMFIS_REJECT; }
    struct smfiDesc desc = {"kfilter", SMFI_VERSION, 0, on_connect, NULL, on_envfrom, NULL,
                            NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL};
    int main(int argc, char **argv) {
        smfi_setconn(argv[1]); smfi_register(desc); return smfi_main(); }
""")


def _exchange(path: str) -> list[bytes]:
    """O, C, K, M on a fresh connection: the reply to each of O, C and M (K has none)."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(5)
    sock.connect(path)
    try:
        replies = []
        sock.sendall(cmd.Negotiate(6, ActionFlag.ALL, P.ALL).to_bytes())
        replies.append(sock.recv(4096)[4:5])
        sock.sendall(cmd.Connect("h1", cmd.SocketAddress("4", "192.0.2.1", 25)).to_bytes())
        replies.append(sock.recv(4096))
        sock.sendall(cmd.QuitNewConnection().to_bytes() + cmd.Mail("<a@b>").to_bytes())
        replies.append(sock.recv(4096))
        return replies
    finally:
        sock.close()


def _milterkit_exchange(tmp: Path, seen: list[str]) -> list[bytes]:
    def setup(client: Client) -> None:
        client.connect("connect", lambda context, host, address: seen.append(f"connect {host}"))

        def envelope_from(context: ClientContext, sender: str) -> Status:
            seen.append(f"envfrom {sender}")
            return Status.REJECT

        client.connect("envelope-from", envelope_from)

    async def scenario() -> list[bytes]:
        import asyncio

        async with serving(f"unix:{tmp}/mk.sock", setup) as client:
            del client
            return await asyncio.get_running_loop().run_in_executor(
                None, _exchange, f"{tmp}/mk.sock")

    return run(scenario())


def test_quit_nc_then_mail_without_connect_is_taken_as_libmilter_takes_it() -> None:
    with short_tmpdir() as tmp:
        seen: list[str] = []
        replies = _milterkit_exchange(tmp, seen)
        assert replies == [b"O", b"\0\0\0\x01c", b"\0\0\0\x01r"]
        assert seen == ["connect h1", "envfrom <a@b>"]


def _libmilter_available() -> bool:
    return shutil.which("gcc") is not None and Path("/usr/include/libmilter/mfapi.h").exists()


def test_real_libmilter_answers_quit_nc_then_mail_the_same() -> None:
    if not _libmilter_available():
        if os.environ.get("MILTERKIT_REQUIRE_LIBMILTER") == "1":
            pytest.fail("gcc or libmilter-dev is missing (MILTERKIT_REQUIRE_LIBMILTER=1)")
        pytest.skip("needs gcc and libmilter-dev")
    with short_tmpdir() as tmp:
        source = tmp / "kfilter.c"
        source.write_text(C_MILTER)
        subprocess.run(["gcc", "-o", str(tmp / "kfilter"), str(source), "-lmilter",
                        "-lpthread"], check=True, capture_output=True, timeout=120)
        path = f"{tmp}/c.sock"
        log = open(tmp / "log", "w")
        process = subprocess.Popen([str(tmp / "kfilter"), f"unix:{path}"], stderr=log)
        try:
            for _ in range(200):
                if os.path.exists(path):
                    break
                time.sleep(0.05)
            replies = _exchange(path)
        finally:
            process.terminate()
            process.wait(10)
            log.close()
        calls = [line for line in (tmp / "log").read_text().splitlines() if " " in line]
        seen: list[str] = []
        assert _milterkit_exchange(tmp, seen) == replies
        assert seen == calls == ["connect h1", "envfrom <a@b>"]


# ------------------------------------------------------------------ unix socket path length


def test_a_unix_path_over_107_bytes_is_refused_clearly() -> None:
    longest = "/" + "d" * (MAX_UNIX_PATH - 1)
    assert parse_spec(f"unix:{longest}").path == longest
    for spec in (f"unix:{longest}x", f"local:{longest}x", f"{longest}x"):
        with pytest.raises(SpecError, match="over the 107 a socket address holds"):
            parse_spec(spec)
    with pytest.raises(SpecError, match="108 bytes"):
        Client(f"unix:{longest}x", socket_activation=False)
    # Multi-byte characters count in bytes, as the kernel counts them.
    with pytest.raises(SpecError):
        parse_spec("unix:/" + "é" * 54)


def test_run_refuses_a_long_unix_path_in_one_line() -> None:
    spec = "unix:/tmp/" + "d" * 120 + "/m.sock"
    done = subprocess.run([sys.executable, "-m", "milterkit", "run", "examples/add_header.py",
                           "-l", spec], capture_output=True, text=True, cwd=ROOT, timeout=30)
    assert done.returncode == 2
    assert done.stderr.count("\n") == 1 and "over the 107" in done.stderr


def test_the_longest_path_binds_and_serves() -> None:
    with short_tmpdir() as tmp:
        deep = tmp / ("d" * (MAX_UNIX_PATH - len(str(tmp)) - len("/d/m.sock") + 1))
        deep.mkdir()
        path = f"{deep}/m.sock"
        assert len(path) == MAX_UNIX_PATH

        async def scenario() -> None:
            async with serving(f"unix:{path}") as client:
                mta = await MTA.open(client.address_spec)
                await mta.negotiate()
                await mta.close()

        run(scenario())


# ------------------------------------------------------------------ payload cap


def _header_of(size: int) -> bytes:
    return encode_packet(b"L", b"X-Big\0" + b"v" * (size - 7) + b"\0")


@pytest.mark.parametrize(("option", "closed"), [
    ([], False), (["--max-payload", str(STRICT_MAX_PAYLOAD)], True),
], ids=["default-1MiB", "strict-64KiB"])
def test_run_max_payload_option(option: list[str], closed: bool) -> None:
    with short_tmpdir() as tmp:
        path = f"{tmp}/m.sock"
        with RunningServer(["examples/add_header.py", "-l", f"unix:{path}", *option]) as server:
            server.wait_for("listening on")
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            sock.settimeout(10)
            sock.connect(path)
            sock.sendall(cmd.Negotiate(6, ActionFlag.ALL, P.ALL).to_bytes())
            assert sock.recv(4096)[4:5] == b"O"
            sock.sendall(_header_of(STRICT_MAX_PAYLOAD + 1000))
            answer = sock.recv(4096)
            sock.close()
            if closed:
                assert answer == b""
                server.wait_for("protocol error")
            else:
                assert answer == b"\0\0\0\x01c"
            assert server.stop() == 0


@pytest.mark.parametrize("value", ["100", "65534", "big", "4294967296"])
def test_run_refuses_a_bad_max_payload(value: str) -> None:
    done = subprocess.run([sys.executable, "-m", "milterkit", "run", "examples/add_header.py",
                           "--max-payload", value], capture_output=True, text=True, cwd=ROOT,
                          timeout=30)
    assert done.returncode == 2
    assert "--max-payload" in done.stderr and "Traceback" not in done.stderr
