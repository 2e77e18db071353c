"""A child milter that refuses every sender: run in evaluation mode by the manager tests, it
must be recorded and logged, never obeyed."""

from __future__ import annotations

from typing import Any

from milterkit import Status


def setup(client: Any) -> None:
    @client.on("envelope-from")
    def envelope_from(context: Any, address: str) -> Status:
        return context.reject("550", "5.7.1", "strict: every sender is refused")
