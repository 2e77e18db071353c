"""purepythonmilter 0.0.1's examples, unmodified, behind a real (private) Postfix: served by
``milterkit compat purepythonmilter`` and by the real purepythonmilter in turn, on the same
milter address. The SMTP replies and the delivered messages are the same."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from postfix import PrivatePostfix, free_port
from ppmlib import AppProcess
from stack import session

pytestmark = pytest.mark.postfix

MESSAGE = (
    b"From: Alice <alice@example.net>\r\n"
    b"To: Bob <bob@example.org>\r\n"
    b"Subject: purepythonmilter examples behind Postfix\r\n"
    b"\r\n"
    b"Hello from the compatibility tests.\r\n"
)
PORT = free_port()


@pytest.fixture(scope="module")
def postfix() -> Iterator[PrivatePostfix]:
    with PrivatePostfix(f"inet:127.0.0.1:{PORT}") as running:
        yield running


#: Headers Postfix writes itself, different for every message.
_OWN = (b"Received:", b"Message-Id:", b"Date:")


def delivered(pf: PrivatePostfix, queue_id: str | None) -> bytes:
    """The delivered message without the headers Postfix added (queue id, time)."""
    assert queue_id is not None
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        found = [d.data for d in pf.deliveries() if d.queue_id == queue_id]
        if found:
            break
        time.sleep(0.05)
    else:
        raise AssertionError(f"{queue_id} was not delivered")
    head, _, body = found[0].partition(b"\n\n")
    kept: list[bytes] = []
    skipping = False
    for line in head.split(b"\n"):
        if line[:1] not in (b" ", b"\t"):
            skipping = line.startswith(_OWN)
        if not skipping:
            kept.append(line)
    return b"\n".join(kept) + b"\n\n" + body


CASES = {
    "append_header_ip": ([], b"X-MilterExample-Connect-IP: 127.0.0.1\n"),
    "change_body": (["--newbody", "The milter was here."], b"\n\nThe milter was here."),
    "debug_log_all": ([], b"\n\nHello from the compatibility tests.\n"),
}


@pytest.mark.parametrize("name", list(CASES))
def test_example_behind_postfix_matches_purepythonmilter(
    name: str, postfix: PrivatePostfix, examples: dict[str, Path], reference: Path
) -> None:
    args, expected = CASES[name]
    seen = {}
    for kind in ("reference", "compat"):
        with AppProcess(kind, examples[name], args, reference=reference, port=PORT) as app:
            result = session(postfix, message=MESSAGE)
            log = app.log()
        assert result.data is not None and result.data[0] == 250, (result, log)
        seen[kind] = (result.mail, result.rcpt, result.data[0], delivered(postfix,
                                                                          result.queue_id))
    assert expected in seen["compat"][3]
    assert seen["compat"] == seen["reference"]
