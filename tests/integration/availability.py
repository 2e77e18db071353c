"""Skip -- or, in CI, fail -- the tests that need Postfix or miltertest when they are missing.

A test marked ``postfix`` or ``miltertest`` runs only where the real program is installed. On a
developer's machine without it the test is skipped with the command that installs it; with
``MILTERKIT_REQUIRE_POSTFIX=1`` in the environment (``.ci/run`` sets it) it fails instead, so CI
can never pass by skipping the real-MTA tests. The conftest.py files of ``tests/integration``
and ``tests/miltertest`` call :func:`check_markers` before each test.
"""

from __future__ import annotations

import os
import shutil

import pytest
from postfix import postfix_available

__all__ = ["INSTALL", "REQUIRE_VARIABLE", "check_markers", "miltertest_available", "need",
           "required"]

INSTALL = "apt-get update && apt-get install -y postfix miltertest (or .ci/install-postfix.sh)"
REQUIRE_VARIABLE = "MILTERKIT_REQUIRE_POSTFIX"


def required() -> bool:
    """Whether a missing Postfix/miltertest is an error here (CI) rather than a skip."""
    return os.environ.get(REQUIRE_VARIABLE, "") not in ("", "0")


def need(ok: bool, reason: str) -> None:
    """Skip the running test (or fail it when :func:`required`) unless ``ok``."""
    if ok:
        return
    message = f"{reason}; install: {INSTALL}"
    if required():
        pytest.fail(f"{message} ({REQUIRE_VARIABLE}=1 forbids skipping)", pytrace=False)
    pytest.skip(message)


def miltertest_available() -> tuple[bool, str]:
    """Is OpenDKIM's ``miltertest`` on PATH?  Returns (ok, reason)."""
    path = shutil.which("miltertest")
    if path is None:
        return False, "miltertest not found"
    return True, path


_CHECKS = {"postfix": postfix_available, "miltertest": miltertest_available}
_RESULTS: dict[str, tuple[bool, str]] = {}


def check_markers(item: pytest.Item) -> None:
    """Check the programs ``item``'s markers ask for (each program is looked up once)."""
    for marker, check in _CHECKS.items():
        if item.get_closest_marker(marker) is None:
            continue
        if marker not in _RESULTS:
            _RESULTS[marker] = check()
        ok, reason = _RESULTS[marker]
        need(ok, f"{marker} is not usable ({reason})")
