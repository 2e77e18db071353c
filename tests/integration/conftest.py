"""Real-MTA tests: skip without Postfix/miltertest, fail instead in CI (see availability.py)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

# The helpers next to this file (postfix.py, milterproc.py, stack.py...) are imported by plain
# name whatever pytest's import mode is.
_HERE = str(Path(__file__).resolve().parent)
if _HERE not in sys.path:
    sys.path.insert(0, _HERE)

from availability import check_markers  # noqa: E402


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item: pytest.Item) -> None:
    """Before a marked test's fixtures start anything, and before a module's own ``skipif``
    could skip it (``tryfirst``), so that CI fails instead."""
    check_markers(item)
