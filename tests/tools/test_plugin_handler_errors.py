"""The pytest plugin does not let a crashing handler pass: the ``milter`` fixture re-raises a
handler's exception (``handler_errors="policy"`` tests the tempfail instead), assertion failures
show the verdict and the handler's error, and ``milter("file.py")`` is found next to the test."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

from milterkit import Status
from milterkit.testing import InProcess, Message, assert_header_added, assert_verdict

CRASHING = '''
def setup(client):
    @client.on("end-of-message")
    def stamp(context, chunk):
        raise RuntimeError("boom in stamp")
'''


def crashing(client: Any) -> None:
    def stamp(context: Any, chunk: bytes) -> None:
        raise RuntimeError("boom in stamp")

    client.connect("end-of-message", stamp)


def _pytest(directory: Path, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(directory)],
        cwd=cwd, capture_output=True, text=True, timeout=120,
    )


def test_the_fixture_re_raises_and_finds_the_filter_next_to_the_test(tmp_path: Path) -> None:
    tests = tmp_path / "tests"
    tests.mkdir()
    (tests / "myfilter.py").write_text(CRASHING)
    (tests / "test_mine.py").write_text(textwrap.dedent('''
        from milterkit.testing import Message, assert_verdict

        def test_forgets_the_verdict(milter):
            milter("myfilter.py").run(Message())  # asserts nothing: must still fail

        def test_the_policy_on_request(milter):
            result = milter("myfilter.py", handler_errors="policy").run(Message())
            assert_verdict(result, "tempfail", code="451")
            assert [stage for stage, _ in result.handler_errors] == ["end-of-message"]
    '''))
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    done = _pytest(tests, cwd=elsewhere)  # not the tests' directory: found beside the test
    assert "1 failed, 1 passed" in done.stdout, done.stdout + done.stderr
    assert "RuntimeError: boom in stamp" in done.stdout
    assert "no such file" not in done.stdout


def test_policy_mode_records_the_error_per_message() -> None:
    result = InProcess(crashing).run([Message(), Message()])
    assert [m.status for m in result.messages] == [Status.TEMPORARY_FAILURE] * 2
    assert [(stage, str(e)) for m in result.messages for stage, e in m.handler_errors] == [
        ("end-of-message", "boom in stamp")] * 2
    assert len(result.handler_errors) == 2


def test_raise_mode_raises_the_handlers_own_exception() -> None:
    with pytest.raises(RuntimeError, match="boom in stamp"):
        InProcess(crashing, handler_errors="raise").run(Message())


def test_a_clean_run_raises_nothing_in_raise_mode() -> None:
    result = InProcess(lambda client: None, handler_errors="raise").run(Message())
    assert_verdict(result, "pass")
    assert result.handler_errors == []


def test_assertion_messages_show_the_verdict_and_the_handler_error() -> None:
    result = InProcess(crashing).run(Message())
    with pytest.raises(AssertionError) as failure:
        assert_header_added(result, "X-Stamp", "yes")
    text = str(failure.value)
    assert "no header added" in text
    assert "verdict temporary-failure at end-of-message" in text
    assert "451 4.3.0" in text
    assert "RuntimeError('boom in stamp') at end-of-message" in text
    with pytest.raises(AssertionError, match=r"verdict is 'temporary-failure', not 'pass'.*"
                       r"boom in stamp"):
        assert_verdict(result, "pass")


def test_handler_errors_takes_two_words() -> None:
    with pytest.raises(ValueError, match="'policy' or 'raise'"):
        InProcess(crashing, handler_errors="ignore")
