"""The documented configuration, examples/manager/manager.toml (OpenDKIM started by the manager
and examples/add_header.py in-process), behind the private Postfix exactly as docs/manager.rst
runs it; and examples/manager_embedded.py, the manager built in Python."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator

import pytest
from managerlib import (
    EXAMPLE_DIR,
    MESSAGE,
    delivered,
    example_config,
    header_block,
    make_key,
    need_opendkim,
    opendkim_conf,
    verify,
)
from postfix import free_port
from stack import Stack, session


@pytest.fixture(scope="module")
def documented(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Stack, bytes]]:
    need_opendkim()
    directory = tmp_path_factory.mktemp("documented")
    record = make_key(directory)
    port = free_port()
    config = example_config(directory, port, opendkim_conf(directory, port))
    with Stack(f"--config={config}") as stack:
        yield stack, record


@pytest.mark.postfix
def test_the_documented_configuration_signs_and_stamps(documented: tuple[Stack, bytes]) -> None:
    stack, record = documented
    result = session(stack.pf, message=MESSAGE)
    assert result.data is not None and result.data[0] == 250, stack.report()
    data = delivered(stack, result.queue_id)
    headers = header_block(data)
    assert verify(data, record), stack.report()
    assert b"\nX-Milterkit: yes" in headers
    assert b"\nX-Milter-Verdicts: opendkim=accept; add-header=continue" in headers
    # What docs/manager.rst shows of the manager's log.
    log = stack.milter.log()
    assert "composed 2 filter(s): opendkim, add-header" in log
    assert "managing 1 child milter(s): opendkim at inet:" in log


def test_the_example_files_are_what_the_test_rewrites() -> None:
    """The rewriting above replaces these exact strings: a changed example must fail here."""
    toml = (EXAMPLE_DIR / "manager.toml").read_text()
    conf = (EXAMPLE_DIR / "opendkim.conf").read_text()
    for text in ('connection = "inet:8891@127.0.0.1"', '/etc/opendkim/opendkim.conf',
                 'use = "../add_header.py"'):
        assert text in toml
    for text in ("/etc/dkimkeys/test.private", "inet:8891@127.0.0.1"):
        assert text in conf


def test_the_embedded_manager_example() -> None:
    out = subprocess.run([sys.executable, str(EXAMPLE_DIR.parent / "manager_embedded.py")],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert "probe: CONNECT answered nothing (not asked)" in lines
    assert "probe: MAIL answered Continue" in lines
    assert "alice@example.net: continue" in lines
    assert "  X-Milter-Verdicts: child=continue; gone=accept (failed); stamp=continue" in lines
    assert "bob@spam.example: reject 550 5.7.1 child: no spam.example here" in lines
    assert any(line.startswith("start-up error: milter never: ") for line in lines)
