"""examples/plugin-dist installed into a real venv by pip: its filters are found by their
entry points, listed by ``milterkit filters`` and composed by name."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from composelib import ROOT, make_plugin_venv


@pytest.fixture(scope="module")
def venv_python(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    yield make_plugin_venv(tmp_path_factory.mktemp("plugin-venv"))


def run(python: Path, *argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(python), *argv], capture_output=True, text=True, cwd=ROOT,
                          timeout=120)


def test_milterkit_filters_lists_the_installed_entry_points(venv_python: Path) -> None:
    done = run(venv_python, "-m", "milterkit", "filters", "--json")
    assert done.returncode == 0, done.stderr
    rows = {row["name"]: row for row in map(json.loads, done.stdout.splitlines())}
    assert rows["size-limit"]["distribution"] == "milterkit-plugin-demo 0.1.0"
    assert rows["size-limit"]["options"] == {"max-size": 10485760}
    assert rows["recipient-check"]["value"] == "milterkit_plugin_demo.recipients:RecipientCheck"
    assert "refuse the recipients" in rows["recipient-check"]["description"]
    text = run(venv_python, "-m", "milterkit", "filters")
    assert "size-limit  (milterkit_plugin_demo.size_limit, milterkit-plugin-demo 0.1.0)" \
        in text.stdout


def test_the_venvs_filters_compose_by_name(venv_python: Path) -> None:
    script = (
        "import milterkit_plugin_demo, sys\n"
        "from milterkit.compose import compose\n"
        "from milterkit.testing import Message, run_in_process\n"
        "message = Message.build(sender='a@example.net', recipients=['nobody@example.org',"
        " 'bob@example.org'], headers=[('Subject', 'x')])\n"
        "last = run_in_process(compose('size-limit', 'recipient-check',"
        " 'examples/add_header.py'), message).last\n"
        "print(milterkit_plugin_demo.__file__)\n"
        "print([r.reply for r in last.rejected_recipients])\n"
        "print(last.message.header('X-Recipients-Checked'), last.message.header('X-Milterkit'))\n"
    )
    done = run(venv_python, "-c", script)
    assert done.returncode == 0, done.stderr
    where, rejected, headers = done.stdout.splitlines()
    assert where.startswith(str(venv_python.parents[1]))  # the venv's copy, installed by pip
    assert rejected == "['550 5.1.1 Recipient address rejected']"
    assert headers == "1 yes"


def test_a_broken_entry_point_is_reported(venv_python: Path, tmp_path: Path) -> None:
    """A distribution whose entry point names a missing module: listed with the error."""
    dist = tmp_path / "broken-0.1.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: broken\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text("[milterkit.filters]\nbroken = no_such_module_xyz\n")
    done = subprocess.run([str(venv_python), "-m", "milterkit", "filters"], capture_output=True,
                          text=True, cwd=ROOT, timeout=120, env={"PYTHONPATH": str(tmp_path)})
    assert done.returncode == 1
    assert "broken  (no_such_module_xyz, broken 0.1)" in done.stdout
    assert "cannot load: filter 'broken' (no_such_module_xyz) cannot be loaded" in done.stdout


def test_one_installed_filter_is_served_by_name(venv_python: Path, tmp_path: Path) -> None:
    """``milterkit run size-limit``: an entry-point name alone is served (through the composer,
    so the filter gets its options)."""
    import select
    import signal
    import time

    log = tmp_path / "run.log"
    with open(log, "wb") as out:
        process = subprocess.Popen(
            [str(venv_python), "-m", "milterkit", "run", "size-limit", "-l",
             f"unix:{tmp_path / 'm.sock'}"], stdout=out, stderr=out, cwd=ROOT)
    try:
        deadline = time.monotonic() + 20
        while "listening on" not in log.read_text() and time.monotonic() < deadline:
            assert process.poll() is None, log.read_text()
            select.select([], [], [], 0.05)
        assert "composed 1 filter(s): size-limit" in log.read_text()
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=20)
