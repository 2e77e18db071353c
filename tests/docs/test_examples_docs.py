"""The tutorial's example runs and prints what the docs show; every public name is documented;
the generated tables of the docs say what the code does; the docs build with warnings as errors.
"""

from __future__ import annotations

import importlib.util
import re
import shutil
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest

import milterkit
from milterkit import SIGNAL_NAMES
from milterkit.stages import NOTIFICATIONS, STAGES

ROOT = Path(__file__).resolve().parents[2]
DOCS = ROOT / "docs"
EXAMPLE = ROOT / "examples" / "feed_capture.py"


def run_example() -> str:
    done = subprocess.run(
        [sys.executable, str(EXAMPLE)], capture_output=True, text=True, timeout=60, check=True
    )
    assert done.stderr == ""
    return done.stdout


def load_tables() -> ModuleType:
    spec = importlib.util.spec_from_file_location(
        "milterkit_tables", DOCS / "_ext" / "milterkit_tables.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# ------------------------------------------------------------------ the tutorial's example


def test_example_shows_signals_and_replies_in_order() -> None:
    lines = run_example().splitlines()
    # Each verdict is printed right under the signal that caused it.
    pairs = [
        ("negotiate(Option(version=6,", "  <- NegotiateReply(version=6,"),
        ("connect('client.example.net', inet:49152@[192.0.2.10])", "  <- Continue()"),
        ("helo('client.example.net')", "  <- Continue()"),
        ("envelope-from('<alice@example.net>')", "  <- Continue()"),
        ("envelope-recipient('<bob@example.org>')", "  <- Continue()"),
        ("envelope-recipient('<spam-trap@example.org>')",
         "  <- ReplyText(text='550 5.1.1 <spam-trap@example.org> does not accept mail')"),
        ("data()", "  <- Continue()"),
        ("end-of-header()", "  <- Continue()"),
        ("end-of-message(b'')",
         "  <- AddHeader(name='X-Filtered', value='yes (queue id 4XYZ1234AB)')"),
    ]
    for signal, reply in pairs:
        index = next(i for i, line in enumerate(lines) if line.startswith(signal))
        assert lines[index + 1].startswith(reply), (signal, lines[index + 1])
    eom = next(i for i, line in enumerate(lines) if line.startswith("end-of-message("))
    assert lines[eom + 2] == "  <- Continue()"  # the verdict follows the header change
    headers = [line for line in lines if line.startswith("header(")]
    assert headers == [
        "header('From', 'Alice <alice@example.net>')",
        "header('To', 'Bob <bob@example.org>')",
        "header('Subject', 'Lunch on Friday?')",
    ]
    # D, ABORT and QUIT are never answered: every reply follows an answered signal.
    replies = [i for i, line in enumerate(lines) if line.startswith("  <- ")]
    assert len(replies) == 14  # 13 answered commands, plus the header added at the end
    for i in replies:
        assert not lines[i - 1].startswith(("define-macro(", "abort(", "finished("))
    assert lines[-3].startswith("message-processed: CONTINUE, from <alice@example.net>, "
                                "2 recipients, 3 headers, 46 body bytes, 1 modification(s)")
    # Postfix's ABORT after the answered message emits no abort: the message was complete.
    assert lines[-2:] == [
        "finished()",
        "-- finished=True, messages=1, state=finished",
    ]


def test_tutorial_output_is_what_the_example_prints() -> None:
    assert (DOCS / "feed_capture.output").read_text() == run_example()


def test_tutorial_includes_exist_in_the_example() -> None:
    source = EXAMPLE.read_text()
    tutorial = (DOCS / "tutorial-replay.rst").read_text()
    for name in re.findall(r":pyobject: (\w+)", tutorial):
        assert re.search(rf"^def {name}\(", source, re.M), name
    for marker in re.findall(r":(?:start|end)-at: (.+)", tutorial):
        assert marker in source, marker


# ------------------------------------------------------------------ public names documented


def test_every_public_name_appears_in_the_docs() -> None:
    text = "\n".join(path.read_text() for path in DOCS.glob("*.rst"))
    missing = [name for name in milterkit.__all__ if not re.search(rf"\b{re.escape(name)}\b",
                                                                     text)]
    assert missing == []


def test_api_page_autodocuments_the_core_modules() -> None:
    api = (DOCS / "api.rst").read_text()
    for module in ("milterkit", "milterkit.context", "milterkit.status", "milterkit.signals",
                   "milterkit.macros", "milterkit.reply", "milterkit.result",
                   "milterkit.protocol.constants", "milterkit.protocol.framing",
                   "milterkit.protocol.commands", "milterkit.protocol.replies",
                   "milterkit.protocol.negotiation", "milterkit.protocol.errors",
                   "milterkit.protocol.text"):
        assert f".. automodule:: {module}\n" in api, module


# ------------------------------------------------------------------ generated tables


def test_signal_table_covers_every_signal() -> None:
    tables = load_tables()
    signal_table = tables.signal_table()
    notification_table = tables.notification_table()
    for name in SIGNAL_NAMES:
        assert f"``{name}``" in signal_table + notification_table, name
    assert set(tables.STAGE_COMMANDS) == set(STAGES)
    assert set(tables.NOTIFICATION_ARGS) == set(NOTIFICATIONS)
    rows = {row[0].strip("`"): row for row in tables.signal_rows()}
    assert rows["connect"][2] == "``hostname: str, address: SocketAddress``"
    assert rows["body"][2] == "``chunk: bytes``"
    assert rows["data"][2] == "—"
    assert "SKIP" in rows["body"][3] and "SKIP" not in rows["header"][3]
    assert "DISCARD" not in rows["connect"][3]
    assert rows["header"][5:] == ["``NO_HEADERS``", "``NO_REPLY_HEADER``"]
    assert rows["end-of-message"][5:] == ["—", "—"]


def test_wire_table_matches_the_protocol() -> None:
    tables = load_tables()
    columns = [label for label, _, _ in tables.BEHAVIOURS]
    rows = {row[0].strip("`"): dict(zip(columns, row[1:], strict=True))
            for row in tables.wire_rows()}
    assert rows["connect"]["None"] == "``c``"
    assert rows["connect"]["ACCEPT"] == "``a``"
    assert rows["connect"]["DISCARD"] == "refused"
    assert rows["envelope-recipient"]["reject()"] == "``y``"
    assert rows["envelope-recipient"]["TEMPFAIL"] == "``t``"
    assert rows["body"]["SKIP"] == "``s``"
    assert rows["header"]["SKIP"] == "refused"
    assert rows["end-of-message"]["DISCARD"] == "``d``"
    assert rows["end-of-message"]["NO_REPLY (NR step offered)"] == "refused"
    assert rows["header"]["NO_REPLY (NR step offered)"] == "—"
    assert rows["header"]["None (NR step offered)"] == "—"
    assert rows["header"]["NO_REPLY (NR step not offered)"] == "``c``"
    assert rows["header"]["PROGRESS"] == "— (owed)"
    assert rows["negotiate"]["None"] == "``O``"
    assert rows["negotiate"]["REJECT"] == "— (closes)"
    assert set(rows["abort"].values()) == {"—"}


# ------------------------------------------------------------------ the build


OTHER_PAGES = ("server", "examples", "deployment", "testing", "tutorial-pytest", "tools",
               "capture-format", "postfix", "sendmail")


def sphinx_importable() -> bool:
    """Whether ``python -m sphinx`` works in this interpreter: what the build test runs (a
    ``sphinx-build`` elsewhere on PATH, from another Python, does not count)."""
    return importlib.util.find_spec("sphinx") is not None


@pytest.mark.skipif(not sphinx_importable(),
                    reason=f"needs Sphinx importable by {sys.executable} (pip install '.[dev]')")
def test_docs_build_without_warnings(tmp_path: Path) -> None:
    """Build a copy with warnings as errors; pages other engineers own get a stub if missing."""
    source = tmp_path / "docs"
    shutil.copytree(DOCS, source, ignore=shutil.ignore_patterns("_build"))
    (tmp_path / "examples").symlink_to(ROOT / "examples")
    for page in OTHER_PAGES:
        path = source / f"{page}.rst"
        if not path.exists():
            path.write_text(f"{page}\n{'=' * len(page)}\n")
    out = tmp_path / "html"
    done = subprocess.run(
        [sys.executable, "-m", "sphinx", "-W", "--keep-going", "-q", "-b", "html", str(source),
         str(out)],
        capture_output=True, text=True, timeout=240,
    )
    assert done.returncode == 0, done.stderr
    api = (out / "api.html").read_text()
    for fixture in ("milter", "milter_server", "message"):  # autodoc needs pytest importable
        assert f'id="milterkit.testing.pytest_plugin.{fixture}"' in api, fixture
    for name in milterkit.__all__:
        target = getattr(milterkit, name)
        module = getattr(target, "__module__", None)
        if isinstance(target, type) or callable(target):
            # An alias (MilterError for LocalError) is documented under the class's own name.
            assert f'id="{module}.{target.__name__}"' in api, name
        else:
            assert f'id="milterkit.{name}"' in api or f'id="milterkit.stages.{name}"' in api, name
