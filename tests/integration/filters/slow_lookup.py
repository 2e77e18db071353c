"""``examples/async_lookup.py`` with a slower directory: ``SLOW_LOOKUP_DELAY`` seconds
(default 2.5) per recipient, so that it outlasts Postfix's ``milter_command_timeout`` and only
progress keep-alives (``milterkit run --progress-interval``) keep the SMTP session going.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from milterkit import Client

_EXAMPLES = str(Path(__file__).resolve().parents[3] / "examples")
if _EXAMPLES not in sys.path:
    sys.path.insert(0, _EXAMPLES)

import async_lookup  # noqa: E402  (the example itself, not a copy)

async_lookup.LOOKUP_DELAY = float(os.environ.get("SLOW_LOOKUP_DELAY", "2.5"))


def setup(client: Client) -> None:
    """The example's own setup."""
    async_lookup.setup(client)
