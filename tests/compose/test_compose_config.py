"""The TOML configuration and the command line: ``milterkit run A B C``, ``--config FILE``,
``milterkit filters``. Every mistake is one clear line and exit status 2."""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

import pytest

from milterkit.cli import build_parser
from milterkit.cli.run_compose import RunConfigError, apply_config, load_filters
from milterkit.compose import Composer, FilterLoadError, load_unit
from milterkit.compose.config import ConfigError, read_config
from milterkit.status import Status

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples"


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "filters.toml"
    path.write_text(text)
    return path


GOOD = f"""
[run]
listen = "inet:10099@127.0.0.1"
workers = 2
log-level = "debug"
socket-mode = "0640"

[[filter]]
use = "{EXAMPLES / 'reject_sender.py'}"
fallback = "accept"
timeout = 2.5
evaluation = true
conditions = ["unauthenticated", {{ name = "remote-network", trusted-networks = ["10.0.0.0/8"] }}]

[[filter]]
use = "add_header.py"
name = "stamp"
"""


def parse(argv: list[str]) -> argparse.Namespace:
    return build_parser().parse_args(["run", *argv])


def test_a_good_configuration(tmp_path: Path) -> None:
    path = write(tmp_path, GOOD)
    (tmp_path / "add_header.py").write_text((EXAMPLES / "add_header.py").read_text())
    config = read_config(path)
    first, second = config.filters
    assert first.label == "reject_sender"
    assert (first.fallback, first.timeout, first.evaluation) == (Status.ACCEPT, 2.5, True)
    assert [c.name for c in first.conditions] == ["unauthenticated", "remote-network"]
    assert second.label == "stamp"
    assert second.unit.source.startswith(str(tmp_path))  # relative to the file
    args = parse(["--config", str(path), "--workers", "3"])
    apply_config(args)
    assert args.listen == "inet:10099@127.0.0.1"
    assert args.workers == 3  # the command line wins
    assert args.log_level == "debug"
    assert args.socket_mode == 0o640
    assert isinstance(load_filters(args), Composer)


@pytest.mark.parametrize(("text", "message"), [
    ("[[filter]]\nuse = 'x'\n[other]\n", "unknown key 'other'"),
    ("", "no filter"),
    ("filter = 3\n", "array of tables"),
    ("[[filter]]\nname = 'x'\n", 'needs use = "FILTER"'),
    ("[[filter]]\nuse = 'nosuch_module_xyz'\n", "no module named 'nosuch_module_xyz'"),
    (f"[[filter]]\nuse = '{EXAMPLES / 'add_header.py'}'\ncolour = 1\n", "unknown key 'colour'"),
    (f"[[filter]]\nuse = '{EXAMPLES / 'add_header.py'}'\nfallback = 'discard'\n",
     "fallback must be one of"),
    (f"[[filter]]\nuse = '{EXAMPLES / 'add_header.py'}'\nfallback = 'maybe'\n",
     "unknown status 'maybe'"),
    (f"[[filter]]\nuse = '{EXAMPLES / 'add_header.py'}'\nevaluation = 'yes'\n",
     "evaluation must be a bool"),
    (f"[[filter]]\nuse = '{EXAMPLES / 'add_header.py'}'\ntimeout = -1\n", "timeout must be"),
    (f"[[filter]]\nuse = '{EXAMPLES / 'add_header.py'}'\nconditions = ['nope']\n",
     "unknown condition 'nope'"),
    (f"[[filter]]\nuse = '{EXAMPLES / 'add_header.py'}'\n[filter.options]\nx = 1\n",
     "has no option 'x'"),
    ("[[filter\n", "not valid TOML"),
])
def test_configuration_mistakes(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        read_config(write(tmp_path, text))


@pytest.mark.parametrize(("run", "message"), [
    ("colour = 'red'", r"\[run\] has no key 'colour'"),
    ("workers = 0", r"\[run\] workers: must be at least 1"),
    ("log-level = 'loud'", "is not one of"),
    ("socket-mode = 660", "string of octal digits"),
    ("listen = ['a']", "is not a value for --listen"),
    ("config = 'x'", r"\[run\] has no key 'config'"),
])
def test_run_setting_mistakes(tmp_path: Path, run: str, message: str) -> None:
    path = write(tmp_path, f"[run]\n{run}\n[[filter]]\nuse = '{EXAMPLES / 'add_header.py'}'\n")
    with pytest.raises(RunConfigError, match=message):
        apply_config(parse(["--config", str(path)]))


def test_option_types_are_checked() -> None:
    unit = load_unit(str(EXAMPLES / "add_header.py"))
    assert unit.check_options({}) == {}
    from milterkit.compose import unit_from_object

    def setup(client: object) -> None:
        """A filter with options."""

    setup.OPTIONS = {"limit": 10, "ratio": 0.5, "on": True, "names": ["a"]}  # type: ignore[attr-defined]
    typed = unit_from_object("typed", setup, "test")
    assert typed.description == "A filter with options."
    assert typed.check_options({"limit": 3, "ratio": 1})["ratio"] == 1
    for bad in ({"limit": "3"}, {"on": 1}, {"limit": True}, {"names": "a"}):
        with pytest.raises(FilterLoadError, match="must be"):
            typed.check_options(bad)


def test_several_targets_compose() -> None:
    args = parse([str(EXAMPLES / "add_header.py"), str(EXAMPLES / "reject_sender.py")])
    composer = load_filters(args)
    assert isinstance(composer, Composer)
    assert [spec.label for spec in composer.specs] == ["add_header", "reject_sender"]


def test_the_same_filter_twice_needs_a_name() -> None:
    args = parse([str(EXAMPLES / "add_header.py"), str(EXAMPLES / "add_header.py")])
    with pytest.raises(RunConfigError, match="two filters are called 'add_header'"):
        load_filters(args)


def cli(*argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "milterkit", *argv], capture_output=True,
                          text=True, cwd=ROOT, timeout=60)


@pytest.mark.parametrize(("argv", "message"), [
    (["run"], "no filter given"),
    (["run", "--config", "/nonexistent/filters.toml"], "cannot read"),
    (["run", "--config", "examples/filters.toml", "examples/add_header.py"], "not both"),
    (["run", "nosuch_filter_xyz", "examples/add_header.py"], "no installed filter is called"),
])
def test_cli_mistakes_are_one_line_and_exit_2(argv: list[str], message: str) -> None:
    done = cli(*argv)
    assert done.returncode == 2, done.stderr
    assert message in done.stderr
    assert "Traceback" not in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1
