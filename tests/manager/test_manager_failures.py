"""Children that fail, in every way the manager must survive: unreachable, silent, dying in
the middle of a message, out of turn, auto-started and dying; bounded and logged reconnects.
The manager runs in this process over real sockets; no Postfix."""

from __future__ import annotations

import asyncio
import logging
import sys
from pathlib import Path
from typing import Any

import pytest
from managerlib import (
    FILTERS,
    child_server,
    headers,
    managed_session,
    packet,
    run_managed,
    run_with_child,
    scripted_child,
    serving,
    to,
)
from milterproc import MilterProcess
from postfix import free_port

from milterkit import Status
from milterkit.manager import ChildSpec, ChildStartError, Manager
from milterkit.mta import MilterChannel
from milterkit.protocol import QuitNewConnection
from milterkit.testing import run_session_async


def test_unreachable_child_is_tried_a_bounded_number_of_times(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="milterkit")
    spec = f"inet:{free_port()}@127.0.0.1"  # nothing listens there
    manager = Manager([ChildSpec("gone", spec, connect_attempts=3, reconnect_delay=0.01,
                                 fallback=Status.TEMPORARY_FAILURE)])
    result = run_managed(manager, tmp_path / "m.sock")
    assert result.connect_status is Status.TEMPORARY_FAILURE  # its fallback, at connect
    attempts = [r.getMessage() for r in caplog.records if "attempt" in r.getMessage()]
    assert [m.split("] ", 1)[1].split(" to connect")[0] for m in attempts if "of 3" in m] == [
        "milter gone: attempt 1 of 3", "milter gone: attempt 2 of 3"]
    assert f"milter gone: cannot connect to {spec} after 3 attempt(s)" in caplog.text


def test_a_child_that_never_negotiates_times_out(tmp_path: Path,
                                                caplog: pytest.LogCaptureFixture) -> None:
    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read()  # never answers
        writer.close()

    caplog.set_level(logging.INFO, logger="milterkit")
    result = run_with_child(silent, "silent", tmp_path / "m.sock", connect_timeout=0.3,
                            connect_attempts=1)
    # Its fallback (accept) at CONNECT; the only member accepted, so the MTA is told ACCEPT.
    assert result.error is None and result.connect_status is Status.ACCEPT
    assert "cannot connect to" in caplog.text
    assert "after 1 attempt(s): no connection and negotiation within 0.3 s" in caplog.text


def test_a_child_that_dies_mid_message_gets_its_fallback_and_the_session_goes_on(
        guard: str, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    async def main() -> object:
        async with child_server(scripted_child({}, hang_up=b"E")) as spec:  # dies there
            manager = Manager([ChildSpec("fragile", spec, fallback=Status.CONTINUE),
                               ChildSpec("guard", guard)])
            return await managed_session(manager, tmp_path / "m.sock",
                                         [to("bob@example.org"), to("carol@example.org")])

    caplog.set_level(logging.INFO, logger="milterkit")
    result = asyncio.run(main())
    first, second = result.messages  # type: ignore[attr-defined]
    assert first.status is Status.CONTINUE and second.status is Status.CONTINUE
    assert ("X-Guard", " checked") in first.message.headers  # the other child went on
    assert ("X-Guard", " checked") in second.message.headers
    assert "filter fragile failed at end-of-message (ChildFailure: the milter closed the " \
        "connection)" in caplog.text


def test_an_auto_started_child_serves_and_stops(tmp_path: Path) -> None:
    spec = f"unix:{tmp_path / 'child.sock'}"
    command = [sys.executable, "-m", "milterkit", "run", str(FILTERS / "guard.py"),
               "--listen", spec]
    manager = Manager([ChildSpec("guard", spec, command=command)])
    try:
        result = run_managed(manager, tmp_path / "m.sock")
        assert ("X-Guard", " checked") in headers(result)
    finally:
        process = manager.children[0].process
        assert process is not None and process.process is not None
        process.stop()
    assert process.process.returncode is not None


def test_a_child_command_that_fails_is_a_start_up_error(tmp_path: Path) -> None:
    manager = Manager([ChildSpec("nothing", f"unix:{tmp_path / 'x.sock'}",
                                 command=[sys.executable, "-c", "raise SystemExit(3)"])])
    with pytest.raises(ChildStartError, match="exited with status 3 at start-up"):
        manager.setup(type("FakeClient", (), {"connect": lambda *a: None})())


def test_a_new_smtp_client_reconnects_a_child_that_was_down(tmp_path: Path) -> None:
    """QUIT_NC on the MTA connection: the manager passes it on, and connects again to a child
    that could not be reached, which then takes part for the new SMTP client."""
    child_spec = f"inet:{free_port()}@127.0.0.1"
    guard = MilterProcess(FILTERS / "guard.py", child_spec)
    manager = Manager([ChildSpec("guard", child_spec, connect_attempts=1)])

    async def one_client(mta: MilterChannel) -> list[Any]:
        await mta.connect()
        await mta.helo()
        outcome = await mta.message(sender="<alice@example.net>",
                                    recipients=("<bob@example.org>",))
        return outcome.modifications

    async def main() -> tuple[list[Any], list[Any], list[Any]]:
        async with serving(manager, tmp_path / "m.sock") as spec:
            first = await MilterChannel.open(spec)  # guard up: its needs become known
            await first.negotiate()
            seen = await one_client(first)
            await first.quit()
            guard.stop()
            mta = await MilterChannel.open(spec)  # guard down at this negotiation
            await mta.negotiate()
            down = await one_client(mta)
            guard.start()
            mta.send_nowait(QuitNewConnection())
            back = await one_client(mta)  # the new SMTP client: guard is reached again
            await mta.quit()
            return seen, down, back

    guard.start()
    try:
        seen, down, back = asyncio.run(main())
    finally:
        guard.close()
    names = [[getattr(m, "name", None) for m in mods] for mods in (seen, down, back)]
    assert names == [["X-Guard"], [], ["X-Guard"]]


def test_a_modification_before_end_of_message_is_the_childs_protocol_error(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="milterkit")
    early = packet(b"h", b"X-Early\0yes\0") + packet(b"c")
    result = run_with_child(scripted_child({b"R": [early]}), "early", tmp_path / "m.sock",
                            fallback=Status.TEMPORARY_FAILURE)
    (outcome,) = result.messages
    # Its fallback at RCPT, for that recipient (the MTA refuses it temporarily).
    (refused,) = outcome.rejected_recipients
    assert refused.status is Status.TEMPORARY_FAILURE
    assert "filter early failed at envelope-recipient (ChildFailure: protocol error: a " \
        "modification at envelope-recipient)" in caplog.text


def test_an_auto_started_child_is_started_again_at_most_max_restarts_times(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="milterkit")
    spec = f"unix:{tmp_path / 'child.sock'}"
    command = [sys.executable, "-m", "milterkit", "run", str(FILTERS / "guard.py"),
               "--listen", spec]
    manager = Manager([ChildSpec("guard", spec, command=command, max_restarts=1,
                                 connect_attempts=100, reconnect_delay=0.1)])
    child = manager.children[0]
    assert child.process is not None

    def kill() -> None:
        assert child.process is not None and child.process.process is not None
        child.process.process.kill()
        child.process.process.wait()

    async def main() -> tuple[object, object]:
        async with serving(manager, tmp_path / "m.sock") as spec:  # starts it
            kill()
            again = await run_session_async(spec, [to("bob@example.org")])
            kill()
            manager.children[0].spec.connect_attempts = 2
            gone = await run_session_async(spec, [to("bob@example.org")])
            return again, gone

    try:
        again, gone = asyncio.run(main())
    finally:
        child.process.stop()
    assert ("X-Guard", " checked") in headers(again)  # started again (restart 1 of 1)
    assert ("X-Guard", " checked") not in headers(gone)  # not again: its fallback, accept
    assert "starting it again (restart 1 of 1)" in caplog.text
    assert "not starting it again (max-restarts 1 reached)" in caplog.text


def test_retry_after_rests_a_child_that_could_not_be_reached(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="milterkit")
    spec = f"inet:{free_port()}@127.0.0.1"  # nothing listens there
    manager = Manager([ChildSpec("gone", spec, connect_attempts=2, reconnect_delay=0.01,
                                 retry_after=600.0)])

    async def main() -> None:
        async with serving(manager, tmp_path / "m.sock") as spec:
            for _ in range(3):
                result = await run_session_async(spec, [to("bob@example.org")])
                assert result.error is None

    asyncio.run(main())
    messages = [r.getMessage() for r in caplog.records if r.name == "milterkit.manager"]
    assert sum("attempt 1 of 2" in m for m in messages) == 1  # tried on the first only
    assert "milter gone: not tried again for 600 s (retry-after)" in messages
    rested = [m for m in messages if "down after 1 failed connection(s); not tried for 600 s"
              in m]
    assert len(rested) == 2


def test_a_reply_before_the_verdict_that_is_no_modification_is_the_childs_failure(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="milterkit")
    # At end-of-message: a header (carried out), then 'f', which is neither a change nor a
    # verdict, then the verdict.
    odd = packet(b"h", b"X-First\0yes\0") + packet(b"f") + packet(b"c")
    result = run_with_child(scripted_child({b"E": [odd]}), "odd", tmp_path / "m.sock",
                            fallback=Status.TEMPORARY_FAILURE)
    (outcome,) = result.messages
    assert outcome.status is Status.TEMPORARY_FAILURE  # its fallback
    assert "filter odd failed at end-of-message (ChildFailure: unexpected reply " \
        "ConnectionFailure before end-of-message's verdict)" in caplog.text
