"""Differential test: the same Milter.Base filters under the real pymilter (C extension on
libmilter) and under milterkit's compat layer must write the same reply bytes for the same MTA
byte streams, over many generated sessions.

The real pymilter lives in its own virtualenv (``.ci/run`` builds it from PyPI against Debian's
libmilter-dev); ``MILTERKIT_PYMILTER_PYTHON`` names its interpreter. Without it the test is
skipped, except in CI (``MILTERKIT_REQUIRE_POSTFIX=1``), where it fails.
"""

from __future__ import annotations

import os
import random
import zlib
from collections.abc import Iterator
from pathlib import Path

import pytest
from compatproc import COMPAT_FILTERS, CompatProcess, PlainProcess

from milterkit.protocol import commands as cmd
from milterkit.testing import Message, Submission, run_session
from milterkit.testing.server import Connection

FILTER = COMPAT_FILTERS / "differential.py"
SESSIONS = 30
CLASSES = ["Everything", "NoReplies", "OnlyEom", "Inherited", "Protocols", "Macros", "AllOpts",
           "Raises"]


def _pymilter_python() -> str:
    python = os.environ.get("MILTERKIT_PYMILTER_PYTHON")
    if not python:
        message = "MILTERKIT_PYMILTER_PYTHON is not set (a venv with pymilter from PyPI)"
        if os.environ.get("MILTERKIT_REQUIRE_POSTFIX"):
            pytest.fail(message)
        pytest.skip(message)
    return python


def _message(rng: random.Random) -> Submission:
    sender = rng.choice(["alice", "alice", "reject", "tempfail", "accept", "discard",
                         "mlreply", "mismatch"]) + "@example.net"
    recipients = [rng.choice(["bob", "bad1", "temp1", "gone", "carol", "boom"]) + "@example.org"
                  for _ in range(rng.randint(1, 3))]
    actions = rng.sample(["add", "insert", "change", "delete", "rcpt", "rcptpar", "delrcpt",
                          "body", "from", "frompar", "quarantine", "progress", "reject",
                          "tempfail", "discard", "continue"], rng.randint(0, 4))
    headers = [("Subject", f"test {rng.randint(0, 999)}"), ("X-Eom", ",".join(actions) or "none")]
    if rng.random() < 0.2:
        headers.append(("X-Skip", "yes"))
    if rng.random() < 0.1:
        headers.append(("X-Reject-Header", "yes"))
    if rng.random() < 0.2:
        headers.append(("X-Folded", "first\n\tsecond"))
    size = rng.choice([0, 10, 3000, 70000])
    body = bytes(rng.choice(b"abcdefgh \r\n") for _ in range(size))
    message = Message.build(sender=sender, recipients=recipients, headers=headers, body=body)
    chunks = None
    size = len(message.body)  # bare LF became CRLF
    if size > 10 and rng.random() < 0.5:
        # An MTA never sends a BODY chunk over 65535 bytes (libmilter closes on one).
        cut = rng.randint(max(1, size - 65535), min(size - 1, 65535))
        chunks = [message.body[:cut], message.body[cut:]]
    unknown = "XFOO bar" if rng.random() < 0.1 else None
    return Submission(message, chunks=chunks, unknown=unknown)


def _sessions(seed: int) -> list[tuple[Connection, list[Submission]]]:
    rng = random.Random(seed)
    found = []
    for _ in range(SESSIONS):
        host = rng.choice(["mx.example.net", "mx.example.net", "reject.example.net"])
        helo = rng.choice(["client.example", "client.example", "tempfail.example", None])
        address = rng.choice([cmd.SocketAddress("4", "192.0.2.7", 4567),
                              cmd.SocketAddress("6", "2001:db8::7", 4567)])
        messages = [_message(rng) for _ in range(rng.randint(1, 3))]
        found.append((Connection(host, address, helo), messages))
    return found


def _transcript(spec: str, connection: Connection, messages: list[Submission]) -> list[
    tuple[str, list[bytes]]
]:
    result = run_session(spec, messages, check=False, connection=connection)
    lines = [(type(x.command).__name__, [r.to_bytes() for r in x.replies])
             for x in result.exchanges]
    if result.error is not None:
        lines.append(("error", [type(result.error).__name__.encode()]))
    return lines


@pytest.fixture(params=CLASSES)
def pair(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[str, str, str]]:
    python = _pymilter_python()
    name = request.param
    extra = ["REJECT"] if name == "Raises" else []
    real_spec = f"unix:{tmp_path}/real.sock"
    ours_spec = f"unix:{tmp_path}/ours.sock"
    real = PlainProcess([python, str(FILTER), real_spec, name, *extra], real_spec)
    ours = CompatProcess([str(FILTER), ours_spec, name, *extra], ours_spec)
    with real, ours:
        yield name, real_spec, ours_spec


def test_compat_writes_the_same_reply_bytes_as_real_pymilter(
    pair: tuple[str, str, str],
) -> None:
    name, real_spec, ours_spec = pair
    seed = zlib.crc32(name.encode()) + int(os.environ.get("MILTERKIT_DIFFERENTIAL_SEED", "0"))
    for number, (connection, messages) in enumerate(_sessions(seed)):
        theirs = _transcript(real_spec, connection, messages)
        ours = _transcript(ours_spec, connection, messages)
        if ours != theirs:
            pairs = enumerate(zip(ours, theirs, strict=False))
            diff = [f"{i}: ours {o} theirs {t}" for i, (o, t) in pairs if o != t]
            pytest.fail(f"{name}, session {number} ({connection}, {len(messages)} messages) "
                        f"differs from pymilter:\n" + "\n".join(diff[:3])
                        + f"\nfull transcript (pymilter): {theirs}", pytrace=False)
