"""pymilter compat tests: the integration helpers (milterproc, postfix, stack) by plain name."""

from __future__ import annotations

import sys
from pathlib import Path

_HERE = Path(__file__).resolve().parent
for path in (_HERE, _HERE.parent / "integration"):
    if str(path) not in sys.path:
        sys.path.insert(0, str(path))

import pytest  # noqa: E402
from availability import check_markers  # noqa: E402


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item: pytest.Item) -> None:
    """Postfix-marked tests fail in CI instead of skipping (as tests/integration's do)."""
    check_markers(item)
