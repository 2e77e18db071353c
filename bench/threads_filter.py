"""The filter bench_threads.py serves: a plain ``def`` handler at envelope-from that blocks for
``BENCH_BLOCK_SECONDS`` (0: it does not block), standing for a synchronous DNS lookup, and an
end-of-message handler that adds a header."""

from __future__ import annotations

import os
import time
from typing import Any

BLOCK = float(os.environ.get("BENCH_BLOCK_SECONDS", "0"))


def setup(client: Any) -> None:
    """Connect the two handlers."""

    def lookup(context: Any, address: str) -> None:
        if BLOCK:
            time.sleep(BLOCK)

    def stamp(context: Any, chunk: bytes) -> None:
        context.add_header("X-Checked", "yes")

    client.connect("envelope-from", lookup)
    client.connect("end-of-message", stamp)
