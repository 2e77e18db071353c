"""``milterkit test-client``: the printing milter, in-process and as a real process."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

from milterkit import Client
from milterkit.testing import InProcess, Message, Submission
from milterkit.tools.event_printer import setup_printer


def test_every_event_is_printed_with_its_macros() -> None:
    lines: list[str] = []
    message = Message.build(headers=[("Subject", "hi")], body="hello\n")

    def setup(client: Client) -> None:
        setup_printer(client, lines.append)

    result = InProcess(setup).run(
        [Submission(message, unknown="XYZZY")], macros={"M": {"{auth_authen}": "alice"}})
    assert result.last.verdict == "pass" and not result.last.modifications
    assert lines[0].startswith("negotiate: version=<6>, action=<add-headers|change-body|")
    assert "connect: host=<mx.example.net>, address=<inet:50443@[192.168.123.123]>" in lines
    start = lines.index("envelope-from: <sender@example.com>")
    # In Postfix's order: {auth_authen} comes before {mail_addr} in milter_mail_macros.
    assert lines[start + 1:start + 4] == [
        "  macros:", "    auth_authen=alice", "    mail_addr=sender@example.com"]
    for expected in ("helo: <delian>", "envelope-recipient: <receiver@example.org>",
                     "unknown: <XYZZY>", "data", "header: <Subject: hi>", "end-of-header",
                     "body: <7 bytes: hello\\r\\n>", "end-of-message", "finished"):
        assert expected in lines
    # Postfix's ABORT after the answered message is quiet: the message was complete.
    assert not any(line.startswith("abort") for line in lines)


def test_test_client_process_prints_what_test_server_sends(tmp_path: Path) -> None:
    spec = f"unix:{tmp_path}/client.sock"
    process = subprocess.Popen([sys.executable, "-m", "milterkit", "test-client", "-s", spec],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 15
        while not (tmp_path / "client.sock").exists():
            assert time.monotonic() < deadline and process.poll() is None
            time.sleep(0.05)
        done = subprocess.run(
            [sys.executable, "-m", "milterkit", "test-server", "-s", spec, "-f", "a@example.net",
             "--helo-fqdn", "client.example.net"],
            capture_output=True, text=True, timeout=30)
        assert done.stdout.startswith("status: pass"), done.stdout + done.stderr
    finally:
        process.terminate()
        output, _ = process.communicate(timeout=15)
    lines = output.splitlines()
    assert "helo: <client.example.net>" in lines
    assert "envelope-from: <a@example.net>" in lines
    assert lines.count("finished") == 1
