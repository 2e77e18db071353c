"""The skip-or-fail rule (availability.py): a missing Postfix skips, except in CI: it fails."""

from __future__ import annotations

import pytest
from availability import REQUIRE_VARIABLE, need


def test_missing_program_skips_with_install_hint(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(REQUIRE_VARIABLE, raising=False)
    with pytest.raises(pytest.skip.Exception) as excinfo:
        need(False, "postfix is not usable (not found)")
    assert "apt-get install -y postfix miltertest" in str(excinfo.value)


@pytest.mark.parametrize("value", ["1", "yes"])
def test_missing_program_fails_when_required(
    monkeypatch: pytest.MonkeyPatch, value: str
) -> None:
    monkeypatch.setenv(REQUIRE_VARIABLE, value)
    with pytest.raises(pytest.fail.Exception) as excinfo:
        need(False, "miltertest is not usable (not found)")
    assert f"{REQUIRE_VARIABLE}=1 forbids skipping" in str(excinfo.value)


@pytest.mark.parametrize("value", ["", "0"])
def test_required_off(monkeypatch: pytest.MonkeyPatch, value: str) -> None:
    monkeypatch.setenv(REQUIRE_VARIABLE, value)
    with pytest.raises(pytest.skip.Exception):
        need(False, "postfix is not usable")


def test_available_program_neither_skips_nor_fails(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(REQUIRE_VARIABLE, "1")
    need(True, "postfix")  # returns: the test goes on
