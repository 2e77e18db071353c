"""Fixtures of the purepythonmilter compatibility tests (helpers in ppmlib.py)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

# The helpers (lib/ppmlib.py) are imported by plain name, as tests/integration does its own.
_HERE = str(Path(__file__).resolve().parent / "lib")
if _HERE not in sys.path:
    sys.path.insert(0, _HERE)

from ppmlib import example_files, reference_python  # noqa: E402


@pytest.fixture(scope="session")
def reference() -> Path:
    """A Python with the real purepythonmilter 0.0.1 from PyPI."""
    return reference_python()


@pytest.fixture(scope="session")
def examples(reference: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """purepythonmilter 0.0.1's three example applications, unmodified."""
    return example_files(reference, tmp_path_factory.mktemp("ppm-examples"))
