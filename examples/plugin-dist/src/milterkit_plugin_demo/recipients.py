"""A session-class filter: refuse blocked recipients, count the others at end-of-message."""

from __future__ import annotations

import asyncio
from typing import Any, ClassVar

from milterkit import Status
from milterkit.compose import FilterView


class RecipientCheck:
    """refuse the recipients in `blocked` (550 5.1.1); add X-Recipients-Checked: N

    milterkit makes one instance per connection with the filter's context view; each method
    named after an event is a handler. ``end_of_message`` is a coroutine: it runs concurrently
    with the other filters' coroutines at that stage.
    """

    OPTIONS: ClassVar[dict[str, Any]] = {"blocked": ["nobody@example.org"], "delay": 0.01}

    def __init__(self, context: FilterView) -> None:
        self.context = context
        self.blocked = {address.lower() for address in context.options["blocked"]}
        self.accepted = 0

    def envelope_from(self, address: str) -> None:
        self.accepted = 0  # a new message

    def envelope_recipient(self, address: str) -> Status | None:
        if address.strip("<>").lower() in self.blocked:
            return self.context.reject("550", "5.1.1", "Recipient address rejected")
        self.accepted += 1
        return None

    async def end_of_message(self, chunk: bytes) -> None:
        await asyncio.sleep(float(self.context.options["delay"]))  # a look-up, say
        self.context.add_header("X-Recipients-Checked", str(self.accepted))
