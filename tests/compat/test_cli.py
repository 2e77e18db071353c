"""``milterkit compat``: mistakes get one clear line and exit status 2; COMMAND forms work."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
from compatproc import CompatProcess

from milterkit.testing import Message, run_session

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "compat" / "pymilter_filter.py"


def _compat(*words: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "milterkit", "compat", *words],
                          capture_output=True, text=True, timeout=30, cwd=ROOT)


@pytest.mark.parametrize(("words", "message"), [
    (["nosuch", "x.py"], "milterkit compat: unknown flavour 'nosuch' (known: pymilter, "),
    (["pymilter"], "milterkit compat: no COMMAND given"),
    (["pymilter", "missing.py"], "milterkit compat: no such file: 'missing.py'"),
    (["pymilter", "no-such-script"], "milterkit compat: 'no-such-script' is not an installed "),
    (["pymilter", "-m", "no_such_module_here"], "milterkit compat: no module named "),
    (["pymilter", "--listen", "bogus:1", "x.py"], "milterkit compat: "),
])
def test_mistakes_are_one_line_and_exit_2(words: list[str], message: str) -> None:
    result = _compat(*words)
    assert result.returncode == 2, result.stderr
    assert result.stderr.startswith(message), result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert "Traceback" not in result.stderr


def test_a_flavour_whose_module_is_missing_is_a_clear_error() -> None:
    code = (
        "import sys\n"
        "from milterkit.cli import compat, main\n"
        "compat.FLAVOURS['ghost'] = 'milterkit.compat.no_such_flavour'\n"
        "sys.exit(main(['compat', 'ghost', 'x.py']))\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            timeout=30, cwd=ROOT)
    assert result.returncode == 2
    assert result.stderr.startswith("milterkit compat: flavour 'ghost' is not available")
    assert "Traceback" not in result.stderr


def _check(spec: str) -> None:
    result = run_session(spec, [
        Message.build(sender="a@example.net", recipients=["x@blocked.example", "y@ok.example"]),
    ])
    (outcome,) = result.messages
    assert [r.reply for r in outcome.rejected_recipients] == [
        "550-5.7.1 Recipient refused\r\n550 5.7.1 by the pymilter-style filter"]
    assert outcome.message is not None
    (added,) = [value for name, value in outcome.message.headers if name == "X-Checked-By"]
    assert re.fullmatch(r" pymilter-style filter #\d+ \(example.net\)", added), added


def test_the_example_runs_from_a_py_file(tmp_path: Path) -> None:
    spec = f"unix:{tmp_path}/example.sock"
    with CompatProcess([str(EXAMPLE), spec], spec):
        _check(spec)


def test_listen_overrides_the_applications_socket_and_m_runs_a_module(tmp_path: Path) -> None:
    spec = f"unix:{tmp_path}/override.sock"
    env = {"PYTHONPATH": str(EXAMPLE.parent)}
    with CompatProcess(["--listen", spec, "-m", "pymilter_filter", "unix:/nonexistent/x"],
                       spec, env=env):
        _check(spec)


def test_workers_serve_a_compat_application(tmp_path: Path) -> None:
    spec = f"unix:{tmp_path}/workers.sock"
    with CompatProcess(["--workers", "2", str(EXAMPLE), spec], spec) as proc:
        for _ in range(4):
            _check(spec)
        assert proc.stop() == 0


def test_the_ported_example_behaves_like_the_pymilter_one(tmp_path: Path) -> None:
    from milterproc import MilterProcess

    spec = f"unix:{tmp_path}/ported.sock"
    with MilterProcess(EXAMPLE.parent / "ported_filter.py", spec):
        _check(spec)


def test_a_compat_application_serves_an_inherited_socket_fd_n(tmp_path: Path) -> None:
    import socket

    path = tmp_path / "inherited.sock"
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(str(path))
    listener.listen(16)
    try:
        fd = listener.fileno()
        # The application asks for fd:N itself, as dkimpy-milter does under systemd.
        proc = CompatProcess([str(EXAMPLE), f"fd:{fd}"], f"unix:{path}")
        proc.pass_fds = (fd,)
        with proc:
            _check(f"unix:{path}")
    finally:
        listener.close()
