"""Fixtures of the purepythonmilter compatibility tests (helpers in ppmlib.py)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

# The helpers (lib/ppmlib.py) are imported by plain name, as tests/integration does its own.
_HERE = str(Path(__file__).resolve().parent / "lib")
if _HERE not in sys.path:
    sys.path.insert(0, _HERE)

# The private-Postfix harness of tests/integration, reused by test_postfix.py.
_INTEGRATION = str(Path(__file__).resolve().parents[1] / "integration")
if _INTEGRATION not in sys.path:
    sys.path.append(_INTEGRATION)

from availability import check_markers  # noqa: E402
from ppmlib import example_files, reference_python  # noqa: E402


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item: pytest.Item) -> None:
    """Skip the ``postfix`` tests without Postfix (fail in CI), as tests/integration does."""
    check_markers(item)


@pytest.fixture(scope="session")
def reference() -> Path:
    """A Python with the real purepythonmilter 0.0.1 from PyPI."""
    return reference_python()


@pytest.fixture(scope="session")
def examples(reference: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """purepythonmilter 0.0.1's three example applications, unmodified."""
    return example_files(reference, tmp_path_factory.mktemp("ppm-examples"))
