"""Every public name is shown in an example: each name of ``milterkit.__all__`` occurs, as a whole
word, in some file under ``examples/``, either bare (as imported from milterkit) or as
``milterkit.NAME``; ``Status.SKIP`` does not count for ``SKIP``. The same holds for the public
names of ``milterkit.server`` and ``milterkit.testing`` (bare, or qualified by their package)."""

from __future__ import annotations

import re
import types
from pathlib import Path

import pytest

import milterkit
import milterkit.compose
import milterkit.manager
import milterkit.mta
import milterkit.server
import milterkit.testing

try:  # optional extras: milterkit[metrics] (prometheus_client)
    import milterkit.metrics as _metrics
except ImportError:
    _metrics = None  # type: ignore[assignment]
import milterkit.store

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def uses(name: str, text: str, package: str = "milterkit") -> bool:
    """Whether ``name`` occurs as a word not qualified by anything but ``package.``."""
    qualifier = re.escape(package + ".")
    pattern = rf"(?:(?<![\w.])|(?<=\b{qualifier})){re.escape(name)}\b"
    return re.search(pattern, text) is not None


def example_text() -> str:
    return "\n".join(path.read_text() for path in sorted(EXAMPLES.rglob("*.py")))


@pytest.mark.parametrize("package", [milterkit, milterkit.server, milterkit.testing,
                                     milterkit.compose, milterkit.store,
                                     milterkit.manager, milterkit.mta,
                                     *([_metrics] if _metrics is not None else [])])
def test_every_public_name_is_used_in_an_example(package: types.ModuleType) -> None:
    text = example_text()
    name_of_package = package.__name__
    names: list[str] = package.__all__
    missing = [name for name in names if not uses(name, text, name_of_package)]
    assert missing == []


def test_the_check_sees_a_missing_name() -> None:
    # Neither a longer name containing the name nor another namespace's attribute counts.
    text = "TEMPORARY_FAILURE_X = 1\nmy_format_reply()\nStatus.SKIP\nnotmilterkit.ACCEPT\n"
    for name in ("TEMPORARY_FAILURE", "format_reply", "SKIP", "ACCEPT"):
        assert not uses(name, text), name
    assert uses("__version__", "print(milterkit.__version__)")
    assert uses("SKIP", "from milterkit import SKIP")
