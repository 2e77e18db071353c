"""Helpers for the purepythonmilter compatibility tests.

- :func:`reference_python`: a Python with the real purepythonmilter 0.0.1 (and click) from PyPI,
  in a venv of its own: ``$MILTERKIT_PPM_REFERENCE`` (``.ci/run`` builds it), else one built on
  first use under ``~/.cache``. Without it the tests skip, or fail under
  ``MILTERKIT_REQUIRE_PPM=1`` (CI).
- :func:`example_files`: the three example applications, copied unmodified out of that install.
- :class:`AppProcess`: one application served either by the reference (``python app.py``) or by
  ``milterkit compat purepythonmilter app.py``, on a free loopback port.
- :func:`drive`: an MTA that plays a script of raw packets and records every reply.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType

import pytest

from milterkit.protocol import ProtocolFlag as P
from milterkit.protocol.framing import PacketDecoder, encode_packet
from milterkit.protocol.replies import ChangeHeader, NegotiateReply, decode_reply

HERE = Path(__file__).resolve().parents[1]
APPS = HERE / "apps"
EXAMPLES = ("append_header_ip", "change_body", "debug_log_all")
REQUIRE = "MILTERKIT_PPM_REQUIRE"
_READY = "awaiting connections on"


def _unavailable(reason: str) -> None:
    if os.environ.get(REQUIRE, "") not in ("", "0"):
        pytest.fail(f"{reason} ({REQUIRE}=1 forbids skipping)", pytrace=False)
    pytest.skip(reason)


def reference_python() -> Path:
    """A launcher of this Python that imports the real purepythonmilter 0.0.1 (and click).

    The packages live in a ``pip install --target`` directory (no venv module needed):
    ``$MILTERKIT_PPM_REFERENCE`` if set (``.ci/run`` fills it), else one installed from PyPI on
    first use under ``~/.cache``. The launcher puts that directory first on ``PYTHONPATH``.
    """
    given = os.environ.get("MILTERKIT_PPM_REFERENCE")
    target = Path(given) if given else Path.home() / ".cache" / "milterkit-tests" / "ppm-0.0.1"
    launcher = target / "python-with-purepythonmilter"
    if not (target / "purepythonmilter").is_dir() or not (target / "click").is_dir():
        if given:
            _unavailable(f"$MILTERKIT_PPM_REFERENCE={given} has no purepythonmilter and click")
        try:
            subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--target", str(target),
                            "purepythonmilter==0.0.1", "click"], check=True, capture_output=True,
                           timeout=300)
        except (OSError, subprocess.SubprocessError) as exc:
            _unavailable(f"cannot install purepythonmilter 0.0.1 from PyPI: {exc}")
    launcher.write_text(f'#!/bin/sh\nPYTHONPATH="{target}" exec "{sys.executable}" "$@"\n')
    launcher.chmod(0o755)
    return launcher


def example_files(python: Path, into: Path) -> dict[str, Path]:
    """Copy the examples' ``__main__.py`` out of the reference install, byte for byte."""
    found = subprocess.run(
        [str(python), "-c", "import purepythonmilter, os; "
         "print(os.path.dirname(purepythonmilter.__file__))"],
        check=True, capture_output=True, text=True,
    ).stdout.strip()
    files = {}
    for name in EXAMPLES:
        target = into / f"{name}.py"
        shutil.copyfile(Path(found) / "examples" / name / "__main__.py", target)
        files[name] = target
    return files


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class AppProcess:
    """A purepythonmilter application on ``127.0.0.1:port``: ``reference`` or ``compat``."""

    def __init__(self, kind: str, app: Path, args: Sequence[str] = (),
                 reference: Path | None = None, port: int | None = None) -> None:
        self.port = port or free_port()
        self.kind = kind
        if kind == "reference":
            assert reference is not None
            argv = [str(reference), str(app)]
        else:
            argv = [sys.executable, "-m", "milterkit", "compat", "purepythonmilter", str(app)]
        self.argv = [*argv, "--bind-host", "127.0.0.1", "--bind-port", str(self.port), *args]
        fd, name = tempfile.mkstemp(prefix=f"ppm-{kind}-", suffix=".log")
        os.close(fd)
        self.log_path = Path(name)
        self.process: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 20.0) -> AppProcess:
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        with open(self.log_path, "wb") as log:
            self.process = subprocess.Popen(self.argv, stdin=subprocess.DEVNULL, stdout=log,
                                            stderr=log, env=env)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"{self.argv} exited {self.process.returncode}\n{self.log()}")
            if _READY in self.log():
                return self
            time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"{self.argv} did not listen in {timeout} s\n{self.log()}")

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self) -> None:
        proc = self.process
        if proc is not None and proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)
        self.process = None

    @property
    def spec(self) -> str:
        return f"inet:{self.port}@127.0.0.1"

    def __enter__(self) -> AppProcess:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()
        with contextlib.suppress(FileNotFoundError):
            self.log_path.unlink()


# ---------------------------------------------------------------------- raw MTA driver

#: Command byte -> (NO_* flag, NR_* flag) of the commands the MTA may leave out or not wait for.
_STEPS = {
    b"C": (P.NO_CONNECT, P.NO_REPLY_CONNECT), b"H": (P.NO_HELO, P.NO_REPLY_HELO),
    b"M": (P.NO_ENVELOPE_FROM, P.NO_REPLY_ENVELOPE_FROM),
    b"R": (P.NO_ENVELOPE_RECIPIENT, P.NO_REPLY_ENVELOPE_RECIPIENT),
    b"T": (P.NO_DATA, P.NO_REPLY_DATA), b"L": (P.NO_HEADERS, P.NO_REPLY_HEADER),
    b"N": (P.NO_END_OF_HEADER, P.NO_REPLY_END_OF_HEADER), b"B": (P.NO_BODY, P.NO_REPLY_BODY),
    b"U": (P.NO_UNKNOWN, P.NO_REPLY_UNKNOWN),
}
_FINAL = frozenset(b"acdfrsty")
OFFER = encode_packet(b"O", (6).to_bytes(4, "big") + (0x1FF).to_bytes(4, "big")
                      + (0x1FFFFF).to_bytes(4, "big"))

Packet = tuple[bytes, bytes]
#: Macro-list stage number -> the command byte whose macros it selects.
_LIST_STAGES = {0: b"C", 1: b"H", 2: b"M", 3: b"R", 4: b"T", 5: b"E", 6: b"N"}


def _only_listed(payload: bytes, lists: dict[bytes, set[str]]) -> Packet:
    stage, items = payload[:1], payload[1:].removesuffix(b"\0").split(b"\0")
    if stage not in lists or not payload[1:]:
        return (b"D", payload)
    pairs = zip(items[::2], items[1::2], strict=True)
    kept = [(k, v) for k, v in pairs if k.decode() in lists[stage]]
    return (b"D", stage + b"".join(k + b"\0" + v + b"\0" for k, v in kept))


def _normal(reply: object) -> str:
    # Both MTAs read CHGHEADER index 0 as 1; milterkit writes 1 where purepythonmilter wrote 0.
    if isinstance(reply, ChangeHeader) and reply.index == 0:
        reply = ChangeHeader(1, reply.name, reply.value)
    return repr(reply)


def drive(port: int, script: Sequence[Packet], timeout: float = 5.0) -> tuple[
        NegotiateReply, list[tuple[str, list[str]]]]:
    """Negotiate, then send ``script`` as an MTA would (leaving out what the milter opted out
    of, waiting only for the replies it owes); returns the negotiate reply and a transcript."""
    transcript: list[tuple[str, list[str]]] = []
    decoder = PacketDecoder(1 << 20)
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(OFFER)

        def read_until_final() -> list[str] | None:
            got: list[str] = []
            while True:
                packets = decoder.decode(b"")
                while not packets:
                    try:
                        data = sock.recv(65536)
                    except TimeoutError:
                        return [*got, "<timeout>"]
                    if not data:
                        return [*got, "<closed>"]
                    packets = decoder.decode(data)
                for code, payload in packets:
                    if code == b"O":
                        return [*got, payload.hex()]
                    got.append(_normal(decode_reply(code, payload)))
                    if code[0] in _FINAL:
                        return got

        first = read_until_final()
        assert first is not None and len(first) == 1, first
        raw = bytes.fromhex(first[0])
        negotiated = decode_reply(b"O", raw)
        assert isinstance(negotiated, NegotiateReply)
        protocol = negotiated.protocol
        # As Postfix does: a macro list in the reply replaces what the MTA would send.
        lists = {_LIST_STAGES[int(stage)]: set(names.split())
                 for stage, names in negotiated.macros.items()}
        pending_macros: list[Packet] = []
        skipping: bytes | None = None  # after a verdict: skip up to this command (A or Q)
        for code, payload in script:
            if skipping is not None:
                if code != skipping and code != b"Q":
                    continue
                skipping = None
            if code == b"D":
                pending_macros.append(_only_listed(payload, lists))
                continue
            no_event, no_reply = _STEPS.get(code, (P.NONE, P.NONE))
            macros, pending_macros = pending_macros, []
            if no_event and protocol & no_event:
                continue  # the MTA does not send what the milter opted out of
            sock.sendall(b"".join(encode_packet(*packet) for packet in [*macros, (code, payload)]))
            if code in (b"A", b"Q", b"K") or (no_reply and protocol & no_reply):
                transcript.append((code.decode(), []))
                continue
            replies = read_until_final() or []
            transcript.append((code.decode(), replies))
            if replies and replies[-1] in ("<closed>", "<timeout>"):
                break
            # As an MTA does: a verdict ends the connection (C, H) or the message (M...B); a
            # refused recipient is just that recipient.
            if replies and replies[-1] not in ("Continue()", "Skip()") and code != b"R":
                skipping = b"Q" if code in (b"C", b"H") else b"A"
        with contextlib.suppress(OSError):
            sock.settimeout(1.0)
            tail = sock.recv(65536)
            if tail:
                transcript.append(("<after>", [tail.hex()]))
    return negotiated, transcript
