"""The fixtures and hook of tests/scale/conftest.py (kept here so that mypy checks them: two
conftest modules on one MYPYPATH would clash)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from availability import check_markers
from scalelib import RedisServer, need_scale_tools

__all__ = ["pytest_runtest_setup", "redis_server"]


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
