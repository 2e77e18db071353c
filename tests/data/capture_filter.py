"""The filter the stored Postfix captures were recorded against (see record_captures.py).

Deterministic, so a replay of a capture gives back the recorded replies byte for byte: it
refuses ``closed@example.org`` at RCPT, and at end-of-message adds a header naming the queue id
(the ``i`` macro Postfix sends) and the number of accepted recipients. It listens to every
other event too, so Postfix sends the whole session (headers, body) and the captures hold it.
"""

from __future__ import annotations

from milterkit import Client, ClientContext, Status

CLOSED = "closed@example.org"


def check_recipient(context: ClientContext, address: str) -> Status | None:
    if address.strip("<>").lower() == CLOSED:
        return context.reject("550", "5.1.1", "This mailbox is closed")
    context.shelf["recipients"] = context.shelf.get("recipients", 0) + 1
    return None


def tag_message(context: ClientContext, chunk: bytes) -> None:
    queue_id = context.get_macro("i", "unknown")
    count = context.shelf.get("recipients", 0)
    context.add_header("X-Capture-Test", f"queue={queue_id} recipients={count}")


def watch(context: ClientContext, *args: object) -> None:
    """No opinion; being connected makes the MTA send the event."""


def setup(client: Client) -> None:
    """Connect the handlers."""
    for event in ("connect", "helo", "envelope-from", "data", "unknown", "header",
                  "end-of-header", "body"):
        client.connect(event, watch)
    client.connect("envelope-recipient", check_recipient)
    client.connect("end-of-message", tag_message)
