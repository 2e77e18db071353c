"""The pytest tutorial's code runs as written: its filter and its tests, in a fresh directory."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

DOC = Path(__file__).resolve().parents[2] / "docs" / "tutorial-pytest.rst"


def _blocks() -> list[str]:
    text = DOC.read_text()
    found = re.findall(r"\.\. code-block:: python\n\n((?:   .*\n|\n)+)", text)
    return ["\n".join(line[3:] for line in block.splitlines()) + "\n" for block in found]


def test_tutorial_filter_and_tests_pass(tmp_path: Path) -> None:
    filter_code, tests, socket_test = _blocks()
    (tmp_path / "greylist_lite.py").write_text(filter_code)
    (tmp_path / "test_tutorial.py").write_text(
        tests + "\nfrom milterkit.testing import assert_verdict\n" + socket_test)
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(tmp_path)],
        cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "6 passed" in done.stdout
