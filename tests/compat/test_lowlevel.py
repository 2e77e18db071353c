"""The low-level ``milter`` module: registration, negotiate with setsymlist, the exception
policy's reply, and which modules an application gets when the real pymilter is importable."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from compatproc import COMPAT_FILTERS, CompatProcess

from milterkit.protocol import MacroStage
from milterkit.testing import Message, run_session

ROOT = Path(__file__).resolve().parents[2]


def test_a_low_level_milter_module_filter_runs(tmp_path: Path) -> None:
    spec = f"unix:{tmp_path}/low.sock"
    with CompatProcess([str(COMPAT_FILTERS / "lowlevel.py"), spec], spec):
        message = Message.build(sender="a@example.net", recipients=["b@example.org"])
        message.sender_parameters = ("SIZE=10", "BODY=8BITMIME")
        result = run_session(spec, [message])
        assert result.negotiation is not None
        assert result.negotiation.macros == {MacroStage.ENVELOPE_FROM: "{mail_addr}"}
        (outcome,) = result.messages
        assert outcome.message is not None
        assert outcome.message.header("X-Low-Level") == "<a@example.net> SIZE=10 BODY=8BITMIME"
        assert outcome.message.header("X-Macro") == "a@example.net"

        crash = run_session(spec, [Message.build(recipients=["crash@example.org"])])
        (outcome,) = crash.messages
        assert [r.reply for r in outcome.rejected_recipients] == [
            "451 4.3.0 pymilter: untrapped exception in lowlevel"]


def test_the_shadow_wins_over_an_installed_pymilter(tmp_path: Path) -> None:
    python = os.environ.get("MILTERKIT_PYMILTER_PYTHON")
    if not python:
        pytest.skip("MILTERKIT_PYMILTER_PYTHON is not set (a venv with the real pymilter)")
    site = subprocess.run([python, "-c", "import Milter, os; print(os.path.dirname("
                           "os.path.dirname(Milter.__file__)))"], capture_output=True,
                          text=True, check=True).stdout.strip()
    probe = "import Milter, milter; print(Milter.__name__, milter.__file__)\n"
    script = tmp_path / "probe_shadow.py"
    script.write_text(probe)
    env = {**os.environ, "PYTHONPATH": site}
    real = subprocess.run([sys.executable, str(script)], capture_output=True, text=True,
                          env=env, timeout=30)
    ours = subprocess.run([sys.executable, "-m", "milterkit", "compat", "pymilter", str(script)],
                          capture_output=True, text=True, env=env, timeout=30, cwd=ROOT)
    if real.returncode != 0:  # the extension was built for another Python version
        pytest.skip(f"the real pymilter does not load in this Python: {real.stderr[-200:]}")
    assert real.stdout.split()[1].startswith(site), real.stdout + real.stderr
    assert ours.returncode == 0, ours.stderr
    assert ours.stdout.split()[1].endswith("milterkit/compat/pymilter/milter.py"), ours.stdout
