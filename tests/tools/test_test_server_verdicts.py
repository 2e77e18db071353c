"""``milterkit test-server --expect`` / ``--fail-on-verdict`` exit 3 on a verdict not wanted
(for scripts and CI), and HELO defaults to the client's host name rather than a stray word."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

from milterkit.testing.pytest_plugin import MilterProcess

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
Start = Callable[..., MilterProcess]


def _test_server(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "milterkit", "test-server", *args],
                          capture_output=True, text=True, timeout=60)


def test_expect_and_fail_on_verdict(milter_server: Start) -> None:
    milter = milter_server(EXAMPLES / "reject_sender.py")
    spam = ("-s", milter.spec, "-f", "spammer@spam.example")
    assert _test_server(*spam).returncode == 0  # no expectation: the reject is just printed
    done = _test_server(*spam, "--expect", "pass")
    assert done.returncode == 3
    assert "session 1 message 1: verdict reject at envelope-from (550-5.7.1 Mail from " \
        "spam.example is not accepted here. / 550-5.7.1" in done.stderr
    assert len(done.stderr.splitlines()) == 1
    assert _test_server(*spam, "--expect", "reject,tempfail").returncode == 0
    assert _test_server(*spam, "--fail-on-verdict", "reject").returncode == 3
    assert _test_server("-s", milter.spec, "--fail-on-verdict", "reject").returncode == 0
    assert _test_server("-s", milter.spec, "--expect", "continue").returncode == 0


def test_an_unknown_verdict_name_is_a_usage_error() -> None:
    done = _test_server("--expect", "rejected")
    assert done.returncode == 2
    assert "unknown verdict 'rejected'" in done.stderr


def test_helo_defaults_to_the_connect_host(milter_server: Start, tmp_path: Path) -> None:
    filt = tmp_path / "helo.py"
    filt.write_text("def setup(client):\n"
                    "    @client.on('helo')\n"
                    "    def helo(context, name):\n"
                    "        return context.reject('550', '5.7.1', 'helo ' + name)\n")
    milter = milter_server(filt)
    done = _test_server("-s", milter.spec, "--connect-host", "client.example.org")
    assert "helo client.example.org" in done.stdout, done.stdout
    done = _test_server("-s", milter.spec, "--helo-fqdn", "other.example")
    assert "helo other.example" in done.stdout, done.stdout
