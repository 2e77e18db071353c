"""Two independent handlers on one signal, as two plugins would connect them.

Both are connected to ``end-of-message``; both run, in the order they were connected, because
neither returns a decisive status. The first adds ``X-Body-Size: <bytes>``, the second
``X-Recipients: <count>``. Had the first returned REJECT, the second would not have run: the
first decisive status wins.

Run it:  milterkit run examples/two_handlers.py
"""

from __future__ import annotations

from milterkit import Client, ClientContext


def body_size_plugin(client: Client) -> None:
    """Plugin one: report the body size."""

    def add_size(context: ClientContext, chunk: bytes) -> None:
        result = context.message_result
        size = result.body_size if result is not None else 0
        context.add_header("X-Body-Size", str(size))

    client.connect("end-of-message", add_size)


def recipients_plugin(client: Client) -> None:
    """Plugin two: report how many recipients the message has."""

    def add_count(context: ClientContext, chunk: bytes) -> None:
        result = context.message_result
        count = len(result.recipients) if result is not None else 0
        context.add_header("X-Recipients", str(count))

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
