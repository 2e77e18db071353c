"""Proof that the private-Postfix harness works, with a raw-socket milter.

The milter here is deliberately *not* milterkit: a few lines of socketserver
speaking just enough of the protocol, so these tests validate the harness
(and Postfix's behaviour) independently of the library under test.
"""

from __future__ import annotations

import os
import smtplib
import socket
import socketserver
import struct
import sys
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

# Import the harness next to this file whatever pytest's import mode is.
_HERE = str(Path(__file__).resolve().parent)
if _HERE not in sys.path:
    sys.path.insert(0, _HERE)

from postfix import PrivatePostfix, postfix_available  # noqa: E402

_OK, _REASON = postfix_available()
pytestmark = [
    pytest.mark.postfix,
    pytest.mark.skipif(
        not _OK,
        reason=f"postfix not usable ({_REASON}): run apt-get install -y postfix miltertest",
    ),
]

MESSAGE = (
    b"From: Alice <alice@example.net>\r\n"
    b"To: Bob <bob@example.org>\r\n"
    b"Subject: harness test\r\n"
    b"\r\n"
    b"Hello from the harness.\r\n"
)

# milter protocol (see /work/shared/reference/protocol.md, Part 1)
SMFI_VERSION = 6
SMFIF_ADDHDRS = 0x01
SMFIF_QUARANTINE = 0x20
CONTINUE = b"c"


def _packet(cmd: bytes, payload: bytes = b"") -> bytes:
    """uint32 BE length (command byte + payload), command byte, payload."""
    return struct.pack(">I", 1 + len(payload)) + cmd + payload


def _recv_exact(sock: socket.socket, size: int) -> bytes | None:
    buf = b""
    while len(buf) < size:
        chunk = sock.recv(size - len(buf))
        if not chunk:
            return None
        buf += chunk
    return buf


class RawMilter:
    """A minimal milter server in a background thread.

    Continues every event, adds ``X-Harness: yes`` at end of message,
    optionally rejects every RCPT with ``rcpt_reply`` and/or quarantines
    every message at end of message.  Records the macros Postfix sends
    (``D`` packets) per command byte, and the command bytes received.
    """

    def __init__(
        self,
        unix_path: Path | None = None,
        rcpt_reply: bytes | None = None,
        quarantine: bytes | None = None,
    ) -> None:
        self.rcpt_reply = rcpt_reply
        self.quarantine = quarantine
        self.actions = SMFIF_ADDHDRS | (SMFIF_QUARANTINE if quarantine is not None else 0)
        self.macros: dict[str, dict[str, str]] = {}
        self.commands: list[str] = []
        self._lock = threading.Lock()
        milter = self

        class Handler(socketserver.BaseRequestHandler):
            def handle(self) -> None:
                milter.serve(self.request)

        self.server: socketserver.BaseServer
        if unix_path is None:
            tcp = socketserver.ThreadingTCPServer(("127.0.0.1", 0), Handler)
            self.spec = f"inet:127.0.0.1:{tcp.server_address[1]}"
            self.server = tcp
        else:
            self.server = socketserver.ThreadingUnixStreamServer(str(unix_path), Handler)
            # smtpd runs as user "postfix": it needs write access to the socket
            os.chmod(unix_path, 0o666)
            self.spec = f"unix:{unix_path}"
        self.server.daemon_threads = True
        self._thread = threading.Thread(
            target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )

    def __enter__(self) -> RawMilter:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()
        self._thread.join(5)

    def serve(self, sock: socket.socket) -> None:
        while True:
            header = _recv_exact(sock, 4)
            if header is None:
                return
            (length,) = struct.unpack(">I", header)
            body = _recv_exact(sock, length)
            if body is None or not body:
                return
            cmd, payload = body[:1], body[1:]
            with self._lock:
                self.commands.append(cmd.decode("latin-1"))
            if cmd == b"O":
                sock.sendall(_packet(b"O", struct.pack(">III", SMFI_VERSION, self.actions, 0)))
            elif cmd == b"D":
                parts = payload[1:].split(b"\0")
                pairs = dict(zip(parts[0::2], parts[1::2], strict=False))
                with self._lock:
                    stage = self.macros.setdefault(payload[:1].decode("latin-1"), {})
                    stage.update({k.decode(): v.decode(errors="replace") for k, v in pairs.items()})
            elif cmd == b"R" and self.rcpt_reply is not None:
                sock.sendall(_packet(b"y", self.rcpt_reply + b"\0"))
            elif cmd in b"CHMRTLNBU":
                sock.sendall(_packet(CONTINUE))
            elif cmd == b"E":
                reply = _packet(b"h", b"X-Harness\0yes\0")
                if self.quarantine is not None:
                    reply += _packet(b"q", self.quarantine + b"\0")
                sock.sendall(reply + _packet(CONTINUE))
            elif cmd == b"Q":
                return
            # "A" (abort) and anything else: no reply


@pytest.fixture
def socket_dir() -> Iterator[Path]:
    """A directory user postfix can traverse (pytest's tmp_path is 0700)."""
    path = Path(tempfile.mkdtemp(prefix="milterkit-sock-"))
    path.chmod(0o755)
    yield path
    for child in path.iterdir():
        child.unlink()
    path.rmdir()


def _show_log(pf: PrivatePostfix) -> None:
    # printed during teardown: pytest shows it only if the test failed
    print("\n".join(pf.log_lines()))


def test_delivery_without_milter() -> None:
    with PrivatePostfix() as pf:
        try:
            result = pf.send("alice@example.net", ["bob@example.org"], MESSAGE)
            assert result["data"][0] == 250
            assert result["queue_id"]
            (delivery,) = pf.wait_deliveries(1, timeout=8)
            assert delivery.queue_id == result["queue_id"]
            assert delivery.sender == "alice@example.net"
            assert delivery.recipients == ("bob@example.org",)
            assert b"Subject: harness test\n" in delivery.data
            assert delivery.data.endswith(b"\n\nHello from the harness.\n")
            # Postfix's own Received: header comes first
            assert delivery.data.startswith(b"Received: from client.example.net")
        finally:
            _show_log(pf)
        assert pf.processes()
    assert not pf.processes()
    assert not pf.root.exists()


def test_milter_adds_header_over_tcp() -> None:
    with RawMilter() as milter, PrivatePostfix(smtpd_milters=milter.spec) as pf:
        try:
            pf.send("alice@example.net", "bob@example.org", MESSAGE)
            (data,) = pf.wait_delivered(1, timeout=8)
            assert b"\nX-Harness: yes\n" in data
            assert b"Subject: harness test\n" in data
            # Postfix's default macros (protocol.md 2.2)
            assert milter.macros["C"]["j"] == "mx.example.org"
            assert milter.macros["C"]["{daemon_name}"] == "mx.example.org"
            assert "i" in milter.macros["E"]
        finally:
            _show_log(pf)


def test_milter_adds_header_over_unix_socket(socket_dir: Path) -> None:
    path = socket_dir / "milter.sock"
    with RawMilter(unix_path=path) as milter, PrivatePostfix(smtpd_milters=milter.spec) as pf:
        try:
            pf.send("alice@example.net", "bob@example.org", MESSAGE)
            (data,) = pf.wait_delivered(1, timeout=8)
            assert b"\nX-Harness: yes\n" in data
        finally:
            _show_log(pf)


def test_milter_rejects_rcpt() -> None:
    with (
        RawMilter(rcpt_reply=b"550 5.7.1 Go away") as milter,
        PrivatePostfix(smtpd_milters=milter.spec) as pf,
    ):
        try:
            with pytest.raises(smtplib.SMTPRecipientsRefused) as excinfo:
                pf.send("alice@example.net", ["bob@example.org"], MESSAGE)
            assert excinfo.value.recipients == {"bob@example.org": (550, b"5.7.1 Go away")}
            assert pf.deliveries() == []
            assert pf.wait_log(r"milter-reject: RCPT from .*550 5.7.1 Go away")
        finally:
            _show_log(pf)


def test_instances_run_one_after_another() -> None:
    ports = []
    for _ in range(2):
        with PrivatePostfix() as pf:
            ports.append(pf.port)
            pf.send("alice@example.net", "bob@example.org", MESSAGE)
            assert len(pf.wait_delivered(1, timeout=8)) == 1
        assert not pf.processes()
    assert len(ports) == 2


def test_quarantine_lands_in_hold_queue() -> None:
    with (
        RawMilter(quarantine=b"held by test") as milter,
        PrivatePostfix(smtpd_milters=milter.spec) as pf,
    ):
        try:
            result = pf.send("alice@example.net", "bob@example.org", MESSAGE)
            assert result["data"][0] == 250  # the client sees a normal accept
            assert pf.wait_hold(1) == [result["queue_id"]]
            assert result["queue_id"] is not None
            content = pf.queue_message(result["queue_id"])
            assert content.startswith(b"Received: ")  # header + body only, no postcat labels
            assert b"X-Harness: yes\n" in content  # EOM modifications are kept
            assert b"Subject: harness test\n" in content
            # Postfix 3.7 does not log the quarantine reason
            assert pf.wait_log(r"milter-hold: END-OF-MESSAGE .*milter triggers HOLD action")
            assert pf.deliveries() == []
            pf.release(result["queue_id"])
            (delivery,) = pf.wait_deliveries(1, timeout=8)
            assert delivery.queue_id == result["queue_id"]
            assert pf.hold_queue() == []
        finally:
            _show_log(pf)


def test_sasl_auth_macros() -> None:
    with (
        RawMilter() as milter,
        PrivatePostfix(smtpd_milters=milter.spec, sasl_users={"alice": "secret"}) as pf,
    ):
        try:
            with pf.connect() as smtp:
                with pytest.raises(smtplib.SMTPAuthenticationError) as excinfo:
                    smtp.login("alice", "wrong")
                assert excinfo.value.smtp_code == 535
                smtp.login("alice", "secret")
                smtp.sendmail("alice@example.net", ["bob@example.org"], MESSAGE)
            pf.wait_delivered(1, timeout=8)
            assert milter.macros["M"]["{auth_authen}"] == "alice"
            assert milter.macros["M"]["{auth_type}"] == "PLAIN"
        finally:
            _show_log(pf)
