"""The examples of ``milterkit.testing`` under examples/testing: the filter author's pytest file
passes (and fails when a filter it tests is broken), and drive_servercontext.py prints what the
docs say it does."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
DOCS = ROOT / "docs"
EXAMPLES = ROOT / "examples"
#: How many tests examples/testing/test_filters.py holds (parametrized ones counted per MTA).
EXAMPLE_TESTS = 20


def pytest_in(directory: Path, cwd: Path) -> subprocess.CompletedProcess[str]:
    """``python -m pytest <directory> -q`` as a filter author would run it."""
    return subprocess.run(
        [sys.executable, "-m", "pytest", str(directory), "-q", "-p", "no:cacheprovider"],
        cwd=cwd, capture_output=True, text=True, timeout=180,
    )


def test_the_example_tests_pass() -> None:
    done = pytest_in(EXAMPLES / "testing", ROOT)
    assert done.returncode == 0, done.stdout + done.stderr
    summary = done.stdout.strip().splitlines()[-1]
    assert re.fullmatch(rf"{EXAMPLE_TESTS} passed in [\d.]+s", summary), summary


def test_the_example_tests_catch_broken_filters(tmp_path: Path) -> None:
    copy = tmp_path / "examples"
    shutil.copytree(EXAMPLES, copy, ignore=shutil.ignore_patterns("__pycache__"))
    add_header = copy / "add_header.py"
    add_header.write_text(add_header.read_text().replace('HEADER_VALUE = "yes"',
                                                         'HEADER_VALUE = "no"'))
    filters = copy / "testing" / "filters.py"
    filters.write_text(filters.read_text().replace('ARCHIVE_PARAMETERS = "NOTIFY=NEVER"',
                                                   'ARCHIVE_PARAMETERS = "NOTIFY=FAILURE"'))
    done = pytest_in(copy / "testing", tmp_path)
    assert done.returncode == 1, done.stdout + done.stderr
    failed = sorted(set(re.findall(r"^FAILED \S+::(\w+)", done.stdout, re.M)))
    assert failed == [
        "test_a_failed_assertion_says_what_the_milter_did", "test_add_header",
        "test_profiles_differ_on_the_wire", "test_redirect",
    ], done.stdout


def run_drive_servercontext() -> list[str]:
    done = subprocess.run(
        [sys.executable, str(EXAMPLES / "testing" / "drive_servercontext.py")],
        capture_output=True, text=True, timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert done.stderr == ""
    return done.stdout.splitlines()


def test_drive_servercontext_prints_each_outcome() -> None:
    lines = run_drive_servercontext()
    assert lines[0] == "-- part 1: ServerContext as sendmail, by hand"
    expected = [
        "  timeouts: command 10.0 s, body 60.0 s (a driver arms them; none here)",
        "  after start: awaiting negotiate, 17 bytes to send",
        "  milter: connect from client.example.net 2001:db8::25",
        "  milter: MAIL FROM <alice@example.net>, authenticated as alice",
        "  negotiated: version 6, actions 0xff, leading space False",
        "  connect CONTINUE, helo CONTINUE, ok=True, quit sent=True",
        "  message 1: pass at end-of-message, delivered=True",
        "    refused <closed@example.org>: REJECT, code 550, "
        "reply '550 5.1.1 This mailbox is closed'",
        "    delivered to ['<bob@example.org>']",
        # Sendmail sends D only when it has macros, no ABORT after a verdict, then QUIT; the
        # milter opted out of HELO, DATA, headers and body, so those are not sent at all.
        "  wire: O -> O, D, C -> c, D, M -> c, D, R -> c, D, R -> y, D, E -> h c, Q",
        "-- part 2: broken milters over 127.0.0.1",
        "  wrong_reply: MilterProtocolViolation: milter sent Continue (b'c') in answer to the "
        "option negotiation",
        "  early_change: MilterProtocolViolation: milter sent AddHeader (b'h') at connect; "
        "modifications belong to end-of-message",
        "  silent: ReplyTimeout: no reply to negotiate in time",
        "  silent, check=False: ok=False, error=ReplyTimeout, commands sent=1, messages=0",
    ]
    for line in expected:
        assert line in lines, line
    # The queue id is Sendmail's, known from MAIL on, and reaches the added header.
    [header] = [line for line in lines if line.startswith("    modification: AddHeader(")]
    assert re.fullmatch(r"    modification: AddHeader\(name='X-Checked', "
                        r"value='queue id \w+'\)", header), header
    assert lines[-1].startswith("  silent, check=False:")


def test_docs_show_what_drive_servercontext_prints() -> None:
    page = (DOCS / "testing.rst").read_text()
    # The code-block after "It prints:": its options paragraph, then its body.
    block = page.split("It prints:\n\n.. code-block:: text\n\n", 1)[1]
    shown = block.split("\n\n", 1)[0]
    assert shown.splitlines() == ["   " + line for line in run_drive_servercontext()]


def test_docs_include_both_examples() -> None:
    page = (DOCS / "testing.rst").read_text()
    for name in ("filters.py", "test_filters.py", "drive_servercontext.py"):
        assert f".. literalinclude:: ../examples/testing/{name}\n" in page, name
