"""Manager tests: the helpers of tests/integration (postfix.py, stack.py, milterproc.py) and the
ones next to this file are imported by plain name; Postfix tests skip, or fail in CI."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

_HERE = Path(__file__).resolve().parent
for _path in (str(_HERE / "lib"), str(_HERE.parent / "integration")):
    if _path not in sys.path:
        sys.path.insert(0, _path)

from availability import check_markers  # noqa: E402


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item: pytest.Item) -> None:
    check_markers(item)
