"""dkimpy-milter 1.2.3 from PyPI, unmodified, signs mail behind a private Postfix on milterkit's
pymilter compat layer (pymilter itself is not installed), and the signature verifies with dkimpy
against the key this test generated."""

from __future__ import annotations

import base64
import importlib.util
from collections.abc import Iterator
from pathlib import Path

import pytest
from compatproc import CompatProcess
from postfix import PrivatePostfix, free_port

pytestmark = pytest.mark.postfix

MESSAGE = (
    b"From: Alice <alice@example.net>\r\n"
    b"To: Bob <bob@example.org>\r\n"
    b"Subject: signed through milterkit compat\r\n"
    b"Message-ID: <dkim-test-1@example.net>\r\n"
    b"\r\n"
    b"Hello from dkimpy-milter on milterkit.\r\n"
)


def _keys(directory: Path) -> tuple[Path, bytes]:
    """A fresh 2048-bit RSA key: (private key file, base64 public key for the DNS record)."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    path = directory / "test.key"
    path.write_bytes(key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL,
        serialization.NoEncryption()))
    public = key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return path, base64.b64encode(public)


@pytest.fixture
def signing(tmp_path: Path) -> Iterator[tuple[PrivatePostfix, bytes, CompatProcess]]:
    if importlib.util.find_spec("dkimpy_milter") is None:
        pytest.fail("dkimpy-milter is not installed (.ci/run installs it with --no-deps)")
    if importlib.util.find_spec("milter") is not None:
        pytest.fail("the real pymilter is installed here; this test must run without it")
    keyfile, public = _keys(tmp_path)
    port = free_port()
    conf = tmp_path / "dkimpy-milter.conf"
    conf.write_text(
        "Syslog no\n"
        "Mode s\n"
        "Domain example.net\n"
        "Selector test\n"
        f"KeyFile {keyfile}\n"
        f"Socket inet:{port}@127.0.0.1\n"
        "UserID root\n"
        "InternalHosts 127.0.0.1\n"
    )
    spec = f"inet:{port}@127.0.0.1"
    with CompatProcess(["dkimpy-milter", str(conf)], spec) as proc:
        pf = PrivatePostfix(proc.postfix_spec)
        try:
            pf.start()
            yield pf, public, proc
        finally:
            pf.stop()


def test_dkimpy_milter_signs_mail_that_verifies_with_the_generated_key(
    signing: tuple[PrivatePostfix, bytes, CompatProcess],
) -> None:
    import dkim

    pf, public, proc = signing
    pf.send("alice@example.net", ["bob@example.org"], MESSAGE)
    (delivered,) = pf.wait_delivered(1)
    assert b"DKIM-Signature:" in delivered, proc.log()
    assert b"d=example.net" in delivered and b"s=test" in delivered
    record = b"v=DKIM1; k=rsa; p=" + public
    looked_up: list[bytes] = []

    def dns(name: bytes, timeout: int = 5) -> bytes | None:
        looked_up.append(name)
        return record if name == b"test._domainkey.example.net." else None

    message = delivered.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")
    # Postfix's pipe delivery adds its own headers on top; DKIM ignores unsigned ones.
    assert dkim.verify(message, dnsfunc=dns), proc.log()
    assert looked_up == [b"test._domainkey.example.net."]
    # The same message with its body changed no longer verifies: the check can fail.
    tampered = message.replace(b"Hello from", b"Hullo from")
    assert not dkim.verify(tampered, dnsfunc=dns)
