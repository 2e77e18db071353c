"""Every action and verdict milterkit sends, checked where it matters: in what Postfix delivers
and in what the SMTP client is told.

One private Postfix and one ``milterkit run tests/integration/filters/scripted.py`` serve the
whole module; each test steers the filter through the message it sends (``X-Do:`` headers,
``<verdict>-at-<stage>`` tokens, see the filter's docstring).
"""

from __future__ import annotations

import json
import smtplib
from collections.abc import Iterator

import pytest
from milterproc import FILTERS
from stack import Stack, session

pytestmark = pytest.mark.postfix

SCRIPTED = FILTERS / "scripted.py"
SASL_USERS = {"alice": "secret"}


@pytest.fixture(scope="module")
def stack() -> Iterator[Stack]:
    with Stack(SCRIPTED, sasl_users=SASL_USERS) as running:
        yield running


@pytest.fixture(autouse=True)
def _report(stack: Stack) -> Iterator[None]:
    # Printed at teardown: pytest shows it only when the test failed.
    yield
    print(stack.report())


def do(*actions: list[object]) -> bytes:
    """``X-Do:`` header lines, one per action."""
    return b"".join(b"X-Do: " + json.dumps(action).encode() + b"\r\n" for action in actions)


def message(extra_headers: bytes = b"", body: bytes = b"Hello.\r\n",
            subject: str = "original subject") -> bytes:
    return (
        b"From: Alice <alice@example.net>\r\n"
        b"To: Bob <bob@example.org>\r\n"
        + f"Subject: {subject}\r\n".encode()
        + extra_headers
        + b"\r\n"
        + body
    )


def delivered(stack: Stack, queue_id: str | None) -> tuple[bytes, tuple[str, ...], str]:
    """The delivered message with this queue id: data, recipients, sender."""
    assert queue_id is not None
    for _ in range(2):
        for delivery in stack.pf.wait_deliveries(1, timeout=10):
            if delivery.queue_id == queue_id:
                return delivery.data, delivery.recipients, delivery.sender
        # delivered in several parts? wait for more
        stack.pf.wait_log(rf"{queue_id}: removed", timeout=10)
    raise AssertionError(f"message {queue_id} was not delivered")


def header_block(data: bytes) -> list[bytes]:
    """The header lines of a delivered message (LF line endings, as Postfix's pipe writes)."""
    head, _, _ = data.partition(b"\n\n")
    return head.split(b"\n")


def recipient_records(envelope: str, recipient: str) -> list[str]:
    """The ``postcat`` records that belong to ``recipient``: those after the previous one."""
    lines = [line.strip() for line in envelope.split("*** MESSAGE CONTENTS")[0].splitlines()]
    end = lines.index(f"recipient: {recipient}")
    start = end
    while start > 0 and not lines[start - 1].startswith(("recipient: ", "sender: ")):
        start -= 1
    return [line for line in lines[start:end] if not line.startswith("named_attribute: log_")
            and "client" not in line and "server_" not in line and "helo" not in line
            and "protocol" not in line and "rewrite_context" not in line]


# ---------------------------------------------------------------------------- headers


def test_add_insert_change_delete_headers(stack: Stack) -> None:
    extra = (
        b"X-Delete-Me: first\r\n"
        b"X-Delete-Me: second\r\n"
        + do(
            ["add_header", "X-Added", "added value"],
            ["insert_header", 0, "X-Inserted", "at the top"],
            ["change_header", "Subject", 1, "changed subject"],
            ["delete_header", "X-Delete-Me", 1],
            ["add_header", "X-Folded", "line one\n\tline two"],
        )
    )
    result = session(stack.pf, message=message(extra))
    assert result.data is not None and result.data[0] == 250, result
    data, _, _ = delivered(stack, result.queue_id)
    lines = header_block(data)
    # index 0 is the very top, above Postfix's own Received: header (which the milter never saw)
    assert lines[0] == b"X-Inserted: at the top"
    assert lines[1].startswith(b"Received: from client.example.net")
    assert b"Subject: changed subject" in lines
    assert b"Subject: original subject" not in lines
    # the first X-Delete-Me went, the second stayed
    assert [line for line in lines if line.startswith(b"X-Delete-Me")] == [b"X-Delete-Me: second"]
    # added headers go to the end, in the order they were sent
    assert lines[-3:] == [b"X-Added: added value", b"X-Folded: line one", b"\tline two"]


def test_leading_space_rule_without_leadspc(stack: Stack) -> None:
    """Without HDR_LEADSPC Postfix strips one space from values it sends and adds one to ours."""
    extra = (
        b"X-Spaces:   three spaces\r\n"
        b"X-Tab:\ttab first\r\n"
        b"X-None:none\r\n"
        + do(
            ["add_header", "X-Ours", "plain"],
            ["add_header", "X-Ours-Space", " one space"],
            ["change_header", "X-None", 1, "changed"],
            ["report"],
        )
    )
    result = session(stack.pf, message=message(extra))
    data, _, _ = delivered(stack, result.queue_id)
    lines = header_block(data)
    seen = [line for line in lines if line.startswith(b"X-Seen-Header: ")]
    # what reached the filter: one leading space removed, a tab kept, nothing to remove: nothing
    assert b"X-Seen-Header: X-Spaces=[  three spaces]" in seen
    assert b"X-Seen-Header: X-Tab=[\ttab first]" in seen
    assert b"X-Seen-Header: X-None=[none]" in seen
    # what arrived: one space added before every value we sent
    assert b"X-Ours: plain" in lines
    assert b"X-Ours-Space:  one space" in lines
    assert b"X-None: changed" in lines


def test_leading_space_rule_with_leadspc(stack: Stack) -> None:
    """With HDR_LEADSPC negotiated both directions are verbatim."""
    extra = (
        b"X-Spaces:   three spaces\r\n"
        b"X-None:none\r\n"
        + do(
            ["add_header", "X-Ours", "no space"],
            ["add_header", "X-Ours-Space", " one space"],
            ["change_header", "X-None", 1, " changed"],
            ["report"],
        )
    )
    with stack.serving(SCRIPTED, env={"SCRIPTED_LEADING_SPACE": "1"}):
        result = session(stack.pf, message=message(extra))
    data, _, _ = delivered(stack, result.queue_id)
    lines = header_block(data)
    # our report headers are verbatim too: no space after the colon
    assert b"X-Seen-Header:X-Spaces=[   three spaces]" in lines
    assert b"X-Seen-Header:X-None=[none]" in lines
    assert b"X-Ours:no space" in lines
    assert b"X-Ours-Space: one space" in lines
    assert b"X-None: changed" in lines


# ---------------------------------------------------------------------------- envelope


def test_add_recipients_with_and_without_esmtp_args(stack: Stack) -> None:
    extra = do(
        ["add_recipient", "<carol@example.org>"],
        ["add_recipient", "<dave@example.org>", "NOTIFY=NEVER ORCPT=rfc822;dave@example.org"],
        ["quarantine", "hold to read the envelope"],
    )
    result = session(stack.pf, message=message(extra))
    assert result.queue_id is not None, result
    # Held, so that the queue file (with the DSN attributes of each recipient) can be read.
    assert result.queue_id in stack.pf.wait_hold(1)
    envelope = stack.pf.queue_envelope(result.queue_id)
    # NOTIFY=NEVER is Postfix's DSN_NOTIFY_NEVER (1); ORCPT becomes the original recipient
    assert recipient_records(envelope, "dave@example.org") == [
        "named_attribute: notify_flags=1",
        "named_attribute: dsn_orig_rcpt=rfc822;dave@example.org",
        "original_recipient: dave@example.org",
    ]
    assert recipient_records(envelope, "carol@example.org") == [
        "original_recipient: carol@example.org",
    ]
    stack.pf.release(result.queue_id)
    _, recipients, _ = delivered(stack, result.queue_id)
    assert sorted(recipients) == ["bob@example.org", "carol@example.org", "dave@example.org"]


def test_delete_recipient(stack: Stack) -> None:
    extra = do(["delete_recipient", "<carol@example.org>"])
    result = session(stack.pf, recipients=["bob@example.org", "carol@example.org"],
                     message=message(extra))
    _, recipients, _ = delivered(stack, result.queue_id)
    assert recipients == ("bob@example.org",)


def test_change_sender(stack: Stack) -> None:
    extra = do(["change_from", "<bounces@example.org>"])
    result = session(stack.pf, message=message(extra))
    data, _, sender = delivered(stack, result.queue_id)
    assert sender == "bounces@example.org"
    assert b"From: Alice <alice@example.net>" in data  # the header From: is not the envelope


def test_change_sender_with_esmtp_args(stack: Stack) -> None:
    extra = do(["change_from", "<bounces@example.org>", "RET=HDRS ENVID=milterkit-1"],
               ["quarantine", "hold to read the envelope"])
    result = session(stack.pf, message=message(extra))
    assert result.queue_id in stack.pf.wait_hold(1)
    envelope = stack.pf.queue_envelope(result.queue_id)
    assert "sender: bounces@example.org" in envelope
    assert "named_attribute: envelope_id=milterkit-1" in envelope
    assert "named_attribute: ret_flags=2" in envelope  # DSN_RET_HDRS
    stack.pf.release(result.queue_id)
    delivered(stack, result.queue_id)


# ---------------------------------------------------------------------------- body


@pytest.mark.parametrize("size", [0, 100, 65535, 65536, 300_000])
def test_replace_body(stack: Stack, size: int) -> None:
    from filters.scripted import body_of

    original = b"The original body.\r\n" * 5000  # 100 KB: arrives in two chunks
    result = session(stack.pf, message=message(do(["replace_body", size]), body=original))
    data, _, _ = delivered(stack, result.queue_id)
    _, _, body = data.partition(b"\n\n")
    # Postfix stores lines without CR (the body was sent with CRLF, and a CRLF split between
    # two 'b' packets at 65535 bytes is still one line end) and ends a last partial line.
    expected = body_of(size).replace(b"\r\n", b"\n")
    if expected and not expected.endswith(b"\n"):
        expected += b"\n"
    assert body == expected


# ---------------------------------------------------------------------------- verdicts

STAGES = ["connect", "helo", "envelope-from", "envelope-recipient", "data", "header",
          "end-of-header", "body", "end-of-message"]


def _steered(stage: str, verdict: str) -> dict[str, object]:
    """Where the ``<verdict>-at-<stage>`` token goes so the filter sees it before ``stage``."""
    token = f"{verdict}-at-{stage}"
    if stage == "connect":
        return {"xclient": f"NAME={token}.test"}
    if stage == "helo":
        return {"helo": f"{token}.test"}
    if stage == "envelope-from":
        return {"sender": f"{token}@example.net"}
    if stage in ("envelope-recipient", "data"):
        return {"recipients": [f"{token}@example.org"]}
    if stage in ("header", "end-of-header"):
        return {"message": message(f"X-Plan: {token}\r\n".encode())}
    return {"message": message(body=f"{token}\r\n".encode())}


@pytest.mark.parametrize("verdict", ["reject", "tempfail"])
@pytest.mark.parametrize("stage", STAGES)
def test_verdict_with_multiline_reply_reaches_client(
    stack: Stack, stage: str, verdict: str
) -> None:
    from filters.scripted import reply_lines

    code, xcode, lines = reply_lines(verdict, stage)
    expected = (int(code), "\n".join(f"{xcode} {line}" for line in lines).encode())
    kwargs: dict[str, object] = {"message": message()}
    kwargs.update(_steered(stage, verdict))
    result = session(stack.pf, **kwargs)  # type: ignore[arg-type]
    if stage in ("connect", "helo"):
        # Postfix answers MAIL (and every later command) with the milter's reply.
        assert result.mail == expected, result
    elif stage == "envelope-from":
        assert result.mail == expected, result
    elif stage == "envelope-recipient":
        assert list(result.rcpt.values()) == [expected], result
    else:
        # DATA itself (data stage) or the end of DATA (content stages)
        assert result.data == expected, result
    assert result.queue_id is None
    # '??' is how Postfix logs the line breaks of a multi-line reply
    logged = stack.pf.wait_log(rf"milter-reject: .*{xcode} {verdict} at {stage}\?\?")
    assert logged, "Postfix did not log the milter's reply"


@pytest.mark.parametrize("verdict", ["reject", "tempfail"])
def test_verdict_at_unknown_command(stack: Stack, verdict: str) -> None:
    """Postfix passes an unknown SMTP command to the milter and answers with its reply."""
    from filters.scripted import reply_lines

    code, xcode, lines = reply_lines(verdict, "unknown")
    result = session(stack.pf, unknown=f"{verdict}-at-unknown", message=message())
    assert result.unknown == (int(code), "\n".join(f"{xcode} {line}" for line in lines).encode())
    assert result.data is not None and result.data[0] == 250  # the session goes on


def test_reject_one_recipient_of_several(stack: Stack) -> None:
    result = session(
        stack.pf, recipients=["bob@example.org", "reject-this@example.org", "carol@example.org"],
        message=message(),
    )
    assert result.rcpt["reject-this@example.org"] == (
        550, b"5.1.1 <reject-this@example.org> refused by the filter")
    assert result.rcpt["bob@example.org"][0] == 250
    _, recipients, _ = delivered(stack, result.queue_id)
    assert sorted(recipients) == ["bob@example.org", "carol@example.org"]


def test_discard(stack: Stack) -> None:
    result = session(stack.pf, message=message(do(["discard"])))
    assert result.data is not None and result.data[0] == 250  # the client is told "queued"
    queue_id = result.queue_id
    assert stack.pf.wait_log(rf"{queue_id}: milter-discard: END-OF-MESSAGE")
    # cleanup dropped it before answering: it is in no queue and was never delivered
    assert all(entry["queue_id"] != queue_id for entry in stack.pf.queue_listing())
    assert all(d.queue_id != queue_id for d in stack.pf.deliveries())


def test_quarantine_puts_message_on_hold(stack: Stack) -> None:
    result = session(stack.pf, message=message(do(["quarantine", "looks odd"],
                                                  ["add_header", "X-Held", "yes"])))
    queue_id = result.queue_id
    assert queue_id is not None and queue_id in stack.pf.wait_hold(1)
    assert stack.pf.wait_log(rf"{queue_id}: milter-hold: END-OF-MESSAGE .*HOLD action")
    assert b"X-Held: yes" in stack.pf.queue_message(queue_id)
    assert all(d.queue_id != queue_id for d in stack.pf.deliveries())
    stack.pf.release(queue_id)
    data, _, _ = delivered(stack, queue_id)
    assert b"\nX-Held: yes\n" in data


# ---------------------------------------------------------------------------- session


def test_macros_postfix_sends(stack: Stack) -> None:
    result = session(stack.pf, login=("alice", "secret"), message=message(do(["report"])))
    assert result.auth is not None and result.auth[0] == 235
    data, _, _ = delivered(stack, result.queue_id)
    seen = {line.split(b" ", 1)[1] for line in header_block(data)
            if line.startswith(b"X-Seen-Macro: ")}
    assert b"C j=[mx.example.org]" in seen
    assert b"C {daemon_name}=[mx.example.org]" in seen
    assert b"M {auth_authen}=[alice]" in seen
    assert b"M {auth_type}=[PLAIN]" in seen
    assert f"E i=[{result.queue_id}]".encode() in seen
    assert b"R {rcpt_addr}=[bob@example.org]" in seen


def test_macro_lists_requested_by_the_filter(stack: Stack) -> None:
    """A list the milter asks for at negotiation replaces main.cf's list for that stage."""
    env = {"SCRIPTED_MACROS": "connect={client_addr} {client_port};envelope-from={mail_addr}"}
    with stack.serving(SCRIPTED, env=env):
        result = session(stack.pf, message=message(do(["report"])))
    data, _, _ = delivered(stack, result.queue_id)
    seen = {line.split(b" ", 1)[1] for line in header_block(data)
            if line.startswith(b"X-Seen-Macro: ")}
    connect = {macro for macro in seen if macro.startswith(b"C ")}
    assert {macro.split(b"=")[0] for macro in connect} == {b"C {client_addr}", b"C {client_port}"}
    assert b"C {client_addr}=[127.0.0.1]" in connect
    mail = {macro.split(b"=")[0] for macro in seen if macro.startswith(b"M ")}
    assert mail == {b"M {mail_addr}"}
    # stages the filter did not ask for keep main.cf's lists
    assert f"E i=[{result.queue_id}]".encode() in seen


def test_two_messages_on_one_smtp_connection(stack: Stack) -> None:
    with stack.pf.connect() as smtp:
        first = session(stack.pf, smtp=smtp, message=message(do(["report"]), subject="one"))
        second = session(stack.pf, smtp=smtp, message=message(do(["report"]), subject="two"))
    assert first.queue_id and second.queue_id and first.queue_id != second.queue_id
    one, _, _ = delivered(stack, first.queue_id)
    two, _, _ = delivered(stack, second.queue_id)
    # one milter connection per SMTP session: the second message is the context's second
    assert b"X-Seen-Message-Number: 1" in header_block(one)
    assert b"X-Seen-Message-Number: 2" in header_block(two)
    assert f"E i=[{second.queue_id}]".encode() in two
    assert b"X-Seen-Header: Subject=[two]" in header_block(two)


# ---------------------------------------------------------------------------- failures


def test_handler_exception_default_policy(stack: Stack) -> None:
    result = session(stack.pf, message=message(do(["add_header", "X-Lost", "x"], ["raise"])))
    assert result.data == (451, b"4.3.0 Temporary failure in the mail filter")


def test_handler_exception_reject_policy_with_own_reply(stack: Stack) -> None:
    options = ["--exception-policy", "reject", "--exception-reply",
               "554 5.7.0 The filter broke; this is on us"]
    with stack.serving(SCRIPTED, options) as milter:
        result = session(stack.pf, message=message(do(["raise"])))
        assert "the scripted filter was told to raise" in milter.log()
    assert result.data == (554, b"5.7.0 The filter broke; this is on us")


def test_smtplib_sees_rejected_sender(stack: Stack) -> None:
    """The same verdict through smtplib's own API, as an application would see it."""
    with pytest.raises(smtplib.SMTPSenderRefused) as excinfo:
        stack.pf.send("reject-at-envelope-from@example.net", "bob@example.org", message())
    assert excinfo.value.smtp_code == 550
    assert excinfo.value.smtp_error.startswith(b"5.7.1 reject at envelope-from\n")
