"""The miltertest scripts follow the integration tests' rule: skip without the program, fail
instead when ``MILTERKIT_REQUIRE_POSTFIX=1`` (CI); see tests/integration/availability.py."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

_INTEGRATION = str(Path(__file__).resolve().parents[1] / "integration")
if _INTEGRATION not in sys.path:
    sys.path.insert(0, _INTEGRATION)

from availability import check_markers  # noqa: E402


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item: pytest.Item) -> None:
    """Check for miltertest before the test starts a milter."""
    check_markers(item)
