"""Three composed filters behind the private Postfix, as the issue's "done when" runs them:
``pip install ./examples/plugin-dist && milterkit run --config examples/filters.toml``.

The plugin distribution is installed by pip into a venv; the milter process finds its filters
by their entry points through that venv's site directory, composes them with the built-in
example add_header.py, and Postfix talks to the one milter.
"""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from milterproc import EXAMPLES
from stack import Stack, session

# composelib (next to the composition tests) builds the venv the unit tests use too.
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "compose"))
from composelib import make_plugin_venv

pytestmark = pytest.mark.postfix

MESSAGE = (
    b"From: Alice <alice@example.net>\r\n"
    b"To: Bob <bob@example.org>\r\n"
    b"Subject: three filters\r\n"
    b"\r\n"
    b"Hello.\r\n"
)


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    python = make_plugin_venv(tmp_path_factory.mktemp("plugin-venv"))
    site = subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_path("
                           "'purelib'))"], check=True, capture_output=True, text=True,
                          timeout=60).stdout.strip()
    # The CLI's --listen (the stack's address) wins over the file's [run] listen.
    target = f"--config={EXAMPLES / 'filters.toml'}"
    with Stack(target, env={"PYTHONPATH": site}, sasl_users={"alice": "secret"}) as running:
        yield running


@pytest.fixture(autouse=True)
def _report(stack: Stack) -> Iterator[None]:
    yield
    print(stack.report())  # shown only for a failing test


def wait_for(stack: Stack, queue_id: str | None) -> tuple[bytes, tuple[str, ...]]:
    assert queue_id is not None
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        for delivery in stack.pf.deliveries():
            if delivery.queue_id == queue_id:
                return delivery.data, delivery.recipients
        time.sleep(0.05)
    raise AssertionError(f"{queue_id} not delivered\n{stack.report()}")


def headers(data: bytes) -> list[bytes]:
    return data.partition(b"\n\n")[0].split(b"\n")


def test_three_filters_compose_behind_postfix(stack: Stack) -> None:
    result = session(stack.pf, recipients=("bob@example.org", "nobody@example.org"),
                     message=MESSAGE)
    assert result.rcpt["bob@example.org"][0] == 250
    assert result.rcpt["nobody@example.org"] == (550, b"5.1.1 Recipient address rejected")
    data, recipients = wait_for(stack, result.queue_id)
    assert recipients == ("bob@example.org",)
    # End-of-message changes in filter order: recipient-check's header, then add-header's.
    assert headers(data)[-2:] == [b"X-Recipients-Checked: 1", b"X-Milterkit: yes"]


def test_size_limit_refuses_at_mail(stack: Stack) -> None:
    result = session(stack.pf, mail_options=["SIZE=2000000"], message=MESSAGE)
    assert result.mail == (552, b"5.3.4 Message size exceeds fixed limit")
    result = session(stack.pf, mail_options=["SIZE=2000"], message=MESSAGE)
    assert result.mail is not None and result.mail[0] == 250


def test_recipient_check_does_not_apply_to_authenticated_senders(stack: Stack) -> None:
    """filters.toml gives recipient-check the condition "unauthenticated"."""
    result = session(stack.pf, login=("alice", "secret"),
                     recipients=("nobody@example.org",), message=MESSAGE)
    assert result.auth is not None and result.auth[0] == 235
    assert result.rcpt["nobody@example.org"][0] == 250
    data, _ = wait_for(stack, result.queue_id)
    assert b"X-Recipients-Checked" not in data.partition(b"\n\n")[0]
    assert headers(data)[-1] == b"X-Milterkit: yes"


def test_the_milter_logs_each_filters_verdicts(stack: Stack) -> None:
    # The stack is shared by this module's tests, so look only at what this session logged;
    # the milter writes its summary when Postfix closes the milter connection, a moment
    # after the SMTP session ends.
    before = len(stack.milter.log())
    session(stack.pf, message=MESSAGE)
    deadline = time.monotonic() + 10
    ended: list[str] = []
    while not ended and time.monotonic() < deadline:
        ended = [line for line in stack.milter.log()[before:].splitlines()
                 if "session ended" in line and "1 message" in line]
        if not ended:
            time.sleep(0.05)
    log = stack.milter.log()[before:]
    assert "filter verdicts: size-limit: continue 1; recipient-check: continue 1; " \
        "add-header: continue 1" in log
    assert "composed 3 filter(s): size-limit, recipient-check, add-header" in stack.milter.log()
    # The runtime's one-line session summary carries them too.
    assert len(ended) == 1 and ended[0].endswith(
        "; filters: size-limit: continue 1; recipient-check: continue 1; add-header: continue 1")
