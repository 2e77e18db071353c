"""The documentation as a reader meets it: the first-filter tutorial's code works as printed,
the browser check of docs/screenshots.py sees a page that scrolls sideways, and the docs build
test skips on exactly what it needs."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

DOCS = Path(__file__).resolve().parents[2] / "docs"
sys.path.insert(0, str(DOCS))

import screenshots  # noqa: E402  (docs/screenshots.py)
from test_examples_docs import sphinx_importable  # noqa: E402


def _python_blocks(page: str) -> list[str]:
    text = (DOCS / page).read_text()
    return [textwrap.dedent(block) for block in
            re.findall(r"\.\. code-block:: python\n\n((?:   .*\n|\n)+)", text)]


def test_the_tutorials_filter_and_tests_pass_as_printed(tmp_path: Path) -> None:
    filter_source, test_source = _python_blocks("tutorial-first.rst")[:2]
    (tmp_path / "first.py").write_text(filter_source)
    (tmp_path / "test_first.py").write_text(test_source)
    done = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider"],
                          cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert "2 passed" in done.stdout, done.stdout + done.stderr


def test_the_sphinx_skip_tests_what_the_build_runs() -> None:
    imports = subprocess.run([sys.executable, "-c", "import sphinx"], capture_output=True)
    assert sphinx_importable() == (imports.returncode == 0)


@pytest.mark.skipif(shutil.which("chromium") is None, reason="needs chromium (apt-get install "
                    "chromium)")
def test_the_browser_check_sees_sideways_scrolling(tmp_path: Path) -> None:
    (tmp_path / "wide.html").write_text(
        '<html><body><div style="width:1500px">too wide</div></body></html>')
    (tmp_path / "boxed.html").write_text(
        '<html><body><div style="overflow-x:auto"><div style="width:1500px">scrolls in its box'
        '</div></div></body></html>')
    (tmp_path / "phone.html").write_text(
        '<html><body style="margin:0"><div style="width:450px">fits a laptop</div></body></html>')
    browser = screenshots.chromium()
    with screenshots.serving(tmp_path) as base:
        def extra(name: str, width: int) -> int:
            return screenshots.overflow(browser, tmp_path, base, tmp_path / name, width, 800)[0]

        assert extra("wide.html", 1200) > 0
        assert extra("boxed.html", 1200) <= 0
        assert extra("phone.html", 1200) <= 0
        assert extra("phone.html", 390) == 60  # in the 390-px frame (Chromium's window is 500)
