"""Two independent handlers on one signal, as two plugins would connect them.

Each plugin connects its own handler to ``end-of-message`` (and gathers what it needs from
another signal). Both run, in the order they were connected, because neither returns a
decisive status: the first adds ``X-Body-Size: <bytes>``, the second
``X-Recipients: <count>``. Had the first returned REJECT, the second would not have run: the
first decisive status wins.

Run it:  milterkit run examples/two_handlers.py
"""

from __future__ import annotations

from milterkit import Client, ClientContext


def body_size_plugin(client: Client) -> None:
    """Plugin one: report the body size."""

    def count_body(context: ClientContext, chunk: bytes) -> None:
        # Connecting to "body" is also what makes the MTA send the body at all.
        context.shelf["size"] = context.shelf.get("size", 0) + len(chunk)

    def add_size(context: ClientContext, chunk: bytes) -> None:
        size = context.shelf.get("size", 0) + len(chunk)
        context.add_header("X-Body-Size", str(size))

    client.connect("body", count_body)
    client.connect("end-of-message", add_size)


def recipients_plugin(client: Client) -> None:
    """Plugin two: report how many recipients the message has."""

    def count_recipient(context: ClientContext, address: str) -> None:
        context.shelf["recipients"] = context.shelf.get("recipients", 0) + 1

    def add_count(context: ClientContext, chunk: bytes) -> None:
        context.add_header("X-Recipients", str(context.shelf.get("recipients", 0)))

    client.connect("envelope-recipient", count_recipient)
    client.connect("end-of-message", add_count)


def setup(client: Client) -> None:
    """Install both plugins on ``client``."""
    body_size_plugin(client)
    recipients_plugin(client)


if __name__ == "__main__":
    import logging

    logging.basicConfig(level=logging.INFO)
    main = Client()
    setup(main)
    main.run()
