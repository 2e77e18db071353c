"""Manager tests: the helpers of tests/integration (postfix.py, stack.py, milterproc.py) and the
ones next to this file are imported by plain name; Postfix tests skip, or fail in CI."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

_HERE = Path(__file__).resolve().parent
for _path in (str(_HERE / "lib"), str(_HERE.parent / "integration")):
    if _path not in sys.path:
        sys.path.insert(0, _path)

from availability import check_markers  # noqa: E402
from managerlib import FILTERS  # noqa: E402
from milterproc import MilterProcess  # noqa: E402
from postfix import free_port  # noqa: E402


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item: pytest.Item) -> None:
    check_markers(item)


@pytest.fixture(scope="module")
def guard() -> Iterator[str]:
    """tests/manager/filters/guard.py served by its own milterkit run process."""
    spec = f"inet:{free_port()}@127.0.0.1"
    with MilterProcess(FILTERS / "guard.py", spec):
        yield spec
