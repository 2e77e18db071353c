"""Scale-out tests: real Redis, real HAProxy, the private Postfix of tests/integration."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

# The helpers here (scalelib) and those of tests/integration (postfix, stack, milterproc,
# availability) are imported by plain name.
_HERE = Path(__file__).resolve().parent
for _path in (str(_HERE), str(_HERE.parent / "integration")):
    if _path not in sys.path:
        sys.path.insert(0, _path)

from availability import check_markers  # noqa: E402
from scalelib import RedisServer, need_scale_tools  # noqa: E402


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item: pytest.Item) -> None:
    """Postfix-marked tests fail instead of skipping in CI, as in tests/integration."""
    check_markers(item)


@pytest.fixture(scope="module")
def redis_server() -> Iterator[RedisServer]:
    """A private redis-server for the module."""
    need_scale_tools()
    with RedisServer() as server:
        yield server
