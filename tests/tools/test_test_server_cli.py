"""``milterkit test-server`` against ``milterkit run`` over real sockets: the printed verdict and
the diff of the message."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from milterkit.testing.pytest_plugin import MilterProcess, free_tcp_port

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
Start = Callable[..., MilterProcess]


def test_server(*args: str, timeout: float = 30) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "milterkit", "test-server", *args],
        capture_output=True, text=True, timeout=timeout,
    )


test_server.__test__ = False  # type: ignore[attr-defined]  # a helper, not a test


def without_timing(output: str) -> list[str]:
    return [line for line in output.splitlines() if not line.startswith("elapsed-time:")]


def test_added_header_shows_in_the_diff(milter_server: Start) -> None:
    milter = milter_server(EXAMPLES / "add_header.py")
    done = test_server("-s", milter.spec, "--output-message", "--color=no")
    assert done.returncode == 0, done.stderr
    assert without_timing(done.stdout) == [
        "status: pass",
        "",
        "Envelope:------------------------------",
        "  MAIL FROM:<sender@example.com>",
        "  RCPT TO:<receiver@example.org>",
        "Header:------------------------------",
        "  From: <sender@example.com>",
        "  To: <receiver@example.org>",
        "+ X-Milterkit: yes",
        "Body:------------------------------",
        "  La de da de da 1.",
        "  La de da de da 2.",
        "  La de da de da 3.",
        "  La de da de da 4.",
    ]
    assert done.stdout.count("elapsed-time: ") == 1


def test_multi_line_reject_over_tcp(milter_server: Start) -> None:
    milter = milter_server(EXAMPLES / "reject_sender.py", family="inet")
    done = test_server("-s", milter.spec, "-f", "someone@spam.example")
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[0] == (
        "status: reject [550]<5.7.1>(Mail from spam.example is not accepted here. / "
        "If you think this is a mistake, / write to postmaster@example.com.)"
    )


def test_mail_file_replaced_body_and_colour(milter_server: Start, tmp_path: Path) -> None:
    mail = tmp_path / "mail.eml"
    mail.write_bytes(
        b"From: Alice <alice@example.net>\nTo: bob@example.com, carol@example.com\n"
        b"Subject: a folded\n  subject line\n\nHello Bob.\n"
    )
    milter = milter_server(EXAMPLES / "replace_body.py")
    done = test_server("-s", milter.spec, "-m", str(mail), "--output-message", "--color=yes")
    assert done.returncode == 0, done.stderr
    lines = without_timing(done.stdout)
    assert "  RCPT TO:<carol@example.com>" in lines
    assert lines[lines.index("  Subject: a folded") + 1] == "    subject line"
    body = lines[lines.index("Body:------------------------------") + 1:]
    assert body == [
        "  Hello Bob.", "\033[32m+ \033[0m", "\033[32m+ -- \033[0m",
        "\033[32m+ This message was checked by milterkit.\033[0m",
    ]


def test_quarantine_reason_and_recipient_rejection(milter_server: Start) -> None:
    milter = milter_server(EXAMPLES / "quarantine.py")
    done = test_server("-s", milter.spec, "-H", "Subject: please [quarantine] this")
    assert "Quarantine reason: subject asks for quarantine" in done.stdout.splitlines()
    milter = milter_server(EXAMPLES / "reject_recipient.py")
    done = test_server("-s", milter.spec, "-r", "closed@example.com", "-r", "open@example.com",
                       "--output-message", "--color=no")
    lines = without_timing(done.stdout)
    assert lines[:2] == [
        "status: pass",
        "rejected-recipient: <closed@example.com> (reject) [550 5.1.1 This mailbox is closed]",
    ]
    assert "- RCPT TO:<closed@example.com>" in lines and "  RCPT TO:<open@example.com>" in lines


def test_several_messages_sessions_and_verbose_trace(milter_server: Start) -> None:
    milter = milter_server(EXAMPLES / "two_handlers.py")
    done = test_server("-s", milter.spec, "-n", "2", "--sessions", "3", "-t", "2",
                       "--profile", "sendmail", "-v", "-r", "a@example.com",
                       "-r", "b@example.com")
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert [line for line in lines if line.startswith("session:")] == [
        "session: 1", "session: 2", "session: 3"]
    assert lines.count("< add-header X-Recipients: '2'") == 6
    assert lines.count("status: pass") == 6


def test_macros_reach_the_milter(milter_server: Start, tmp_path: Path) -> None:
    filter_file = tmp_path / "echo_macros.py"
    filter_file.write_text(
        "from milterkit import Status\n"
        "def setup(client):\n"
        "    @client.on('envelope-from')\n"
        "    def mail(context, address):\n"
        "        who = context['{auth_authen}']\n"
        "        return context.reject('550', '5.7.1', f'who={who} x={context[\"x\"]}')\n"
    )
    milter = milter_server(filter_file)
    done = test_server("-s", milter.spec, "--authenticated-name", "alice",
                       "--envelope-from-macro", "x:42")
    assert done.stdout.splitlines()[0] == "status: reject [550]<5.7.1>(who=alice x=42)"


def test_unreachable_milter_and_bad_options() -> None:
    done = test_server("-s", f"inet:{free_tcp_port()}@127.0.0.1", "--connection-timeout", "2")
    assert done.returncode == 2
    assert "cannot connect" in done.stderr
    done = test_server("-s", "bogus")
    assert done.returncode == 2 and "colon" in done.stderr


def test_protocol_error_exits_1(tmp_path: Path) -> None:
    import socket
    import threading

    path = str(tmp_path / "bad.sock")
    listener = socket.socket(socket.AF_UNIX)
    listener.bind(path)
    listener.listen(1)

    def bad_milter() -> None:
        connection, _ = listener.accept()
        with connection:
            connection.recv(100)
            connection.sendall(b"\x00\x00\x00\x01c")  # 'c' in answer to OPTNEG
            connection.recv(100)

    thread = threading.Thread(target=bad_milter, daemon=True)
    thread.start()
    done = test_server("-s", f"unix:{path}")
    thread.join(5)
    listener.close()
    assert done.returncode == 1
    assert "in answer to the option negotiation" in done.stderr


@pytest.mark.parametrize("option", ["--reading-timeout", "--all-timeouts"])
def test_reply_timeout_exits_1(tmp_path: Path, option: str) -> None:
    import socket
    import threading

    path = str(tmp_path / "mute.sock")
    listener = socket.socket(socket.AF_UNIX)
    listener.bind(path)
    listener.listen(1)

    def mute_milter() -> None:
        connection, _ = listener.accept()
        with connection:
            connection.settimeout(5)
            try:
                while connection.recv(100):
                    pass
            except OSError:
                pass

    thread = threading.Thread(target=mute_milter, daemon=True)
    thread.start()
    done = test_server("-s", f"unix:{path}", option, "0.2")
    thread.join(6)
    listener.close()
    assert done.returncode == 1
    assert "no reply to negotiate in time" in done.stdout


def test_an_inherited_socket_spec_cannot_be_connected_to() -> None:
    # fd:N is a listening form; test-server must say so, not try ('::1', 0).
    done = subprocess.run(
        [sys.executable, "-m", "milterkit", "test-server", "-s", "fd:5"],
        capture_output=True, text=True, timeout=60,
    )
    assert done.returncode == 2
    assert "fd:5 names an inherited listening socket" in done.stderr
    assert "Traceback" not in done.stderr
