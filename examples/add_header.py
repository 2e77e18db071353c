"""Add the header ``X-Milterkit: yes`` to every message.

Run it:  milterkit run examples/add_header.py -l unix:/tmp/add_header.sock
"""

from __future__ import annotations

from milterkit import Client, ClientContext

HEADER_NAME = "X-Milterkit"
HEADER_VALUE = "yes"


def add_header(context: ClientContext, chunk: bytes) -> None:
    # Modifications are only allowed at end-of-message; returning None lets the message through.
    context.add_header(HEADER_NAME, HEADER_VALUE)


def setup(client: Client) -> None:
    """Connect the filter's handlers to ``client``."""
    client.connect("end-of-message", add_header)


if __name__ == "__main__":
    import logging

    logging.basicConfig(level=logging.INFO)
    main = Client()
    setup(main)
    main.run()
