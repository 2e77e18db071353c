"""examples/compose_filters.py runs and prints the composition's verdicts."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "compose_filters.py"


def test_compose_filters_example() -> None:
    done = subprocess.run([sys.executable, str(EXAMPLE)], capture_output=True, text=True,
                          timeout=60, check=True)
    lines = done.stdout.splitlines()
    assert lines[0] == "<alice@example.net>: pass (X-Greeted: delian)"
    assert lines[1] == "<mallory@spam.example>: reject (X-Greeted: None)"
    assert lines[2] == ("  <alice@example.net>: {'reject_sender': 'continue', 'greeter': "
                        "'continue', 'shadow': 'reject (evaluation)'}")
    assert lines[3] == "DISCARD > REJECT > TEMPORARY_FAILURE > CONTINUE > SKIP > ACCEPT"
    assert lines[4] == "SKIP TEMPORARY_FAILURE"
    assert lines[5] == "['add_header', 'reject_sender']"
    assert re.fullmatch(r"\d+ filter\(s\) installed under milterkit\.filters", lines[6])
    assert lines[7:] == ["FilterLoadError", "ConditionError", "True"]
