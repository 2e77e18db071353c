"""examples/purepythonmilter_app.py under ``milterkit compat purepythonmilter``, driven by the
MTA simulator: each of its decisions, and a mistake on the command line (exit 2)."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from ppmlib import free_port

from milterkit.testing import Message, SessionResult, run_session

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "purepythonmilter_app.py"


@pytest.fixture(scope="module")
def spec(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    port = free_port()
    log = tmp_path_factory.mktemp("app") / "log"
    with open(log, "wb") as out:
        proc = subprocess.Popen([sys.executable, "-m", "milterkit", "compat", "purepythonmilter",
                                 str(EXAMPLE), "--port", str(port)], stdout=out, stderr=out)
    try:
        deadline = time.monotonic() + 20
        while b"awaiting connections" not in log.read_bytes():
            assert proc.poll() is None and time.monotonic() < deadline, log.read_text()
            time.sleep(0.05)
        yield f"inet:{port}@127.0.0.1"
    finally:
        proc.terminate()
        proc.wait(10)


def run(spec: str, **message: object) -> SessionResult:
    return run_session(spec, Message.build(**message))  # type: ignore[arg-type]


def test_every_message_is_stamped_with_the_client_address(spec: str) -> None:
    outcome = run(spec).last
    assert outcome.verdict == "pass"
    assert ("X-Client-IP", " 192.168.123.123") in outcome.message.headers


def test_the_spammer_is_refused_with_its_reply(spec: str) -> None:
    outcome = run(spec, sender="spammer@example.com").last
    assert (outcome.verdict, outcome.reply) == ("reject", "571 5.7.1 We do not take mail from you")


def test_a_busy_domain_fails_temporarily(spec: str) -> None:
    outcome = run(spec, recipients=["a@busy.example", "b@example.org"]).last
    assert [r.reply for r in outcome.rejected_recipients] == ["451 4.7.1 Try again later"]


def test_the_subject_asks_for_a_new_body(spec: str) -> None:
    outcome = run(spec, headers=[("Subject", "please, a new body")], body="old\n").last
    assert outcome.message.body == b"The body was replaced.\r\n"


def test_an_unknown_flavour_or_command_is_a_clear_error_and_exit_2() -> None:
    for argv in (["nosuch", str(EXAMPLE)], ["purepythonmilter", "no-such-command-here"],
                 ["purepythonmilter", "-m"]):
        done = subprocess.run([sys.executable, "-m", "milterkit", "compat", *argv],
                              capture_output=True, text=True, timeout=30)
        assert done.returncode == 2, done
        # A clear last line naming the command, never a traceback.
        assert "Traceback" not in done.stderr
        assert "milterkit compat" in done.stderr.splitlines()[-1]


def test_module_and_path_forms_see_the_shadowed_package(tmp_path: Path) -> None:
    (tmp_path / "which_ppm.py").write_text(
        "import sys, purepythonmilter, purepythonmilter.api.models as m\n"
        "print(purepythonmilter.__name__, m.__name__, sys.argv[1:])\n")
    expected = ("milterkit.compat.purepythonmilter milterkit.compat.purepythonmilter.api.models "
                "['--flag', 'x']\n")
    env = {"PYTHONPATH": str(tmp_path), "PATH": "/usr/bin:/bin"}
    for command in (["-m", "which_ppm"], [str(tmp_path / "which_ppm.py")]):
        done = subprocess.run([sys.executable, "-m", "milterkit", "compat", "purepythonmilter",
                               *command, "--flag", "x"], capture_output=True, text=True,
                              timeout=30, env=env)
        assert (done.returncode, done.stdout) == (0, expected), (command, done.stderr)


def test_run_options_of_milterkit_compat_override_the_application_address(tmp_path: Path) -> None:
    """``milterkit compat purepythonmilter --listen SPEC app.py``: run_server serves on SPEC."""
    pytest.importorskip("milterkit.compat.runtime", reason="milterkit compat without run options")
    port = free_port()
    log = tmp_path / "log"
    with open(log, "wb") as out:
        proc = subprocess.Popen([sys.executable, "-m", "milterkit", "compat", "purepythonmilter",
                                 "--listen", f"inet:{port}@127.0.0.1", str(EXAMPLE),
                                 "--port", "1"], stdout=out, stderr=out)
    try:
        deadline = time.monotonic() + 20
        while b"awaiting connections" not in log.read_bytes():
            assert proc.poll() is None and time.monotonic() < deadline, log.read_text()
            time.sleep(0.05)
        assert run(f"inet:{port}@127.0.0.1").last.verdict == "pass"
    finally:
        proc.terminate()
        proc.wait(10)
