"""The manager in this process, over real sockets, against real children: ``milterkit run``
processes and hand-made asyncio servers that misbehave on purpose. No Postfix: milterkit's own
MTA side (ServerContext) drives the manager."""

from __future__ import annotations

import asyncio
import logging
import subprocess
import sys
from pathlib import Path

import pytest
from managerlib import (
    FILTERS,
    child_server,
    filter_spec,
    headers,
    managed_session,
    packet,
    run_managed,
    run_with_child,
    scripted_child,
    stamp,
    to,
)
from milterproc import MilterProcess
from postfix import free_port

from milterkit import ClientContext, Status
from milterkit.compose import FilterLoadError, RemoteNetwork
from milterkit.manager import ChildSpec, Manager
from milterkit.protocol import ProtocolFlag as P


def test_a_child_and_a_filter_combine(guard: str, tmp_path: Path) -> None:
    manager = Manager([ChildSpec("guard", guard)], [filter_spec("stamp", stamp)])
    result = run_managed(manager, tmp_path / "m.sock")
    assert result.error is None
    # End-of-message changes in member order: the child's, then the filter's.
    assert headers(result)[-2:] == [("X-Guard", " checked"), ("X-Stamp", " python")]


def test_the_strongest_verdict_wins_with_its_members_own_reply(guard: str,
                                                              tmp_path: Path) -> None:
    def tempfail(client: object) -> None:
        def rcpt(context: ClientContext, address: str) -> Status:
            return context.temporary_failure("451", "4.7.1", "filter: try later")

        client.connect("envelope-recipient", rcpt)  # type: ignore[attr-defined]

    def manager() -> Manager:
        return Manager([ChildSpec("guard", guard)], [filter_spec("later", tempfail)])

    result = run_managed(manager(), tmp_path / "m.sock", [to("blocked@example.org")])
    (outcome,) = result.messages
    (rejected,) = outcome.rejected_recipients
    # REJECT (the child's) beats TEMPORARY_FAILURE (the filter's), with the child's text.
    assert rejected.status is Status.REJECT
    assert rejected.reply == "550 5.7.1 guard: blocked recipient"
    result = run_managed(manager(), tmp_path / "n.sock", [to("bob@example.org")])
    (rejected,) = result.messages[0].rejected_recipients
    assert rejected.reply == "451 4.7.1 filter: try later"


def test_a_condition_detaches_a_child(guard: str, tmp_path: Path) -> None:
    # The test MTA's SMTP client is 192.168.123.123: trusted here, so guard does not apply.
    trusted = Manager([ChildSpec("guard", guard,
                                 conditions=[RemoteNetwork(["192.168.0.0/16"])])])
    assert ("X-Guard", " checked") not in headers(run_managed(trusted, tmp_path / "a.sock"))
    remote = Manager([ChildSpec("guard", guard, conditions=[RemoteNetwork(["10.0.0.0/8"])])])
    assert ("X-Guard", " checked") in headers(run_managed(remote, tmp_path / "b.sock"))


def test_evaluation_mode_logs_changes_and_verdicts_without_sending_them(
        guard: str, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="milterkit")
    manager = Manager([ChildSpec("guard", guard, evaluation=True)])
    result = run_managed(manager, tmp_path / "m.sock",
                         [to("blocked@example.org"), to("bob@example.org")])
    first, second = result.messages
    assert first.rejected_recipients == []  # would have been refused
    assert ("X-Guard", " checked") not in second.message.headers
    assert "evaluation: filter guard would answer reject at envelope-recipient (550 5.7.1 " \
        "guard: blocked recipient)" in caplog.text
    assert "evaluation: filter guard would add_header('X-Guard', 'checked')" in caplog.text


@pytest.mark.parametrize(("text", "message"), [
    ('[[milter]]\nname = "x"\n', "needs connection"),
    ('[[milter]]\nconnection = "inet:1@127.0.0.1"\n', 'needs name = "NAME"'),
    ('[[milter]]\nname = "x"\nconnection = "inet:1@127.0.0.1"\nfallback = "discard"\n',
     "fallback must be one of"),
    ('[[milter]]\nname = "x"\nconnection = "nowhere"\n', "x"),
    ('[[milter]]\nname = "x"\nconnection = "inet:1@127.0.0.1"\ncolour = 1\n',
     "unknown key 'colour'"),
    ('[[milter]]\nname = "x"\nconnection = "inet:1@127.0.0.1"\ntimeout = "soon"\n',
     "timeout must be a number"),
    ('[manager]\nverdict-header = "Bad Name"\n[[milter]]\nname = "x"\n'
     'connection = "inet:1@127.0.0.1"\n', "verdict-header must be a header name"),
    ('[manager]\norder = ["x", "y"]\n[[milter]]\nname = "x"\n'
     'connection = "inet:1@127.0.0.1"\n', "order names 'y', which is no child milter"),
])
def test_configuration_mistakes_are_one_line_and_exit_2(tmp_path: Path, text: str,
                                                        message: str) -> None:
    path = tmp_path / "bad.toml"
    path.write_text(text)
    out = subprocess.run([sys.executable, "-m", "milterkit", "run", "--config", str(path)],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 2, out.stderr
    assert out.stderr.count("\n") == 1 and "Traceback" not in out.stderr
    assert message in out.stderr and str(path) in out.stderr


def test_a_message_refused_by_another_member_is_aborted_for_the_child(
        guard: str, tmp_path: Path) -> None:
    def header_refusal(client: object) -> None:
        def header(context: ClientContext, name: str, value: str) -> Status | None:
            if name == "Subject" and "reject me" in value:
                return context.reject("550", "5.7.1", "filter: not this subject")
            return None

        client.connect("header", header)  # type: ignore[attr-defined]

    # guard sees "Subject: please reject me" (it is first) and would refuse the message at
    # end-of-header, but the filter refuses it at the header itself. Unless the manager ends
    # that message for guard (ABORT), guard still holds it when the next one comes.
    manager = Manager([ChildSpec("guard", guard)], [filter_spec("subject", header_refusal)])
    result = run_managed(manager, tmp_path / "m.sock", [
        to("bob@example.org", "please reject me"), to("bob@example.org", "fine")])
    first, second = result.messages
    assert first.status is Status.REJECT and first.reply == "550 5.7.1 filter: not this subject"
    assert second.status is Status.CONTINUE, second.reply
    assert ("X-Guard", " checked") in second.message.headers


def test_a_childs_progress_reaches_the_mta(tmp_path: Path) -> None:
    spec = f"inet:{free_port()}@127.0.0.1"
    with MilterProcess(FILTERS / "progress.py", spec):
        result = run_managed(Manager([ChildSpec("worker", spec)]), tmp_path / "m.sock")
    (outcome,) = result.messages
    assert outcome.progress == 3
    assert ("X-Worked", " hard") in outcome.message.headers


def test_a_child_detached_by_a_condition_still_gets_quit(tmp_path: Path) -> None:
    received: list[bytes] = []

    async def main() -> object:
        async with child_server(scripted_child({}, received=received)) as spec:
            manager = Manager([ChildSpec("local-only", spec,
                                         conditions=[RemoteNetwork(["192.168.0.0/16"])])])
            result = await managed_session(manager, tmp_path / "m.sock", [to("bob@example.org")])
            for _ in range(100):
                if received[-1:] == [b"EOF"]:
                    break
                await asyncio.sleep(0.01)
            return result

    asyncio.run(main())
    # Negotiated, never asked anything (the SMTP client is in its trusted network), then QUIT.
    assert received == [b"O", b"Q", b"EOF"]


def test_a_childs_multi_line_reply_reaches_the_mta_as_it_wrote_it(tmp_path: Path) -> None:
    text = b"550-5.7.1 first line\r\n550 5.7.1 second line, 100%% sure\0"
    result = run_with_child(scripted_child({b"M": [packet(b"y", text)]}), "wordy",
                            tmp_path / "m.sock")
    (outcome,) = result.messages
    assert outcome.status is Status.REJECT
    assert outcome.reply == "550-5.7.1 first line\r\n550 5.7.1 second line, 100%% sure"


def test_each_child_gets_only_the_events_it_asked_for(tmp_path: Path) -> None:
    received: list[bytes] = []

    def headers_too(client: object) -> None:
        client.connect("header", lambda context, name, value: None)  # type: ignore[attr-defined]
        client.connect("body", lambda context, chunk: None)  # type: ignore[attr-defined]

    quiet = int(P.NO_HELO | P.NO_HEADERS | P.NO_BODY | P.NO_END_OF_HEADER | P.NO_DATA)

    async def main() -> object:
        async with child_server(scripted_child({}, quiet, received=received)) as spec:
            manager = Manager([ChildSpec("envelope-only", spec)],
                              [filter_spec("content", headers_too)])
            return await managed_session(manager, tmp_path / "m.sock", [to("bob@example.org")])

    result = asyncio.run(main())
    assert result.error is None  # type: ignore[attr-defined]
    # The filter wanted headers and body, so the MTA sent them: not to this child.
    commands = [code for code in received if code != b"D"]
    assert commands == [b"O", b"C", b"M", b"R", b"E", b"Q", b"EOF"], received


def test_milterkit_run_serves_a_manager_from_the_configuration_file(guard: str,
                                                                   tmp_path: Path) -> None:
    """``milterkit run --config``: [[milter]] and [[filter]] tables, [manager]'s header and
    member order (the filter first)."""
    from milterkit.testing import run_session

    config = tmp_path / "manager.toml"
    config.write_text(f"""
[manager]
verdict-header = "X-Milter-Verdicts"
order = ["stamp", "guard"]

[[milter]]
name = "guard"
connection = "{guard}"

[[filter]]
use = "{FILTERS.parent.parent.parent / 'examples' / 'add_header.py'}"
name = "stamp"
""")
    spec = f"unix:{tmp_path / 'm.sock'}"
    with MilterProcess(f"--config={config}", spec):
        result = run_session(spec, [to("bob@example.org"), to("blocked@example.org")])
    first, second = result.messages
    assert first.message.headers[-3:] == [
        ("X-Milterkit", " yes"), ("X-Guard", " checked"),
        ("X-Milter-Verdicts", " stamp=continue; guard=continue")]
    (refused,) = second.rejected_recipients
    assert refused.reply == "550 5.7.1 guard: blocked recipient"


def test_order_puts_a_filter_before_a_child(guard: str, tmp_path: Path) -> None:
    manager = Manager([ChildSpec("guard", guard)], [filter_spec("stamp", stamp)],
                      order=["stamp", "guard"])
    assert headers(run_managed(manager, tmp_path / "m.sock"))[-2:] == [
        ("X-Stamp", " python"), ("X-Guard", " checked")]
    with pytest.raises(FilterLoadError, match="order names 'nobody'"):
        Manager([ChildSpec("guard", guard)], order=["guard", "nobody"])
    with pytest.raises(FilterLoadError, match="exactly once"):
        Manager([ChildSpec("guard", guard)], [filter_spec("stamp", stamp)], order=["guard"])
