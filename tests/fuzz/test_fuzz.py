"""Fuzzing in the suite, bounded: the seed corpus (real Postfix sessions and protocol edge
cases), hypothesis mutations of it, and, where atheris installs, a short coverage-guided run.
The longer run is a command in docs/reliability.rst (``python tests/fuzz/atheris_run.py ...``)."""

from __future__ import annotations

import logging
import os
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from fuzz_feed import PLAN, one_input, seeds
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

HERE = Path(__file__).resolve().parent
#: Seconds of coverage-guided fuzzing in the suite (MILTERKIT_FUZZ_SECONDS to change).
ATHERIS_SECONDS = int(os.environ.get("MILTERKIT_FUZZ_SECONDS", "20"))
SEEDS = seeds()


@pytest.fixture(autouse=True)
def _quiet() -> Iterator[None]:
    logging.disable(logging.CRITICAL)  # each fuzzed protocol error logs a line
    try:
        yield
    finally:
        logging.disable(logging.NOTSET)


def test_the_corpus_holds_real_sessions_and_edge_cases() -> None:
    assert len(SEEDS) >= 40
    assert any(b"postfix" in seed.lower() or b"{daemon_name}" in seed for seed in SEEDS)


@pytest.mark.parametrize("seed", SEEDS, ids=[f"seed{i}" for i in range(len(SEEDS))])
def test_every_seed_runs_clean(seed: bytes) -> None:
    one_input(seed)


@st.composite
def mutated(draw: st.DrawFn) -> bytes:
    """A seed with a few byte edits, cuts, splices or a new plan."""
    data = bytearray(draw(st.sampled_from(SEEDS)))
    for _ in range(draw(st.integers(0, 6))):
        action = draw(st.integers(0, 4))
        at = draw(st.integers(0, max(0, len(data) - 1)))
        if action == 0 and data:
            data[at] = draw(st.integers(0, 255))
        elif action == 1:
            data[at:at] = draw(st.binary(max_size=16))
        elif action == 2:
            del data[at : at + draw(st.integers(1, 64))]
        elif action == 3:
            other = draw(st.sampled_from(SEEDS))
            start = draw(st.integers(0, len(other)))
            data[at:] = other[start:]
        else:
            data[:PLAN] = draw(st.binary(min_size=PLAN, max_size=PLAN))
    return bytes(data)


@settings(max_examples=int(os.environ.get("MILTERKIT_FUZZ_EXAMPLES", "1500")), deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(data=mutated())
def test_mutated_sessions_never_crash(data: bytes) -> None:
    one_input(data)


@given(data=st.binary(max_size=512))
@settings(max_examples=500, deadline=None)
def test_random_bytes_never_crash(data: bytes) -> None:
    one_input(data)


def test_a_bounded_coverage_guided_run_finds_no_crash() -> None:
    pytest.importorskip("atheris", reason="atheris does not install here (hypothesis ran)")
    work = Path(tempfile.mkdtemp(prefix="mk-fuzz-"))
    try:
        corpus = work / "corpus"
        shutil.copytree(HERE / "corpus", corpus)
        done = subprocess.run(
            [sys.executable, str(HERE / "atheris_run.py"), f"-max_total_time={ATHERIS_SECONDS}",
             "-print_final_stats=1", "-rss_limit_mb=1024", f"-artifact_prefix={work}/",
             str(corpus)],
            capture_output=True, text=True, timeout=ATHERIS_SECONDS * 4 + 60, cwd=work,
        )
        crashes = sorted(path.name for path in work.iterdir() if path.name != "corpus")
        tail = "\n".join(done.stderr.splitlines()[-30:])
        assert done.returncode == 0 and not crashes, f"crashes: {crashes}\n{tail}"
        runs = re.search(r"stat::number_of_executed_units:\s*(\d+)", done.stderr)
        speed = re.search(r"stat::average_exec_per_sec:\s*(\d+)", done.stderr)
        assert runs is not None and int(runs.group(1)) > 0, tail
        print(f"atheris: {runs.group(1)} inputs, "
              f"{speed.group(1) if speed else '?'} exec/s, 0 crashes")
    finally:
        shutil.rmtree(work, ignore_errors=True)
