"""The examples under ``examples/``, each served by ``milterkit run`` behind a private Postfix.

One Postfix per transport (a unix socket with group ``postfix``, and loopback TCP) serves the
module; :meth:`stack.Stack.serving` puts each example behind it in turn. What is checked is what
an SMTP client is told and what Postfix delivers.
"""

from __future__ import annotations

import grp
import os
import smtplib
import stat
import time
from collections.abc import Iterator

import pytest
from milterproc import EXAMPLES, FILTERS, MilterProcess
from postfix import PrivatePostfix
from stack import Stack, session

pytestmark = pytest.mark.postfix

MESSAGE = (
    b"From: Alice <alice@example.net>\r\n"
    b"To: Bob <bob@example.org>\r\n"
    b"Subject: examples behind Postfix\r\n"
    b"\r\n"
    b"Hello from the integration tests.\r\n"
)
#: Postfix's own reply when its milter cannot be reached and milter_default_action=tempfail.
MILTER_DOWN = (451, b"4.7.1 Service unavailable - try again later")


def _stack(transport: str) -> Stack:
    # A short command timeout so that the progress test can outlast it; nothing else comes near.
    return Stack(EXAMPLES / "add_header.py", transport=transport, milter_command_timeout=1)


@pytest.fixture(scope="module")
def stack() -> Iterator[Stack]:
    """Postfix with its milter on a unix socket (group postfix, mode 0660)."""
    with _stack("unix") as running:
        yield running


@pytest.fixture(scope="module")
def tcp_stack() -> Iterator[Stack]:
    """Postfix with its milter on a loopback TCP port."""
    with _stack("tcp") as running:
        yield running


@pytest.fixture(params=["unix", "tcp"])
def any_stack(request: pytest.FixtureRequest) -> Stack:
    """Each transport in turn, for the tests that run over both."""
    name = "stack" if request.param == "unix" else "tcp_stack"
    running: Stack = request.getfixturevalue(name)
    return running


@pytest.fixture(autouse=True)
def _report(request: pytest.FixtureRequest) -> Iterator[None]:
    yield
    # shown by pytest only for a failing test
    for name in ("stack", "tcp_stack"):
        if name in request.fixturenames:
            print(request.getfixturevalue(name).report())


def deliveries_for(stack: Stack, queue_id: str | None) -> tuple[bytes, tuple[str, ...]]:
    assert queue_id is not None
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        for delivery in stack.pf.deliveries():
            if delivery.queue_id == queue_id:
                return delivery.data, delivery.recipients
        time.sleep(0.05)
    raise AssertionError(f"{queue_id} not delivered\n{stack.report()}")


def headers(data: bytes) -> list[bytes]:
    return data.partition(b"\n\n")[0].split(b"\n")


def test_add_header(any_stack: Stack) -> None:
    """add_header.py over both transports: the header is the last one of the message."""
    result = session(any_stack.pf, message=MESSAGE)
    data, _ = deliveries_for(any_stack, result.queue_id)
    assert headers(data)[-1] == b"X-Milterkit: yes"
    assert data.endswith(b"\n\nHello from the integration tests.\n")


def test_add_header_two_messages_one_connection(any_stack: Stack) -> None:
    with any_stack.pf.connect() as smtp:
        first = session(any_stack.pf, smtp=smtp, message=MESSAGE)
        second = session(any_stack.pf, smtp=smtp, message=MESSAGE.replace(b"Hello", b"Again"))
    for result in (first, second):
        data, _ = deliveries_for(any_stack, result.queue_id)
        assert headers(data).count(b"X-Milterkit: yes") == 1


def test_socket_in_queue_directory_by_relative_path() -> None:
    """The layout docs/postfix.rst recommends: the socket in a root:postfix 0750 directory
    under Postfix's queue directory, group postfix, mode 0660, named relative to the queue
    directory in main.cf -- which works whether or not smtpd runs chrooted there."""
    pf = PrivatePostfix(smtpd_milters="unix:milterkit/milter.sock")
    directory = pf.queue_dir / "milterkit"
    directory.mkdir(parents=True)
    pf.queue_dir.chmod(0o755)
    os.chown(directory, 0, grp.getgrnam("postfix").gr_gid)
    directory.chmod(0o750)
    milter = MilterProcess(EXAMPLES / "add_header.py", f"unix:{directory / 'milter.sock'}",
                           ["--socket-group", "postfix", "--socket-mode", "0660"])
    try:
        milter.start()
        info = os.stat(directory / "milter.sock")
        assert stat.S_IMODE(info.st_mode) == 0o660
        assert info.st_gid == grp.getgrnam("postfix").gr_gid
        pf.start()
        result = session(pf, message=MESSAGE)
        (data,) = pf.wait_delivered(1, timeout=10)
        assert result.queue_id is not None
        assert headers(data)[-1] == b"X-Milterkit: yes"
    finally:
        print("\n".join(pf.log_lines()), milter.log())
        pf.stop()
        milter.close()


def test_milter_restarts_between_messages(stack: Stack) -> None:
    """Postfix opens a milter connection per SMTP session: a restarted milter is found again.

    While it is down, Postfix applies milter_default_action (tempfail here) to the session
    that finds no milter, and to a session whose milter connection went away.
    """
    milter = stack.milter
    with stack.pf.connect() as smtp:
        before = session(stack.pf, smtp=smtp, message=MESSAGE)
        pid = milter.process.pid if milter.process else None
        milter.stop()  # SIGTERM: the idle session is closed after --shutdown-timeout
        # the SMTP session outlives its milter: the next message gets the default action
        orphan = session(stack.pf, smtp=smtp, message=MESSAGE)
    down = session(stack.pf, message=MESSAGE)
    milter.start()
    after = session(stack.pf, message=MESSAGE)

    assert before.queue_id is not None
    # add_header.py asked Postfix not to send MAIL or RCPT, so the loss shows at end of DATA
    assert orphan.mail == (250, b"2.1.0 Ok") and orphan.data == MILTER_DOWN, orphan
    assert stack.pf.wait_log(r"milter unix:.*: can't read SMFIC_BODYEOB reply packet header")
    assert orphan.queue_id is None
    # a new session while nothing listens: smtpd cannot connect and answers every command so
    assert down.mail == MILTER_DOWN and down.queue_id is None, down
    assert stack.pf.wait_log(r"warning: connect to Milter service unix:.*milter\.sock")
    assert milter.process is not None and milter.process.pid != pid
    for result in (before, after):
        data, _ = deliveries_for(stack, result.queue_id)
        assert headers(data)[-1] == b"X-Milterkit: yes"


def test_reject_sender_multiline(stack: Stack) -> None:
    with stack.serving(EXAMPLES / "reject_sender.py"):
        refused = session(stack.pf, sender="anyone@spam.example", message=MESSAGE)
        accepted = session(stack.pf, sender="anyone@example.net", message=MESSAGE)
    assert refused.mail == (550, b"5.7.1 Mail from spam.example is not accepted here.\n"
                                 b"5.7.1 If you think this is a mistake,\n"
                                 b"5.7.1 write to postmaster@example.com.")
    assert accepted.queue_id is not None
    deliveries_for(stack, accepted.queue_id)


def test_reject_sender_through_smtplib(stack: Stack) -> None:
    with stack.serving(EXAMPLES / "reject_sender.py"), \
            pytest.raises(smtplib.SMTPSenderRefused) as excinfo:
        stack.pf.send("anyone@junk.example", "bob@example.org", MESSAGE)
    assert excinfo.value.smtp_code == 550


def test_reject_one_recipient_of_several(stack: Stack) -> None:
    with stack.serving(EXAMPLES / "reject_recipient.py"):
        result = session(stack.pf, message=MESSAGE, recipients=[
            "bob@example.org", "closed@example.com", "carol@example.org"])
    assert result.rcpt["closed@example.com"] == (550, b"5.1.1 This mailbox is closed")
    _, recipients = deliveries_for(stack, result.queue_id)
    assert sorted(recipients) == ["bob@example.org", "carol@example.org"]


@pytest.mark.parametrize("lines", [1, 20_000])  # 20000 lines: 1.1 MB, many 64 KiB chunks
def test_replace_body_keeps_body_and_adds_footer(stack: Stack, lines: int) -> None:
    body = b"".join(b"line %06d of the original body, long enough to matter\r\n" % i
                    for i in range(lines))
    with stack.serving(EXAMPLES / "replace_body.py"):
        result = session(stack.pf, message=MESSAGE.replace(
            b"Hello from the integration tests.\r\n", body))
    data, _ = deliveries_for(stack, result.queue_id)
    expected = body + b"\r\n-- \r\nThis message was checked by milterkit.\r\n"
    assert data.partition(b"\n\n")[2] == expected.replace(b"\r\n", b"\n")


def test_quarantine_holds_message(stack: Stack) -> None:
    held_message = MESSAGE.replace(b"Subject: examples", b"Subject: [Quarantine] examples")
    with stack.serving(EXAMPLES / "quarantine.py"):
        held = session(stack.pf, message=held_message)
        passed = session(stack.pf, message=MESSAGE)
    assert held.queue_id in stack.pf.wait_hold(1)
    assert stack.pf.wait_log(rf"{held.queue_id}: milter-hold: END-OF-MESSAGE")
    deliveries_for(stack, passed.queue_id)
    assert all(d.queue_id != held.queue_id for d in stack.pf.deliveries())
    stack.pf.release(str(held.queue_id))
    deliveries_for(stack, held.queue_id)


def test_two_handlers(stack: Stack) -> None:
    with stack.serving(EXAMPLES / "two_handlers.py"):
        result = session(stack.pf, message=MESSAGE,
                         recipients=["bob@example.org", "carol@example.org"])
    data, _ = deliveries_for(stack, result.queue_id)
    body = b"Hello from the integration tests.\r\n"
    assert headers(data)[-2:] == [b"X-Body-Size: %d" % len(body), b"X-Recipients: 2"]


def test_progress_lookup_explicit_progress(stack: Stack) -> None:
    with stack.serving(EXAMPLES / "progress_lookup.py"):
        result = session(stack.pf, message=MESSAGE,
                         recipients=["alice@example.com", "nobody@example.com"])
    assert result.rcpt == {"alice@example.com": (250, b"2.1.5 Ok"),
                           "nobody@example.com": (550, b"5.1.1 No such user here")}
    deliveries_for(stack, result.queue_id)


def test_coroutine_handler_outlasts_postfix_timeout_with_progress(stack: Stack) -> None:
    """A 2.5 s lookup against Postfix's 1 s milter_command_timeout: keep-alives every 0.25 s
    keep Postfix waiting, and the coroutine's late verdict reaches the SMTP client."""
    with stack.serving(FILTERS / "slow_lookup.py", ["--progress-interval", "0.25"]):
        started = time.monotonic()
        result = session(stack.pf, message=MESSAGE,
                         recipients=["nobody@example.com", "bob@example.com"])
        elapsed = time.monotonic() - started
    assert result.rcpt == {"nobody@example.com": (550, b"5.1.1 No such user here"),
                           "bob@example.com": (250, b"2.1.5 Ok")}
    assert elapsed >= 5.0  # both lookups really took their time
    deliveries_for(stack, result.queue_id)


def test_coroutine_handler_without_progress_times_out(stack: Stack) -> None:
    """The control: without keep-alives Postfix gives up after 1 s (milter_default_action)."""
    with stack.serving(FILTERS / "slow_lookup.py", env={"SLOW_LOOKUP_DELAY": "1.5"}):
        result = session(stack.pf, message=MESSAGE, recipients=["bob@example.com"])
    assert result.rcpt == {"bob@example.com": MILTER_DOWN}
    assert stack.pf.wait_log(r"milter unix:.*: can't read SMFIC_RCPT reply packet header")
