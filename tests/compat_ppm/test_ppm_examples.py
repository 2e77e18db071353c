"""purepythonmilter 0.0.1's example applications, unmodified, served by ``milterkit compat
purepythonmilter`` where purepythonmilter is not installed, driven by ``milterkit test-server``:
the verdicts and the changed message are those of the real purepythonmilter."""

from __future__ import annotations

import importlib.util
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest
from ppmlib import AppProcess


def test_purepythonmilter_is_not_importable_here() -> None:
    """The compat runs prove nothing if the real package could be imported by them."""
    assert importlib.util.find_spec("purepythonmilter") is None


def test_server(spec: str, *options: str) -> str:
    done = subprocess.run(
        [sys.executable, "-m", "milterkit", "test-server", "-s", spec, "--output-message",
         "--color", "no", *options],
        capture_output=True, text=True, timeout=60,
    )
    assert done.returncode == 0, done.stderr
    return re.sub(r"elapsed-time: .*\n", "", done.stdout)


test_server.__test__ = False  # type: ignore[attr-defined]  # a helper, not a test

CASES = {
    "append_header_ip": ([], "+ X-MilterExample-Connect-IP: 192.168.123.123"),
    "change_body": (["--newbody", "replaced by the milter"], "+ replaced by the milter"),
    "debug_log_all": ([], "status: pass"),
}


@pytest.mark.parametrize("name", list(CASES))
def test_example_matches_purepythonmilter(
    name: str, examples: dict[str, Path], reference: Path
) -> None:
    args, expected = CASES[name]
    outputs = {}
    for kind in ("reference", "compat"):
        # On Python 3.13 the real purepythonmilter 0.0.1 loses the race between its reader
        # seeing EOF (test-server, like Postfix, closes right after QUIT) and its session
        # running the queued ABORT and QUIT, so there it seldom calls those two hooks;
        # milterkit always does.
        teardown = kind == "compat" or sys.version_info < (3, 13)
        with AppProcess(kind, examples[name], args, reference=reference) as app:
            outputs[kind] = test_server(app.spec, "-H", "Subject: hello", "-b", "first chunk\n",
                                        "-b", "second chunk\n")
            log = app.log()
            # test-server is done once it has sent QUIT; the milter logs "On quit" as it
            # reads it, a moment later.
            deadline = time.monotonic() + 10
            while (name == "debug_log_all" and teardown and "On quit" not in log
                   and time.monotonic() < deadline):
                time.sleep(0.05)
                log = app.log()
        if name == "debug_log_all":
            # Every hook ran and logged with its connection id, in both implementations.
            lines = ["On connect: args=ConnectionInfoArgsIPv4(hostname='mx.example.net', "
                     "addr=IPv4Address('192.168.123.123'), port=50443)",
                     "On HELO: hostname=mx.example.net",
                     "On MAIL FROM: address=sender@example.com",
                     "On RCPT TO: address=receiver@example.org", "On DATA",
                     "On header: name=Subject text='hello'", "On end of headers",
                     "On body chunk: length=", "On end of message",
                     *(["On abort", "On quit"] if teardown else [])]
            for line in lines:
                assert re.search(r"[0-9a-f]{8}: " + re.escape(line), log), (kind, line, log)
    assert expected in outputs["compat"]
    assert outputs["compat"] == outputs["reference"]
