"""A child milter of the manager tests (served by its own ``milterkit run``): refuses mail to
``blocked@example.org`` at RCPT with its own reply text, refuses any message whose subject
contains "reject me" at end-of-header, and stamps ``X-Guard: checked`` on the rest."""

from __future__ import annotations

from milterkit import Client, ClientContext, Status


def setup(client: Client) -> None:
    @client.on("envelope-recipient")
    def recipient(context: ClientContext, address: str) -> Status | None:
        if address.strip("<>").lower() == "blocked@example.org":
            return context.reject("550", "5.7.1", "guard: blocked recipient")
        return None

    @client.on("header")
    def header(context: ClientContext, name: str, value: str) -> None:
        if name.lower() == "subject" and "reject me" in value.lower():
            context.shelf["refuse"] = True  # for this message only

    @client.on("end-of-header")
    def end_of_header(context: ClientContext) -> Status | None:
        if context.shelf.get("refuse"):
            return context.reject("554", "5.7.0", "guard: this subject is refused")
        return None

    @client.on("end-of-message")
    def end_of_message(context: ClientContext, chunk: bytes) -> None:
        context.add_header("X-Guard", "checked")
