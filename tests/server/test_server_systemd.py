"""The systemd units under examples/systemd: valid for systemd, and their ExecStart is a valid
``milterkit run`` command line. (Socket activation itself is tested in test_server_cli.py.)"""

from __future__ import annotations

import configparser
import shlex
import shutil
import subprocess
from pathlib import Path

import pytest
from serverlib import ROOT, short_tmpdir

from milterkit.cli import build_parser

UNITS = ROOT / "examples" / "systemd"


def _unit(name: str) -> configparser.ConfigParser:
    parser = configparser.ConfigParser(strict=False, interpolation=None)
    parser.optionxform = str  # type: ignore[assignment,method-assign]
    parser.read(UNITS / name)
    return parser


def test_exec_start_is_a_valid_milterkit_run_command() -> None:
    service = _unit("milterkit.service")
    argv = shlex.split(service["Service"]["ExecStart"])
    assert Path(argv[0]).name == "milterkit" and argv[1] == "run"
    args = build_parser().parse_args(argv[1:])
    assert args.workers == 2 and args.shutdown_timeout == 30.0
    # systemd must give the drain time to finish before it sends SIGKILL.
    assert float(service["Service"]["TimeoutStopSec"]) > args.shutdown_timeout
    # SIGTERM to the master only: it drains the workers itself.
    assert service["Service"]["KillMode"] == "mixed"
    assert service["Unit"]["Requires"] == "milterkit.socket"


def test_socket_unit() -> None:
    socket_unit = _unit("milterkit.socket")
    assert socket_unit["Socket"]["ListenStream"].startswith("/")
    assert socket_unit["Socket"]["SocketMode"] == "0660"


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="no systemd-analyze")
def test_systemd_analyze_verify() -> None:
    milterkit = shutil.which("milterkit")
    if milterkit is None:
        pytest.skip("the milterkit command is not on PATH")
    with short_tmpdir() as tmp:
        for name in ("milterkit.socket", "milterkit.service"):
            text = (UNITS / name).read_text().replace("/usr/local/bin/milterkit", milterkit)
            (tmp / name).write_text(text)
        result = subprocess.run(
            ["systemd-analyze", "verify", "milterkit.socket", "milterkit.service"],
            cwd=tmp, capture_output=True, text=True, timeout=60,
        )
        assert result.returncode == 0, result.stderr
        assert result.stderr.strip() == ""
