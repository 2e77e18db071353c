"""The event loop choice: asyncio, uvloop when installed (``milterkit[uvloop]``), and a clear
error when uvloop is asked for but missing."""

from __future__ import annotations

import asyncio
import importlib.util
import os
import subprocess
import sys

import pytest
from runner import ROOT, RunningServer
from serverlib import run, session, short_tmpdir

from milterkit.protocol.replies import AddHeader
from milterkit.server.loop import loop_factory

HAVE_UVLOOP = importlib.util.find_spec("uvloop") is not None


def test_asyncio_loop() -> None:
    loop = loop_factory("asyncio")()
    try:
        assert isinstance(loop, asyncio.AbstractEventLoop)
        assert type(loop).__module__.startswith("asyncio")
    finally:
        loop.close()
    with pytest.raises(ValueError, match="loop must be one of auto, asyncio, uvloop"):
        loop_factory("trio")


@pytest.mark.skipif(HAVE_UVLOOP, reason="uvloop is installed")
def test_uvloop_asked_for_but_missing() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "milterkit", "run", "examples/add_header.py", "--loop", "uvloop",
         "-l", "inet:0@127.0.0.1"],
        capture_output=True, text=True, cwd=ROOT, timeout=30,
    )
    assert result.returncode == 1
    assert "pip install 'milterkit[uvloop]'" in result.stderr
    assert type(loop_factory("auto")()).__module__.startswith("asyncio")


@pytest.mark.skipif(not HAVE_UVLOOP, reason="uvloop is not installed (milterkit[uvloop])")
def test_serving_on_uvloop() -> None:
    assert loop_factory("auto") is loop_factory("uvloop")
    with short_tmpdir() as tmp:
        path = f"{tmp}/m.sock"
        args = ["examples/add_header.py", "-l", path, "--loop", "uvloop", "--log-level", "debug"]
        with RunningServer(args, env=dict(os.environ)) as server:
            server.wait_for("event loop: uvloop")
            server.wait_for("listening on")
            outcomes = run(session(f"unix:{path}", messages=2))
            assert [o.modifications for o in outcomes] == [[AddHeader("X-Milterkit", "yes")]] * 2
            assert server.stop() == 0
