"""The greylist, class_filter and plugin_registry examples, driven for real: in-process through
milterkit.testing (the ``milter`` fixture, InProcess), over a real socket against ``milterkit
run`` (``milter_server``), and, for the registry's offline mode, as a subprocess."""

from __future__ import annotations

import dataclasses
import importlib.util
import itertools
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from milterkit import ClientContext, Status
from milterkit.protocol import (
    Abort,
    ActionFlag,
    Body,
    Connect,
    Data,
    EndOfHeader,
    Header,
    Helo,
    MacroStage,
    Mail,
    Negotiate,
    NegotiateReply,
    ProtocolFlag,
    Quit,
    Rcpt,
    SocketAddress,
)
from milterkit.protocol.replies import Continue, Skip
from milterkit.testing import (
    InProcess,
    Message,
    SMTPClient,
    Submission,
    assert_header_added,
    assert_not_modified,
    assert_recipient_rejected,
    assert_verdict,
)
from milterkit.testing.pytest_plugin import MilterProcess

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples"
CAPTURES = ROOT / "tests" / "data"
Milter = Callable[..., InProcess]
Server = Callable[..., MilterProcess]
_loads = itertools.count()


def load_example(name: str) -> ModuleType:
    """A fresh copy of an example module (its own registry, its own greylist)."""
    module_name = f"more_examples_{name}_{next(_loads)}"
    spec = importlib.util.spec_from_file_location(module_name, EXAMPLES / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module  # dataclasses look their module up here
    spec.loader.exec_module(module)
    return module


def example(name: str) -> str:
    return str(EXAMPLES / f"{name}.py")


def milter_writes(runner: InProcess, messages: Any, **options: Any) -> tuple[Any, bytes]:
    """Run a session; return its result and every byte the milter wrote."""
    written = bytearray()

    def tap(side: str, data: bytes) -> None:
        if side == "milter":
            written.extend(data)

    runner.tap = tap
    try:
        return runner.run(messages, **options), bytes(written)
    finally:
        runner.tap = None


# ------------------------------------------------------------------ greylist

GREYLIST_REPLY = "451 4.7.1 Greylisted, please try again in 300 seconds"


class Clock:
    """A clock a test moves by hand."""

    def __init__(self) -> None:
        self.now = 1_700_000_000.0

    def __call__(self) -> float:
        return self.now


def greylist_runner(**options: Any) -> tuple[Any, Clock, InProcess]:
    module = load_example("greylist")
    clock = Clock()
    greylist = module.Greylist(300, clock=clock)
    return greylist, clock, InProcess(greylist.install, **options)


def test_greylist_asks_for_its_macros_and_the_default_options() -> None:
    _, _, runner = greylist_runner()
    result, written = milter_writes(runner, Message.build())
    # ALL_OPTIONS: every offered action; events nobody handles are switched off; SKIP kept.
    expected = NegotiateReply(
        6, ActionFlag.ALL,
        ProtocolFlag.NO_HELO | ProtocolFlag.NO_DATA | ProtocolFlag.NO_HEADERS
        | ProtocolFlag.NO_END_OF_HEADER | ProtocolFlag.NO_BODY | ProtocolFlag.NO_UNKNOWN
        | ProtocolFlag.SKIP,
        {MacroStage.ENVELOPE_FROM: "{auth_authen}", MacroStage.END_OF_MESSAGE: "i",
         MacroStage.END_OF_HEADER: "i"},
    )
    assert result.negotiation == expected
    assert written.startswith(expected.to_bytes())


def test_greylist_defers_a_new_triplet_until_the_delay_has_passed() -> None:
    greylist, clock, runner = greylist_runner()
    mail = Message.build(recipients=["a@example.org", "b@example.org"])
    first = runner.run(mail)
    outcome = assert_verdict(first, "temporary-failure", stage="envelope-recipient")
    assert [(r.recipient.address, r.reply) for r in outcome.rejected_recipients] == [
        ("<a@example.org>", GREYLIST_REPLY), ("<b@example.org>", GREYLIST_REPLY),
    ]
    clock.now += 299
    assert_verdict(runner.run(mail), "temporary-failure")
    clock.now += 2
    passed = runner.run(mail)
    assert_verdict(passed, "pass")
    assert len(passed.last.modifications) == 1
    assert_header_added(passed, "X-Greylist", "delayed 301 seconds by milterkit-greylist 0.1.0")
    assert passed.last.message.header("X-Greylist") == (
        "delayed 301 seconds by milterkit-greylist 0.1.0"
    )
    assert greylist.deferred == 4  # counted from envelope-recipient-response
    # Known now: a later message of the same triplets goes through, still with the header.
    clock.now += 3600
    assert_verdict(runner.run(mail), "pass")


def test_greylist_instances_sharing_a_store_share_their_triplets() -> None:
    # Two filters (two processes behind a load balancer, in production) on one store: a
    # triplet the first defers is known to the second. tests/scale does it with Redis.
    from milterkit.store import MemoryStore

    module = load_example("greylist")
    clock = Clock()
    store = MemoryStore(prefix="greylist-test:")
    first = InProcess(module.Greylist(60, clock=clock, store=store).install)
    second = InProcess(module.Greylist(60, clock=clock, store=store).install)
    mail = Message.build(recipients=["a@example.org"])
    assert_verdict(first.run(mail), "temporary-failure")
    clock.now += 61
    assert_verdict(second.run(mail), "pass")
    assert len(store) == 1


def test_greylist_refuses_an_unknown_store_url(monkeypatch: pytest.MonkeyPatch) -> None:
    module = load_example("greylist")
    monkeypatch.setenv("GREYLIST_STORE", "mysql://db")
    with pytest.raises(SystemExit, match="GREYLIST_STORE: unknown store URL 'mysql://db'"):
        module.from_environment()


def test_greylist_matches_the_sending_network_not_the_host() -> None:
    _, clock, runner = greylist_runner()
    mail = Message.build(recipients=["a@example.org"])
    first_host = SMTPClient(address=SocketAddress("4", "192.0.2.10", 40000))
    sibling = SMTPClient(address=SocketAddress("4", "192.0.2.77", 40001))
    elsewhere = SMTPClient(address=SocketAddress("4", "198.51.100.7", 40002))
    assert_verdict(runner.run(mail, connection=first_host), "temporary-failure")
    clock.now += 400
    assert_verdict(runner.run(mail, connection=sibling), "pass")
    assert_verdict(runner.run(mail, connection=elsewhere), "temporary-failure")


def test_greylist_accepts_authenticated_senders_and_discards_blocked_ones() -> None:
    greylist, _, runner = greylist_runner()
    authenticated = Submission(Message.build(), macros={"M": {"{auth_authen}": "alice"}})
    result = runner.run([authenticated])
    assert_verdict(result, "accept", stage="envelope-from")
    assert result.last.rejected_recipients == []
    # Postfix sends an empty {auth_authen} for a client that did not log in: greylisted.
    anonymous = Submission(Message.build(), macros={"M": {"{auth_authen}": ""}})
    assert_verdict(runner.run([anonymous]), "temporary-failure")
    blocked = runner.run(Message.build(sender="BULK@spam.example"))
    assert_verdict(blocked, "discard", stage="envelope-from")
    assert greylist.deferred == 1


def test_greylist_without_the_add_headers_action_still_passes() -> None:
    # The MTA offers no ADD_HEADERS: add_header raises ActionError, which the filter catches.
    _, clock, runner = greylist_runner(actions=ActionFlag.CHANGE_BODY)
    mail = Message.build()
    runner.run(mail)
    clock.now += 301
    result = runner.run(mail)
    assert result.negotiation is not None
    assert result.negotiation.actions == ActionFlag.CHANGE_BODY
    assert_verdict(result, "pass")
    assert_not_modified(result)


def test_greylist_refuses_a_reply_text_no_mta_would_send(monkeypatch: pytest.MonkeyPatch
                                                         ) -> None:
    module = load_example("greylist")
    from milterkit import ReplyError

    with pytest.raises(ReplyError, match="contains CR"):
        module.Greylist(reply="try\ragain")
    monkeypatch.setenv("GREYLIST_REPLY", "x" * 1000)
    with pytest.raises(SystemExit, match="GREYLIST_REPLY cannot be sent"):
        module.from_environment()
    monkeypatch.setenv("GREYLIST_REPLY", "Come back in {delay} s")
    monkeypatch.setenv("GREYLIST_DELAY", "60")
    assert module.from_environment().reply == "Come back in 60 s"


def test_greylist_remembers_triplets_across_connections_over_a_socket(
    milter_server: Server,
) -> None:
    env = {**os.environ, "GREYLIST_DELAY": "0"}
    process = milter_server(EXAMPLES / "greylist.py", env=env)
    mail = Message.build(recipients=["a@example.org"])
    first = process.run(mail)
    assert_recipient_rejected(first, "a@example.org", code="451")
    assert first.last.rejected_recipients[0].reply == (
        "451 4.7.1 Greylisted, please try again in 0 seconds"
    )
    again = process.run(mail)  # a new connection to the same process
    assert_verdict(again, "pass")
    assert_header_added(again, "X-Greylist", "delayed 0 seconds by milterkit-greylist 0.1.0")
    assert "greylisting on milterkit 0.1.0: delay 0 s" in process.output


def test_greylist_with_a_bad_reply_does_not_start(tmp_path: Path) -> None:
    env = {**os.environ, "GREYLIST_REPLY": "bad\rtext"}
    done = subprocess.run(
        [sys.executable, "-m", "milterkit", "run", example("greylist"), "--listen",
         f"unix:{tmp_path}/g.sock"],
        capture_output=True, text=True, timeout=30, env=env,
    )
    assert done.returncode != 0
    assert "GREYLIST_REPLY cannot be sent to an SMTP client" in done.stderr
    assert not (tmp_path / "g.sock").exists()


# ------------------------------------------------------------------ class_filter

HEADERS = [("From", "a@example.com"), ("Subject", "hello"), ("Date", "today")]


def replies_to(result: Any, kind: type) -> list[list[Any]]:
    return [e.replies for e in result.last.exchanges if isinstance(e.command, kind)]


def test_class_filter_is_served_through_the_clients_context_class(milter: Milter) -> None:
    runner = milter(example("class_filter"))
    assert runner.client is not None and runner.client.context_class.__name__ == "ContentScanner"
    chunks = [b"Hi,\r\nplease WIRE THE MO", b"NEY today.\r\n", b"more text\r\n"]
    mail = Message.build(headers=HEADERS, body=b"".join(chunks))
    result = runner.run([Submission(mail, chunks=chunks)])
    # The phrase straddles two chunks; the second one's reply is SKIP: the third is never sent.
    assert replies_to(result, Body) == [[Continue()], [Skip()]]
    assert result.last.skipped_body
    # NO_REPLY_HEADER was negotiated: no reply at all for a header.
    assert replies_to(result, Header) == [[], [], []]
    assert_verdict(result, "reject", code="554", xcode="5.7.1", stage="end-of-message",
                   text='Message content rejected (contains "wire the money today")')
    assert type(runner.context).__name__ == "ContentScanner"


def test_class_filter_stops_reading_after_the_scan_limit(milter: Milter) -> None:
    runner = milter(example("class_filter"))
    result, written = milter_writes(runner, Message.build(headers=HEADERS, body="x" * 200_000))
    assert result.negotiation is not None
    assert result.negotiation.protocol & ProtocolFlag.NO_REPLY_HEADER
    assert replies_to(result, Body) == [[Continue()], [Skip()]]  # 65535 + 65535 > 100000
    assert_verdict(result, "pass")
    assert_header_added(result, "X-Content-Scan", "clean, 100000 body bytes scanned")
    # Everything the milter wrote: it asked for no CONNECT, HELO, MAIL, RCPT, DATA or
    # end-of-header events and answers no header, so after the negotiate reply come the two
    # body replies and the end-of-message changes and verdict.
    assert written == (
        result.negotiation.to_bytes()
        + b"\x00\x00\x00\x01c" + b"\x00\x00\x00\x01s"
        + b"\x00\x00\x00\x31hX-Content-Scan\x00clean, 100000 body bytes scanned\x00"
        + b"\x00\x00\x00\x01c"
    )


def test_class_filter_on_an_mta_without_the_no_reply_and_skip_steps() -> None:
    module = load_example("class_filter")
    # No Client at all: the subclass is the context factory.
    runner = InProcess(context_factory=module.ContentScanner, version=2)
    result = runner.run(Message.build(headers=HEADERS, body="x" * 200_000))
    assert result.negotiation is not None
    assert result.negotiation.version == 2
    assert not result.negotiation.protocol & (ProtocolFlag.NO_REPLY_HEADER | ProtocolFlag.SKIP)
    # milterkit answers NO_REPLY with 'c' for the MTA that waits, and the body is read whole.
    assert replies_to(result, Header) == [[Continue()]] * 3
    assert replies_to(result, Body) == [[Continue()]] * 4
    assert not result.last.skipped_body
    assert_header_added(result, "X-Content-Scan", "clean, 100000 body bytes scanned")


def test_class_filter_over_a_socket(milter_server: Server) -> None:
    process = milter_server(EXAMPLES / "class_filter.py", family="inet")
    result = process.run([
        Message.build(headers=HEADERS, body="Please verify your password here: ...\n"),
        Message.build(headers=HEADERS, body="Lunch?\n"),
    ])
    assert [m.verdict for m in result.messages] == ["reject", "pass"]
    assert result.messages[0].reply == (
        '554 5.7.1 Message content rejected (contains "verify your password here")'
    )
    assert result.messages[1].message.header("X-Content-Scan") == "clean, 8 body bytes scanned"


# ------------------------------------------------------------------ plugin_registry


def test_registry_size_limit_and_required_headers(milter: Milter) -> None:
    runner = milter(example("plugin_registry"))
    big = dataclasses.replace(Message.build(headers=HEADERS), sender_parameters=("SIZE=20971520",))
    assert_verdict(runner.run(big), "reject", stage="envelope-from", code="552",
                   xcode="5.3.4", text="Message size exceeds fixed limit")
    small = dataclasses.replace(Message.build(headers=HEADERS), sender_parameters=("SIZE=2048",))
    assert_verdict(runner.run(small), "pass")
    undated = Message.build(headers=HEADERS[:2])
    assert_verdict(runner.run(undated), "reject", stage="end-of-header", code="550",
                   text='Message has no "Date" header')


def _returns_skip(context: ClientContext, name: str, value: str) -> Status:
    return Status.SKIP  # SKIP is for body chunks only


def _modifies_early(context: ClientContext, sender: str) -> None:
    context.add_header("X-Too", "early")


def _answers_nothing(context: ClientContext, sender: str) -> None:
    context.respond("data", Status.CONTINUE)


def _bad_reply(context: ClientContext, sender: str) -> Status:
    context.set_reply("550", "4.7.1", "classes differ")
    return Status.REJECT


@pytest.mark.parametrize(("signal", "plugin", "explanation"), [
    ("header", _returns_skip, "a plugin returned a status this stage does not take: SKIP"),
    ("envelope-from", _modifies_early, "a plugin used an action it may not use here: add_header"),
    ("envelope-from", _answers_nothing, "a plugin answered when no reply was owed: no reply is "
     "owed for 'data'"),
    ("envelope-from", _bad_reply, "a plugin set an SMTP reply the MTA would refuse: enhanced"),
])
def test_registry_diagnostics_explain_a_buggy_plugin(
    signal: str, plugin: Callable[..., Any], explanation: str
) -> None:
    module = load_example("plugin_registry")
    module.REGISTRY.connect(signal, plugin)
    runner = InProcess(module.setup)
    result = runner.run(Message.build(headers=HEADERS))
    # The exception policy turns the bug into a temporary failure at that stage.
    assert_verdict(result, "temporary-failure", stage=signal,
                   text="Temporary failure in the mail filter")
    assert runner.context is not None
    (problem,) = runner.context.connection_data["problems"]
    assert problem.startswith(explanation)


def _stream(*commands: Any) -> bytes:
    return b"".join(command.to_bytes() for command in commands)


def test_registry_checks_real_postfix_captures_offline() -> None:
    module = load_example("plugin_registry")
    data = (CAPTURES / "postfix-two-messages.mkcap").read_bytes()
    from milterkit.tools.capture_format import parse_capture

    lines, ok = module.check_stream(parse_capture(data).mta_bytes)
    assert ok
    assert lines == ["message from <alice@example.net>: continue"] * 2


def test_registry_check_command_reports_refusals_and_protocol_errors(tmp_path: Path) -> None:
    refused = tmp_path / "refused.bin"
    refused.write_bytes(_stream(
        Negotiate(6, ActionFlag.ALL, ProtocolFlag.ALL),
        Connect("client.example.net", SocketAddress("4", "192.0.2.1", 4000)),
        Helo("client.example.net"),
        Mail("<big@example.net>", ("SIZE=99999999",)),
        Abort(),
        Mail("<small@example.net>", ("SIZE=100",)),
        Rcpt("<bob@example.org>"),
        Data(),
        Header("Subject", "no sender"),
        EndOfHeader(),
        Abort(),
        Quit(),
    ))
    broken = tmp_path / "broken.bin"
    # A sane start, then a packet whose command byte no MTA sends.
    broken.write_bytes(_stream(Negotiate(6, ActionFlag.ALL, ProtocolFlag.ALL))
                       + b"\x00\x00\x00\x01Z")
    clean = CAPTURES / "postfix-one-message.mkcap"
    done = subprocess.run(
        [sys.executable, example("plugin_registry"), "check", str(refused), str(clean),
         str(broken)],
        capture_output=True, text=True, timeout=60,
    )
    assert done.returncode == 1
    assert done.stdout.splitlines() == [
        f"{refused}: ok",
        "  envelope-from: reject 552 5.3.4 Message size exceeds fixed limit",
        '  end-of-header: reject 550 5.6.0 Message has no "From" header',
        f"{clean}: ok",
        "  message from <alice@example.net>: continue",
        f"{broken}: PROTOCOL ERROR",
        "  the MTA broke the milter protocol: unknown command byte b'Z'",
    ]
    assert "protocol error: unknown command byte b'Z'" in done.stderr
    only_clean = subprocess.run(
        [sys.executable, example("plugin_registry"), "check", str(clean)],
        capture_output=True, text=True, timeout=60,
    )
    assert only_clean.returncode == 0


def test_registry_offline_cut_and_oversized_packets() -> None:
    module = load_example("plugin_registry")
    start = _stream(Negotiate(6, ActionFlag.ALL, ProtocolFlag.ALL))
    # A capture cut inside a packet (it claims 16 bytes, 6 follow) is a short capture, not an
    # MTA's mistake.
    lines, ok = module.check_stream(start + b"\x00\x00\x00\x10Bshort")
    assert (lines, ok) == ([], True)
    # A length prefix of 2 GiB is refused before anything is allocated.
    lines, ok = module.check_stream(start + b"\x7f\xff\xff\xffB")
    assert not ok
    (line,) = lines
    assert line.startswith("the MTA broke the milter protocol:")


def test_registry_over_a_socket(milter_server: Server) -> None:
    process = milter_server(EXAMPLES / "plugin_registry.py")
    big = dataclasses.replace(Message.build(headers=HEADERS), sender_parameters=("SIZE=20971520",))
    result = process.run([big, Message.build(headers=HEADERS)])
    assert [m.verdict for m in result.messages] == ["reject", "pass"]
    assert result.messages[0].reply == "552 5.3.4 Message size exceeds fixed limit"
