"""The in-process Python filter of the manager tests: stamps ``X-Stamp: python`` on every
message, after the children's changes."""

from __future__ import annotations

from typing import Any


def setup(client: Any) -> None:
    @client.on("end-of-message")
    def end_of_message(context: Any, chunk: bytes) -> None:
        context.add_header("X-Stamp", "python")
