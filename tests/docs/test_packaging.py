"""Building milterkit from a checkout leaves the checkout as it was (no ``build/``)."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
#: What a checkout holds that a build reads.
SOURCES = ("pyproject.toml", "README.rst", "milterkit")


def test_building_a_wheel_writes_nothing_into_the_checkout(tmp_path: Path) -> None:
    checkout = tmp_path / "checkout"
    checkout.mkdir()
    for name in SOURCES:
        source = ROOT / name
        if source.is_dir():
            shutil.copytree(source, checkout / name,
                            ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        else:
            shutil.copy2(source, checkout / name)
    before = sorted(p.relative_to(checkout) for p in checkout.rglob("*"))
    offline = subprocess.run([sys.executable, "-c", "import hatchling"],
                             capture_output=True).returncode == 0
    if not offline:
        pytest.skip("hatchling is not installed (pip install '.[test]' brings it)")
    out = tmp_path / "wheels"
    done = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation",
         "-q", "-w", str(out), str(checkout)],
        capture_output=True, text=True, timeout=300,
    )
    assert done.returncode == 0, done.stderr
    assert [wheel.name.split("-")[0] for wheel in out.glob("*.whl")] == ["milterkit"]
    after = sorted(p.relative_to(checkout) for p in checkout.rglob("*"))
    assert after == before, f"the build wrote {sorted(set(after) - set(before))}"
