"""Collect the body and replace it at end-of-message: the body is kept and ``FOOTER`` is
appended to it.

The body arrives in chunks (``body`` signal, at most 64 KiB each, plus a possible last piece
with ``end-of-message``); they are gathered in ``context.shelf``, which is cleared with every
new message.

Run it:  milterkit run examples/replace_body.py
"""

from __future__ import annotations

from milterkit import Client, ClientContext

FOOTER = b"\r\n-- \r\nThis message was checked by milterkit.\r\n"


def collect(context: ClientContext, chunk: bytes) -> None:
    context.shelf.setdefault("body", []).append(chunk)


def replace(context: ClientContext, chunk: bytes) -> None:
    parts: list[bytes] = context.shelf.get("body", [])
    parts.append(chunk)
    context.replace_body(b"".join(parts) + FOOTER)


def setup(client: Client) -> None:
    """Connect the filter's handlers to ``client``."""
    client.connect("body", collect)
    client.connect("end-of-message", replace)


if __name__ == "__main__":
    import logging

    logging.basicConfig(level=logging.INFO)
    main = Client()
    setup(main)
    main.run()
