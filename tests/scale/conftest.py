"""Scale-out tests: real Redis, real HAProxy, the private Postfix of tests/integration."""

import sys
from pathlib import Path

# The helpers here (scalelib...) and those of tests/integration (postfix, milterproc,
# availability) are imported by plain name.
_HERE = Path(__file__).resolve().parent
for _path in (str(_HERE), str(_HERE.parent / "integration")):
    if _path not in sys.path:
        sys.path.insert(0, _path)

from scalefixtures import pytest_runtest_setup, redis_server  # noqa: E402

__all__ = ["pytest_runtest_setup", "redis_server"]
