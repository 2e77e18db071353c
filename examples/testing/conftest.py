"""Put ``examples/`` on ``sys.path`` so the tests here can import the example filters as
modules (``import quarantine``) as well as name them by path, as ``milterkit run`` does."""

from __future__ import annotations

import sys
from pathlib import Path

EXAMPLES = str(Path(__file__).resolve().parents[1])
if EXAMPLES not in sys.path:
    sys.path.insert(0, EXAMPLES)
