"""``milterkit demo`` runs on its own (no mail server) and shows both verdicts and the diff."""

from __future__ import annotations

import subprocess
import sys


def test_demo_runs_and_prints_verdicts_and_diff() -> None:
    done = subprocess.run([sys.executable, "-m", "milterkit", "demo", "--color=no"],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr
    lines = done.stdout.splitlines()
    assert lines.count("status: pass") == 1
    assert "status: reject [550]<5.7.1>(Mail from spam.example is refused)" in lines
    assert "- RCPT TO:<closed@example.com>" in lines
    assert any(line.startswith("+ X-Milterkit-Demo: checked, queue id ") for line in lines)
    assert "\033[" not in done.stdout
