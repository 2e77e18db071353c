"""Scripted sessions against the real purepythonmilter and against ``milterkit compat``: the
same hooks are called with the same command objects, and the MTA gets the same replies.

The apps in ``apps/`` use every hook, response and manipulation. Known, documented differences
are normalized or compared separately: milterkit writes CHGHEADER index 1 where purepythonmilter
writes 0 (both MTAs read them alike), and an empty ``restrict_symbols`` list is honoured by
hiding that stage's macros instead of sending an empty list.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from ppmlib import APPS, AppProcess, Packet, drive

from milterkit.protocol import ActionFlag
from milterkit.protocol.replies import NegotiateReply


def braced(stage: bytes, pairs: dict[str, str]) -> Packet:
    return (b"D", stage + b"".join(k.encode() + b"\0" + v.encode() + b"\0"
                                   for k, v in pairs.items()))


CONNECT = (b"C", b"mx.example.net\x004\xc3\x50192.0.2.7\x00")
CONNECT_MACROS = braced(b"C", {"j": "mail.example.com", "{daemon_addr}": "127.0.0.1"})


def helo(name: str) -> Packet:
    return (b"H", name.encode() + b"\0")


def mail(address: str, *args: str) -> Packet:
    return (b"M", b"".join(part.encode() + b"\0" for part in (f"<{address}>", *args)))


def rcpt(address: str, *args: str) -> Packet:
    return (b"R", b"".join(part.encode() + b"\0" for part in (f"<{address}>", *args)))


def header(name: str, value: str) -> Packet:
    return (b"L", name.encode() + b"\0" + value.encode() + b"\0")


def message(sender: str = "sender@example.com", verdict: str = "",
            headers: tuple[tuple[str, str], ...] = (("Subject", "hello"), ("X-Drop", "me")),
            body: tuple[bytes, ...] = (b"line one\r\n", b"line two\r\n")) -> list[Packet]:
    packets = [
        braced(b"M", {"{mail_addr}": sender, "i": "QID1"}),
        mail(sender, "BODY=8BITMIME", "SIZE=100", "SMTPUTF8"),
        braced(b"R", {"{rcpt_addr}": "receiver@example.org"}),
        rcpt("receiver@example.org", "NOTIFY=SUCCESS,FAILURE"),
        rcpt("nobody@example.org"),
        braced(b"T", {"i": "QID1"}),
        (b"T", b""),
        *(header(name, value) for name, value in headers),
        (b"N", b""),
        *((b"B", chunk) for chunk in body),
        braced(b"E", {"i": "QID1", "{verdict}": verdict}),
        (b"E", b""),
        (b"A", b""),
    ]
    return packets


START = [CONNECT_MACROS, CONNECT, braced(b"H", {}), helo("client.example.net")]
QUIT = [(b"Q", b"")]

SCRIPTS: dict[str, list[Packet]] = {
    "one message, every manipulation": [*START, *message(), *QUIT],
    "two messages on one connection": [*START, *message(), *message(verdict="accept"), *QUIT],
    "end-of-message reject": [*START, *message(verdict="reject"), *QUIT],
    "end-of-message discard": [*START, *message(verdict="discard"), *QUIT],
    "sender verdicts": [*START, *message("reject@example.com"), *message("accept@example.com"),
                        *message("discard@example.com"), *message("later@example.com"),
                        *message("coded@example.com"), *QUIT],
    "header discard": [*START, *message(headers=(("Subject", "x"), ("X-Verdict", " discard"))),
                       *QUIT],
    "body skip": [*START, *message(body=(b"SKIP the rest\r\n", b"never seen\r\n")), *QUIT],
    "helo rejected with a code": [CONNECT_MACROS, CONNECT, helo("reject.example"), *QUIT],
    "connection accepted": [(b"C", b"[10.0.0.1]\x004\x01\xbb10.0.0.1\x00"), *QUIT],
    "unknown command": [*START, braced(b"U", {}), (b"U", b"HELP me\x00"), *QUIT],
    "unix socket and IPv6 clients": [
        (b"C", b"localhost\x00L\x00\x00/run/smtp.sock\x00"), *QUIT],
}


def run_both(app: Path, script: list[Packet], reference: Path, tmp_path: Path
             ) -> dict[str, tuple[NegotiateReply, list[tuple[str, list[str]]], list[str]]]:
    results = {}
    for kind in ("reference", "compat"):
        events = tmp_path / f"{kind}.events"
        events.write_text("")
        with AppProcess(kind, app, ["--events", str(events)], reference=reference) as proc:
            negotiated, transcript = drive(proc.port, script)
            log = proc.log()
        assert "Traceback" not in log, log
        results[kind] = (negotiated, transcript, events.read_text().splitlines())
    return results


@pytest.mark.parametrize("name", list(SCRIPTS))
def test_every_hook_session_matches_purepythonmilter(
    name: str, reference: Path, tmp_path: Path
) -> None:
    results = run_both(APPS / "every_hook.py", SCRIPTS[name], reference, tmp_path)
    ref_negotiated, ref_transcript, ref_events = results["reference"]
    negotiated, transcript, events = results["compat"]
    assert negotiated == ref_negotiated
    assert transcript == ref_transcript
    assert events == ref_events
    assert events, "the hooks were called"


def test_no_reply_hooks_match_purepythonmilter(reference: Path, tmp_path: Path) -> None:
    """Hooks annotated ``-> None`` get no-reply steps; macro lists as restrict_symbols says."""
    script = [*START, *message(headers=(("Subject", "  two leading spaces"),)), *QUIT]
    results = run_both(APPS / "no_reply.py", script, reference, tmp_path)
    ref_negotiated, ref_transcript, ref_events = results["reference"]
    negotiated, transcript, events = results["compat"]
    assert negotiated.version == ref_negotiated.version
    assert negotiated.protocol == ref_negotiated.protocol
    # purepythonmilter also sends the empty lists; milterkit hides those stages' macros instead.
    assert negotiated.actions == ActionFlag.SET_SYMBOL_LIST
    assert {stage: names for stage, names in ref_negotiated.macros.items()
            if names} == dict(negotiated.macros)
    assert transcript == ref_transcript
    assert events == ref_events
