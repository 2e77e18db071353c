"""OpenDKIM's miltertest, an independent MTA-side client, drives the examples; our own
``milterkit test-server`` must see the same verdicts and changes.

Each Lua script in this directory checks one filter's negotiation, replies and end-of-message
actions (``lib.lua`` holds the shared helpers). The runner starts ``milterkit run`` on a unix
socket, runs ``miltertest -s SCRIPT`` against it, then runs ``milterkit test-server`` against
the same process and compares what it reports with what the script established.
"""

from __future__ import annotations

import dataclasses
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from milterproc import EXAMPLES, FILTERS, MilterProcess

pytestmark = pytest.mark.miltertest

HERE = Path(__file__).resolve().parent


@dataclasses.dataclass(frozen=True)
class Case:
    """A Lua script, the filter it drives, and what ``milterkit test-server`` must report."""

    script: str
    target: Path
    test_server: tuple[str, ...]
    expected: tuple[str, ...]
    options: tuple[str, ...] = ()


CASES = [
    Case("add_header.lua", EXAMPLES / "add_header.py", ("--output-message",),
         ("status: pass", "+ X-Milterkit: yes")),
    Case("reject_sender.lua", EXAMPLES / "reject_sender.py", ("-f", "anyone@spam.example"),
         ("status: reject [550]<5.7.1>(Mail from spam.example is not accepted here. / "
          "If you think this is a mistake, / write to postmaster@example.com.)",)),
    Case("reject_recipient.lua", EXAMPLES / "reject_recipient.py",
         ("-r", "bob@example.com", "-r", "closed@example.com"),
         ("status: pass",
          "rejected-recipient: <closed@example.com> (reject) [550 5.1.1 This mailbox is closed]")),
    Case("replace_body.lua", EXAMPLES / "replace_body.py",
         ("-b", "Hello,\r\n", "--output-message"),
         ("+ -- ", "+ This message was checked by milterkit.")),
    Case("quarantine.lua", EXAMPLES / "quarantine.py", ("-H", "Subject:Please [QUARANTINE] this"),
         ("Quarantine reason: subject asks for quarantine",)),
    Case("two_handlers.lua", EXAMPLES / "two_handlers.py",
         ("-r", "bob@example.org", "-r", "carol@example.org", "-b", "0123456789",
          "--output-message"),
         ("+ X-Body-Size: 10", "+ X-Recipients: 2")),
    Case("async_lookup.lua", EXAMPLES / "async_lookup.py",
         ("-r", "alice@example.com", "-r", "mallory@example.com"),
         ("rejected-recipient: <mallory@example.com> (reject) [550 5.1.1 No such user here]",)),
    Case("progress_lookup.lua", EXAMPLES / "progress_lookup.py",
         ("-r", "alice@example.com", "-r", "mallory@example.com"),
         ("rejected-recipient: <mallory@example.com> (reject) [550 5.1.1 No such user here]",)),
    Case("scripted.lua", FILTERS / "scripted.py", ("-b", "reject-at-end-of-message"),
         ("status: reject [550]<5.7.1>(reject at end-of-message / second line of the reply / "
          "third line)",)),
]


@pytest.fixture
def socket_dir() -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix="mk-mt-"))  # short: unix socket paths are limited
    yield path
    shutil.rmtree(path, ignore_errors=True)


def test_every_script_has_a_case() -> None:
    scripts = {path.name for path in HERE.glob("*.lua")} - {"lib.lua"}
    assert scripts == {case.script for case in CASES}


@pytest.mark.parametrize("case", CASES, ids=[case.script for case in CASES])
def test_miltertest_script(case: Case, socket_dir: Path) -> None:
    spec = f"unix:{socket_dir / 'milter.sock'}"
    with MilterProcess(case.target, spec, list(case.options)) as milter:
        try:
            script = subprocess.run(
                ["miltertest", "-D", f"SOCKET={spec}", "-D", f"LIBDIR={HERE}",
                 "-s", str(HERE / case.script)],
                capture_output=True, text=True, timeout=60, check=False,
            )
            print(script.stdout, script.stderr)
            assert script.returncode == 0, f"miltertest failed: {script.stdout}{script.stderr}"
            assert f"PASS {case.script.removesuffix('.lua')}" in script.stdout

            ours = subprocess.run(
                [sys.executable, "-m", "milterkit", "test-server", "-s", spec, "--color", "no",
                 "--all-timeouts", "20", *case.test_server],
                capture_output=True, text=True, timeout=60, check=False,
            )
            print(ours.stdout, ours.stderr)
            assert ours.returncode == 0, ours.stderr
            lines = ours.stdout.splitlines()
            for expected in case.expected:
                assert expected in lines, f"test-server did not report {expected!r}"
        finally:
            print(milter.log())
