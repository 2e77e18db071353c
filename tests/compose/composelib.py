"""Helpers of the composition tests: filters made from plain functions, and a composed
in-process session that records what the MTA got at every stage."""

from __future__ import annotations

import shutil
import subprocess
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from milterkit import Status
from milterkit.compose import Composer, FilterSpec, unit_from_object
from milterkit.compose.ranking import STAGE_NAMES
from milterkit.testing import InProcess, Message
from milterkit.testing.results import SessionResult
from milterkit.testing.server import Submission

Setup = Callable[[Any], object]
ROOT = Path(__file__).resolve().parents[2]
PLUGIN_DIST = ROOT / "examples" / "plugin-dist"


def spec(name: str, setup: Setup, **options: Any) -> FilterSpec:
    """A FilterSpec of a setup function named ``name``."""
    return FilterSpec(unit_from_object(name, setup, "test"), **options)


def returning(stage: str, status: Status | None, calls: list[str] | None = None,
              reply: tuple[str, str | None, str] | None = None) -> Setup:
    """A filter whose ``stage`` handler returns ``status`` (setting ``reply`` first)."""

    def setup(client: Any) -> None:
        def handler(context: Any, *args: Any) -> Status | None:
            if calls is not None:
                calls.append(f"{context.filter_name}:{stage}")
            if reply is not None:
                context.set_reply(*reply)
            return status

        client.connect(stage, handler)

    return setup


def recording(calls: list[str], stages: Sequence[str] = STAGE_NAMES) -> Setup:
    """A filter that records every event it gets and says nothing."""

    def setup(client: Any) -> None:
        for stage in stages:
            def handler(context: Any, *args: Any, stage: str = stage) -> None:
                calls.append(f"{context.filter_name}:{stage}")

            client.connect(stage, handler)

    return setup


class Composed:
    """An in-process session against a composition; ``responses`` is (stage, status) as the
    MTA got them, in order."""

    def __init__(self, specs: Sequence[FilterSpec], **server: Any) -> None:
        self.composer = Composer(specs)
        self.responses: list[tuple[str, Status]] = []
        self.results: list[Any] = []

        def setup(client: Any) -> None:
            self.composer.setup(client)
            for stage in STAGE_NAMES:
                client.connect(f"{stage}-response", self._recorder(stage))
            client.connect("message-processed",
                           lambda context, result: self.results.append(result))

        self.session = InProcess(setup, **server)

    def _recorder(self, stage: str) -> Callable[..., None]:
        def record(context: Any, status: Status) -> None:
            self.responses.append((stage, status))

        return record

    def run(self, messages: Sequence[Message | Submission] | Message = (),
            **options: Any) -> SessionResult:
        return self.session.run(messages if messages else [MESSAGE], **options)

    def answer(self, stage: str) -> Status:
        """The (first) status the MTA got at ``stage``."""
        for name, status in self.responses:
            if name == stage:
                return status
        raise AssertionError(f"no answer at {stage}: {self.responses}")


MESSAGE = Message.build(
    sender="alice@example.net", recipients=["bob@example.org"],
    headers=[("From", "alice@example.net"), ("Subject", "hi")], body=b"Hello\r\n",
)


def make_plugin_venv(where: Path) -> Path:
    """A real venv under ``where`` with examples/plugin-dist installed by pip; returns its
    python. It sees the packages of the running interpreter (milterkit among them) through a
    ``.pth`` file, as ``--system-site-packages`` would on a machine where they are system-wide.
    """
    source = where / "plugin-dist"
    shutil.copytree(PLUGIN_DIST, source, ignore=shutil.ignore_patterns("build", "*.egg-info"))
    venv = where / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--system-site-packages", str(venv)],
                   check=True, timeout=120)
    python = venv / "bin" / "python"
    site = subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_path("
                           "'purelib'))"], check=True, capture_output=True, text=True,
                          timeout=60).stdout.strip()
    # milterkit's own directory (an editable install maps it by a finder hook, which a .pth
    # line cannot carry) and every site directory of ours, for blinker and the rest.
    import milterkit

    visible = [str(Path(milterkit.__file__).resolve().parents[1])]
    visible += [entry for entry in sys.path if Path(entry).name in ("site-packages",
                                                                     "dist-packages")]
    (Path(site) / "milterkit-tests.pth").write_text("\n".join(visible) + "\n")
    offline = subprocess.run([str(python), "-c", "import setuptools, wheel"],
                             capture_output=True, timeout=60).returncode == 0
    # Without setuptools and wheel at hand, pip fetches them from PyPI (build isolation).
    isolation = ["--no-build-isolation"] if offline else []
    subprocess.run([str(python), "-m", "pip", "install", "--quiet", "--no-deps",
                    "--disable-pip-version-check", *isolation, str(source)],
                   check=True, timeout=300)
    return python
