"""A child milter that refuses every sender: run in evaluation mode by the manager tests, it
must be recorded and logged, never obeyed."""

from __future__ import annotations

from milterkit import Client, ClientContext, Status


def setup(client: Client) -> None:
    @client.on("envelope-from")
    def envelope_from(context: ClientContext, address: str) -> Status:
        return context.reject("550", "5.7.1", "strict: every sender is refused")
