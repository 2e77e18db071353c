"""The milter manager behind the private Postfix, with real children: OpenDKIM from Debian
(started by the manager, signing with a key made here), other ``milterkit run`` processes, a
deliberately broken child, and an in-process Python filter; examples/manager/manager.toml is
the configuration, with more children added after it."""

from __future__ import annotations

import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from managerlib import (
    FILTERS,
    MESSAGE,
    delivered,
    example_config,
    header_block,
    make_key,
    need_opendkim,
    opendkim_conf,
    verify,
    wait_log,
)
from milterproc import MilterProcess
from postfix import free_port
from stack import Stack, session

pytestmark = pytest.mark.postfix


@dataclass
class Children:
    stack: Stack
    record: bytes
    guard: MilterProcess
    guard_spec: str


@pytest.fixture(scope="module")
def children(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Children]:
    need_opendkim()
    directory = tmp_path_factory.mktemp("manager")
    record = make_key(directory)
    dkim_port = free_port()
    conf = opendkim_conf(directory, dkim_port)
    guard_spec = f"inet:{free_port()}@127.0.0.1"
    strict_spec = f"inet:{free_port()}@127.0.0.1"
    slow_spec = f"inet:{free_port()}@127.0.0.1"
    broken_port = free_port()
    extra = f"""
[[milter]]
name = "guard"
connection = "{guard_spec}"
fallback = "accept"

[[milter]]
name = "strict"
connection = "{strict_spec}"
evaluation = true

[[milter]]
name = "slow"
connection = "{slow_spec}"
timeout = 0.5
fallback = "accept"

[[milter]]
name = "broken"
connection = "inet:{broken_port}@127.0.0.1"
fallback = "accept"
"""
    config = example_config(directory, dkim_port, conf, extra)
    guard = MilterProcess(FILTERS / "guard.py", guard_spec)
    strict = MilterProcess(FILTERS / "strict.py", strict_spec)
    slow = MilterProcess(FILTERS / "slow.py", slow_spec, env={"SLOW_SECONDS": "3"})
    broken = subprocess.Popen([sys.executable, str(FILTERS / "broken.py"), str(broken_port)])
    try:
        for proc in (guard, strict, slow):
            proc.start()
        with Stack(f"--config={config}") as stack:
            yield Children(stack, record, guard, guard_spec)
    finally:
        broken.terminate()
        broken.wait(10)
        for proc in (guard, strict, slow):
            proc.close()


@pytest.fixture(autouse=True)
def _report(children: Children) -> Iterator[None]:
    yield
    print(children.stack.report())  # shown only for a failing test


def send(children: Children, message: bytes = MESSAGE, **options: object) -> bytes:
    result = session(children.stack.pf, message=message, **options)  # type: ignore[arg-type]
    assert result.data is not None and result.data[0] == 250, (result, children.stack.report())
    return delivered(children.stack, result.queue_id)


def test_opendkim_signs_and_the_python_filter_stamps(children: Children) -> None:
    data = send(children)
    headers = header_block(data)
    assert b"DKIM-Signature:" in headers
    assert verify(data, children.record), children.stack.report()
    # The check can fail: the same message with its body changed no longer verifies.
    assert not verify(data.replace(b"Hello from", b"Hullo from"), children.record)
    assert b"\nX-Milterkit: yes" in headers  # the in-process filter (examples/add_header.py)
    assert b"\nX-Guard: checked" in headers  # the milterkit child process


def test_the_verdict_header_shows_each_member(children: Children) -> None:
    headers = header_block(send(children)).decode()
    match = re.search(r"^X-Milter-Verdicts: (.*)$", headers, re.M)
    assert match is not None, headers
    verdicts = dict(part.split("=", 1) for part in match.group(1).split("; "))
    assert verdicts["opendkim"] == "accept"
    assert verdicts["guard"] == "continue"
    assert verdicts["add-header"] == "continue"
    assert verdicts["strict"] == "reject (evaluation)"
    assert verdicts["slow"] == "accept (failed)"
    assert verdicts["broken"] == "accept (failed)"


def test_a_child_that_rejects_wins_over_one_that_accepts(children: Children) -> None:
    result = session(children.stack.pf, recipients=("bob@example.org", "blocked@example.org"),
                     message=MESSAGE)
    assert result.rcpt["blocked@example.org"] == (550, b"5.7.1 guard: blocked recipient")
    assert result.rcpt["bob@example.org"][0] == 250
    data = delivered(children.stack, result.queue_id)
    assert verify(data, children.record)  # OpenDKIM still signed the accepted message
    refused = MESSAGE.replace(b"Subject: through the manager", b"Subject: please reject me")
    result = session(children.stack.pf, message=refused)
    assert result.data == (554, b"5.7.0 guard: this subject is refused")


def test_evaluation_mode_records_but_does_not_send(children: Children) -> None:
    send(children)  # strict refuses every sender, but only in evaluation
    wait_log(children.stack, "evaluation: filter strict would answer reject at envelope-from "
             "(550 5.7.1 strict: every sender is refused)")


def test_the_per_child_timeout_holds(children: Children) -> None:
    send(children)  # slow answers MAIL after 3 s; its timeout is 0.5 s, its fallback accept
    log = wait_log(children.stack, "filter slow failed at envelope-from (TimeoutError: no "
                   "answer to envelope-from within 0.5 s); it answers accept")
    assert "filter guard failed" not in log and "filter opendkim failed" not in log


def test_a_broken_child_gets_its_fallback(children: Children) -> None:
    send(children)
    log = wait_log(children.stack, "filter broken failed at connect (ChildFailure: ")
    assert "it answers accept" in log


def test_a_killed_child_gets_its_fallback_and_mail_flows(children: Children) -> None:
    children.guard.stop(signal.SIGKILL)
    try:
        result = session(children.stack.pf, recipients=("blocked@example.org",),
                         message=MESSAGE)
        assert result.rcpt["blocked@example.org"][0] == 250  # guard is gone: accept
        data = delivered(children.stack, result.queue_id)
        assert verify(data, children.record)  # the other children go on
        wait_log(children.stack, f"milter guard: cannot connect to {children.guard_spec} "
                 "after 2 attempt(s)")
    finally:
        children.guard.start()
    result = session(children.stack.pf, recipients=("blocked@example.org",), message=MESSAGE)
    assert result.rcpt["blocked@example.org"][0] == 550  # back, and obeyed again
    wait_log(children.stack, "milter guard is reachable again after 1 failed connection(s)")


def test_an_auto_started_child_is_started_again_after_it_died(children: Children) -> None:
    log = children.stack.milter.log()
    pids = re.findall(r"milter opendkim: started opendkim .* \(pid (\d+)\)", log)
    assert pids, log
    subprocess.run(["kill", "-9", pids[-1]], check=True)
    time.sleep(0.2)  # let it die before the next connection looks
    # The connection that finds it dead starts it again (and may get the fallback meanwhile).
    for _ in range(20):
        data = send(children)
        if b"DKIM-Signature:" in header_block(data):
            break
        time.sleep(0.25)
    assert verify(data, children.record), children.stack.report()
    assert "milter opendkim: its process" in children.stack.milter.log()
    assert "starting it again (restart 1 of 3)" in children.stack.milter.log()


def test_test_server_shows_each_childs_verdict(children: Children) -> None:
    out = subprocess.run(
        [sys.executable, "-m", "milterkit", "test-server", "-s", children.stack.spec,
         "--connect-address", "inet:4000@[127.0.0.1]", "-f", "alice@example.net",
         "-r", "bob@example.org", "-H", "Subject:hello", "--output-message"],
        capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "X-Milter-Verdicts" in out.stdout, out.stdout
    assert "opendkim=accept" in out.stdout and "guard=continue" in out.stdout
    assert "DKIM-Signature" in out.stdout

