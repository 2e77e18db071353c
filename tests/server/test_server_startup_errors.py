"""Every mistake in a filter file or on ``milterkit run``'s command line: one line that says
where and what, exit status 2, no traceback (a system that refuses, like a missing socket
directory, is exit status 1 with one line naming it)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from serverlib import short_tmpdir

from milterkit.server import SpecError, parse_spec

FILTERS = {
    "syntax.py": ("def setup(client)\n    pass\n",
                  "syntax.py:1: syntax error: "),
    "typo.py": ("def setup(client):\n    client.on('envelope_form')(lambda c, a: None)\n",
                "typo.py:2: unknown signal 'envelope_form' (did you mean 'envelope-from'?)"),
    "arity.py": ("def setup(client):\n    client.connect('header', lambda c, name: None)\n",
                 "arity.py:2: header handlers are called as handler(context, name, value)"),
    "imports.py": ("import no_such_dependency_xyz\ndef setup(client):\n    pass\n",
                   "imports.py:1: the filter imports 'no_such_dependency_xyz', which is not "
                   "installed"),
    "raises.py": ("def setup(client):\n    open('/no/such/config.ini')\n",
                  "raises.py:2: FileNotFoundError: "),
    "nosetup.py": ("X = 1\n", "nosetup.py defines no setup(client) function"),
    "classy.py": ("import milterkit\nclass C(milterkit.ClientContext):\n"
                  "    def do_envelope_form(self, address):\n        pass\n"
                  "def setup(client):\n    pass\n",
                  "classy.py:2: C.do_envelope_form matches no signal; did you mean "
                  "'do_envelope_from'?"),
}


def _run(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "milterkit", "run", *args], cwd=cwd,
                          capture_output=True, text=True, timeout=30)


def _one_line(result: subprocess.CompletedProcess[str]) -> str:
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "Traceback" not in result.stderr
    return lines[0]


@pytest.mark.parametrize("name", sorted(FILTERS))
def test_a_mistake_in_the_filter_file_is_one_line_and_exit_2(name: str) -> None:
    source, expected = FILTERS[name]
    with short_tmpdir() as tmp:
        (tmp / name).write_text(source)
        result = _run(tmp, name, "-l", f"unix:{tmp}/m.sock")
    assert result.returncode == 2, result.stderr
    line = _one_line(result)
    assert line.startswith("milterkit run: ")
    assert expected in line, line


@pytest.mark.parametrize(("spec", "hint"), [
    ("inet:127.0.0.1:10025", "use inet:10025@[127.0.0.1]"),
    ("inet:localhost:10025", "use inet:10025@localhost"),
    ("inet:[::1]:10025", "use inet6:10025@[::1]"),
])
def test_postfix_form_of_a_spec_names_the_milterkit_form(spec: str, hint: str) -> None:
    with pytest.raises(SpecError, match=r"Postfix's form") as raised:
        parse_spec(spec)
    assert hint in str(raised.value)
    with short_tmpdir() as tmp:
        (tmp / "f.py").write_text("def setup(client):\n    pass\n")
        result = _run(tmp, "f.py", "-l", spec)
    assert result.returncode == 2
    assert hint in _one_line(result)


def test_the_milterkit_forms_still_parse() -> None:
    assert str(parse_spec("inet:10025@127.0.0.1")) == "inet:10025@[127.0.0.1]"
    assert str(parse_spec("inet:10025")) == "inet:10025"


def test_a_missing_socket_directory_is_named() -> None:
    with short_tmpdir() as tmp:
        (tmp / "f.py").write_text("def setup(client):\n    pass\n")
        result = _run(tmp, "f.py", "-l", f"unix:{tmp}/not-there/m.sock")
    assert result.returncode == 1
    line = _one_line(result)
    assert f"the directory {tmp}/not-there does not exist" in line, line
    assert "[Errno" not in line


def test_a_bad_option_value_is_argparse_one_line_and_exit_2() -> None:
    with short_tmpdir() as tmp:
        (tmp / "f.py").write_text("def setup(client):\n    pass\n")
        result = _run(tmp, "f.py", "--threads", "none")
    assert result.returncode == 2
    assert result.stderr.strip().splitlines()[-1].startswith("milterkit run: error: argument "
                                                              "--threads")
