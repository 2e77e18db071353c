"""Re-record the Postfix captures in this directory.

Starts a private Postfix (tests/integration/postfix.py), ``milterkit run capture_filter.py`` and
``milterkit capture`` between them, then plays three SMTP sessions:

- ``postfix-no-message.mkcap``: the harness's readiness probe, a client that connects and quits;
- ``postfix-one-message.mkcap``: one message to one recipient;
- ``postfix-two-messages.mkcap``: two messages on one SMTP connection (ABORT between them);
- ``postfix-reject-rcpt.mkcap``: one recipient refused at RCPT, the other accepted.

Run as root on a machine with Postfix:  python tests/data/record_captures.py
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "integration"))

from postfix import PrivatePostfix  # noqa: E402

from milterkit.tools.capture_format import MILTER_CLOSED, MTA_CLOSED, read_capture  # noqa: E402

MESSAGE = (
    b"From: Alice <alice@example.net>\r\n"
    b"To: Bob <bob@example.org>\r\n"
    b"Subject: captured\r\n"
    b"Message-ID: <capture-{n}@example.net>\r\n"
    b"\r\n"
    b"Hello Bob,\r\nthis message is recorded.\r\n"
)
NAMES = ["postfix-no-message.mkcap", "postfix-one-message.mkcap", "postfix-two-messages.mkcap",
         "postfix-reject-rcpt.mkcap"]


def message(n: int) -> bytes:
    return MESSAGE.replace(b"{n}", str(n).encode())


def wait_for_socket(path: Path, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        if time.monotonic() > deadline:
            raise TimeoutError(f"{path} did not appear")
        time.sleep(0.05)


def wait_complete(directory: Path, count: int, timeout: float = 15.0) -> list[Path]:
    """Wait until ``count`` capture files exist with both sides closed."""
    deadline = time.monotonic() + timeout
    while True:
        files = sorted(directory.glob("*.mkcap"))
        done = [f for f in files if {MTA_CLOSED, MILTER_CLOSED} <= {
            r.kind for r in read_capture(f).records}]
        if len(done) >= count:
            return done
        if time.monotonic() > deadline:
            raise TimeoutError(f"{len(done)} of {count} captures complete in {directory}")
        time.sleep(0.05)


def main() -> int:
    out = HERE / "captures-new"
    out.mkdir(exist_ok=True)
    for old in out.glob("*.mkcap"):
        old.unlink()
    postfix = PrivatePostfix(smtpd_milters=None)
    milter_sock = postfix.socket_path("milter.sock")
    proxy_sock = postfix.socket_path("capture.sock")
    postfix.smtpd_milters = f"unix:{proxy_sock}"
    run = subprocess.Popen([sys.executable, "-m", "milterkit", "run",
                            str(HERE / "capture_filter.py"), "-l", f"unix:{milter_sock}",
                            "--socket-mode", "666", "--log-level", "warning"])
    capture = subprocess.Popen([sys.executable, "-m", "milterkit", "capture",
                                "-l", f"unix:{proxy_sock}", "-u", f"unix:{milter_sock}",
                                "-o", str(out), "--socket-mode", "666",
                                "--log-level", "warning"])
    try:
        wait_for_socket(milter_sock)
        wait_for_socket(proxy_sock)
        with postfix:
            wait_complete(out, 1)  # start() probes the SMTP port: one milter session
            postfix.send("alice@example.net", "bob@example.org", message(1))
            postfix.wait_delivered(1)
            wait_complete(out, 2)
            with postfix.connect() as smtp:
                smtp.sendmail("alice@example.net", ["bob@example.org"], message(2))
                smtp.sendmail("alice@example.net", ["carol@example.org"], message(3))
                smtp.quit()
            postfix.wait_delivered(3)
            wait_complete(out, 3)
            result = postfix.send("alice@example.net",
                                  ["closed@example.org", "bob@example.org"], message(4))
            assert "closed@example.org" in result["refused"], result
            postfix.wait_delivered(4)
            files = wait_complete(out, 4)[:4]
    finally:
        for process in (capture, run):
            process.terminate()
            process.wait(10)
    for source, name in zip(files, NAMES, strict=True):
        source.replace(HERE / name)
        print(f"recorded {name}")
    out.rmdir()
    return 0


if __name__ == "__main__":
    sys.exit(main())
