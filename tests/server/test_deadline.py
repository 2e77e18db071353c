"""The per-handler deadline over real sockets: a hung coroutine handler is cancelled and the
exception policy answers, whatever keep-alives were sent; ``milterkit run --handler-deadline``."""

from __future__ import annotations

import asyncio
import runpy
from typing import Any

import pytest
from runner import ROOT, RunningServer
from serverlib import MTA, run, serving, short_tmpdir

from milterkit import ClientContext, Status
from milterkit.protocol import commands as cmd
from milterkit.protocol.replies import Continue, Progress, ReplyText, TempFail
from milterkit.server import Client, DeadlineExceeded

EXAMPLE = ROOT / "examples" / "deadline.py"


async def _replies_to_rcpt(mta: MTA, recipient: str) -> list[Any]:
    """Send MAIL and RCPT; the replies to RCPT up to its final one."""
    await mta.step(cmd.Mail("<a@b>"))  # not answered where nobody handles it (NO_MAIL)
    mta.send_nowait(cmd.Rcpt(recipient))
    replies = []
    while True:
        reply = await mta.read_reply()
        replies.append(reply)
        if not isinstance(reply, Progress):
            return replies


@pytest.mark.parametrize("stubborn", [False, True], ids=["cancellable", "ignores-cancel"])
def test_a_hung_handler_hits_its_deadline_and_gets_the_policy_reply(stubborn: bool) -> None:
    errors: list[BaseException] = []
    cancelled: list[bool] = []

    async def hang(context: ClientContext, recipient: str) -> None:
        if recipient != "<x@y>":
            return
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            cancelled.append(True)
            if not stubborn:
                raise
            await asyncio.sleep(3600)  # a handler that will not stop: we answer anyway

    def setup(client: Client) -> None:
        client.connect("envelope-recipient", hang)
        client.connect("error", lambda context, exc: errors.append(exc))

    async def scenario() -> None:
        async with serving(setup=setup, handler_deadline=0.5, progress_interval=0.05,
                           shutdown_timeout=0.1) as client:
            mta = await MTA.open(client.address_spec)
            await mta.negotiate()
            await mta.connect()
            replies = await _replies_to_rcpt(mta, "<x@y>")
            # Keep-alives went out (they do not extend the deadline), then the policy answered.
            assert any(isinstance(reply, Progress) for reply in replies[:-1])
            assert replies[-1] == ReplyText("451 4.3.0 Temporary failure in the mail filter")
            assert cancelled == [True]
            assert len(errors) == 1 and isinstance(errors[0], DeadlineExceeded)
            # The session goes on: the next command is answered.
            assert isinstance((await mta.step(cmd.Rcpt("<ok@y>"))).final, Continue)
            await mta.close()

    run(scenario())


def test_the_deadline_is_per_handler_and_a_fast_handler_is_untouched() -> None:
    async def quick(context: ClientContext, recipient: str) -> Status:
        await asyncio.sleep(0.01)
        return Status.TEMPORARY_FAILURE

    def setup(client: Client) -> None:
        client.connect("envelope-recipient", quick)

    async def scenario() -> None:
        async with serving(setup=setup, handler_deadline=5.0) as client:
            mta = await MTA.open(client.address_spec)
            await mta.negotiate()
            await mta.connect()
            for _ in range(3):
                await mta.step(cmd.Mail("<a@b>"))
                assert isinstance((await mta.step(cmd.Rcpt("<x@y>"))).final, TempFail)
                mta.send_nowait(cmd.Abort())
            (connection,) = client.connections
            assert not connection._deadlines  # no timer left behind per handler
            await mta.close()

    run(scenario())


def test_handler_deadline_is_checked() -> None:
    for bad in (0, -1.0):
        with pytest.raises(ValueError, match="handler_deadline"):
            Client("inet:0@127.0.0.1", handler_deadline=bad, socket_activation=False)
    assert Client("inet:0@127.0.0.1", socket_activation=False).handler_deadline is None


def test_the_example_answers_a_hanging_lookup_with_the_policy() -> None:
    namespace = runpy.run_path(str(EXAMPLE))

    async def scenario() -> None:
        async with serving(setup=namespace["setup"], handler_deadline=0.3) as client:
            mta = await MTA.open(client.address_spec)
            await mta.negotiate()
            await mta.connect()
            await mta.step(cmd.Mail("<a@b>"))
            assert isinstance((await mta.step(cmd.Rcpt("<ok@example.com>"))).final, Continue)
            final = (await mta.step(cmd.Rcpt("<u@hang.example>"))).final
            assert final == ReplyText("451 4.3.0 Temporary failure in the mail filter")
            assert namespace["_timeouts"] == ["envelope-recipient"]
            await mta.close()

    run(scenario())


def test_run_handler_deadline_option() -> None:
    with short_tmpdir() as tmp:
        path = f"{tmp}/m.sock"
        with RunningServer([str(EXAMPLE), "-l", f"unix:{path}", "--handler-deadline", "0.3",
                            "--progress-interval", "0.1"]) as server:
            server.wait_for("listening on")

            async def scenario() -> None:
                mta = await MTA.open(f"unix:{path}")
                await mta.negotiate()
                await mta.connect()
                replies = await _replies_to_rcpt(mta, "<u@hang.example>")
                assert replies[-1] == ReplyText("451 4.3.0 Temporary failure in the mail filter")
                assert any(isinstance(reply, Progress) for reply in replies)
                await mta.close()

            run(scenario())
            server.wait_for("ran past its deadline")
            assert server.stop() == 0


@pytest.mark.parametrize("value", ["0", "-2", "soon"])
def test_run_refuses_a_bad_handler_deadline(value: str) -> None:
    import subprocess
    import sys

    done = subprocess.run([sys.executable, "-m", "milterkit", "run", str(EXAMPLE),
                           "--handler-deadline", value], capture_output=True, text=True,
                          timeout=30)
    assert done.returncode == 2
    assert "--handler-deadline" in done.stderr and "Traceback" not in done.stderr
