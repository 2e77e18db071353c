"""README.rst's code must work as written: its filter and its tests are cut out of the README,
written to files and run with pytest in a subprocess, and its quick start lines are checked
against what .ci/run runs."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
README = (ROOT / "README.rst").read_text()


def literal_block_after(marker: str) -> str:
    """The indented literal block that starts with the line ``marker``."""
    match = re.search(rf"\n(    {re.escape(marker)}\n(?:    .*\n|\n)+)", README)
    assert match, f"README has no literal block starting with {marker!r}"
    lines = match.group(1).rstrip("\n").split("\n")
    return "\n".join(line[4:] for line in lines) + "\n"


def test_the_readme_filter_and_its_tests_pass(tmp_path: Path) -> None:
    (tmp_path / "myfilter.py").write_text(literal_block_after("# myfilter.py"))
    (tmp_path / "test_myfilter.py").write_text(literal_block_after("# test_myfilter.py"))
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "test_myfilter.py"],
        cwd=tmp_path, capture_output=True, text=True, timeout=120,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "2 passed" in done.stdout


def test_the_quick_start_test_line_is_what_ci_runs() -> None:
    quick_start = README.split("Quick start", 1)[1].split("A filter", 1)[0]
    commands = [line.strip() for line in quick_start.splitlines() if line.startswith("    ")]
    assert commands == [
        "pip install . && milterkit demo",
        "pip install '.[test]' && python -m pytest",
    ]
    ci = (ROOT / ".ci" / "run").read_text()
    assert "\npip install '.[test]' && python -m pytest\n" in ci
    assert "\nmilterkit demo\n" in ci
