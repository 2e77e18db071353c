"""Helpers of the manager tests: OpenDKIM with a key made here, the documented example
configuration rewritten for a test's ports and paths, DKIM verification with dkimpy."""

from __future__ import annotations

import re
import shutil
import subprocess
import time
from pathlib import Path

import pytest
from milterproc import EXAMPLES
from stack import Stack

HERE = Path(__file__).resolve().parents[1]
FILTERS = HERE / "filters"
EXAMPLE_DIR = EXAMPLES / "manager"

MESSAGE = (
    b"From: Alice <alice@example.net>\r\n"
    b"To: Bob <bob@example.org>\r\n"
    b"Subject: through the manager\r\n"
    b"Message-ID: <manager-test@example.net>\r\n"
    b"\r\n"
    b"Hello from behind the milter manager.\r\n"
)


def need_opendkim() -> None:
    """Fail (not skip) when OpenDKIM is missing: .ci/run installs it."""
    for program in ("opendkim", "opendkim-genkey"):
        if shutil.which(program) is None:
            pytest.fail(f"{program} is not installed: apt-get install -y opendkim "
                        "opendkim-tools (.ci/run does)")


def make_key(directory: Path, selector: str = "test", domain: str = "example.net") -> bytes:
    """A fresh key made by opendkim-genkey; returns the DNS record's text."""
    subprocess.run(["opendkim-genkey", "-b", "2048", "-d", domain, "-s", selector, "-D",
                    str(directory)], check=True, timeout=60)
    text = (directory / f"{selector}.txt").read_text()
    parts = re.findall(r'"([^"]*)"', text)
    return "".join(parts).encode()


def opendkim_conf(directory: Path, port: int) -> Path:
    """examples/manager/opendkim.conf with this test's key and port."""
    text = (EXAMPLE_DIR / "opendkim.conf").read_text()
    text = text.replace("/etc/dkimkeys/test.private", str(directory / "test.private"))
    text = text.replace("inet:8891@127.0.0.1", f"inet:{port}@127.0.0.1")
    path = directory / "opendkim.conf"
    path.write_text(text)
    return path


def example_config(directory: Path, port: int, conf: Path, extra: str = "") -> Path:
    """examples/manager/manager.toml with this test's OpenDKIM port and configuration, plus
    ``extra`` TOML (more [[milter]] tables), as a file in ``directory``."""
    text = (EXAMPLE_DIR / "manager.toml").read_text()
    text = text.replace("inet:8891@127.0.0.1", f"inet:{port}@127.0.0.1")
    text = text.replace("/etc/opendkim/opendkim.conf", str(conf))
    text = text.replace('use = "../add_header.py"', f'use = "{EXAMPLES / "add_header.py"}"')
    path = directory / "manager.toml"
    path.write_text(text + extra)
    return path


def verify(delivered: bytes, record: bytes) -> bool:
    """Whether ``delivered`` carries a DKIM signature that verifies with ``record``."""
    import dkim

    def dns(name: bytes, timeout: int = 5) -> bytes | None:
        return record if name == b"test._domainkey.example.net." else None

    message = delivered.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")
    return bool(dkim.verify(message, dnsfunc=dns))


def delivered(stack: Stack, queue_id: str | None, timeout: float = 15.0) -> bytes:
    """The delivered message with ``queue_id``."""
    assert queue_id is not None, stack.report()
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for delivery in stack.pf.deliveries():
            if delivery.queue_id == queue_id:
                return delivery.data
        time.sleep(0.05)
    raise AssertionError(f"{queue_id} not delivered\n{stack.report()}")


def header_block(data: bytes) -> bytes:
    return data.replace(b"\r\n", b"\n").partition(b"\n\n")[0]


def wait_log(stack: Stack, text: str, timeout: float = 10.0) -> str:
    """The manager's log once it contains ``text``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        log = stack.milter.log()
        if text in log:
            return log
        time.sleep(0.05)
    raise AssertionError(f"{text!r} not in the manager's log\n{stack.report()}")
