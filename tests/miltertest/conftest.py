"""The miltertest scripts reuse the integration tests' rule: skip without the program, fail
instead when ``MILTERKIT_REQUIRE_POSTFIX=1`` (CI). The hook is loaded from
``tests/integration/conftest.py`` so the rule lives in one place."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

INTEGRATION = Path(__file__).resolve().parents[1] / "integration"
if str(INTEGRATION) not in sys.path:
    sys.path.insert(0, str(INTEGRATION))

_spec = importlib.util.spec_from_file_location(
    "milterkit_integration_conftest", INTEGRATION / "conftest.py"
)
assert _spec is not None and _spec.loader is not None
_rules = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_rules)

pytest_runtest_setup = _rules.pytest_runtest_setup
