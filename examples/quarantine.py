"""Quarantine (hold in the MTA's queue) every message whose Subject contains
``[quarantine]``, with the reason ``subject asks for quarantine``.

Postfix puts such a message on hold (``postqueue -p`` shows it with ``!``); Sendmail moves it
to its quarantine queue.

Run it:  milterkit run examples/quarantine.py
"""

from __future__ import annotations

from milterkit import Client, ClientContext

MARKER = "[quarantine]"
REASON = "subject asks for quarantine"


def look_at_subject(context: ClientContext, name: str, value: str) -> None:
    if name.lower() == "subject" and MARKER in value.lower():
        context.shelf["quarantine"] = True


def hold(context: ClientContext, chunk: bytes) -> None:
    if context.shelf.get("quarantine"):
        context.quarantine(REASON)


def setup(client: Client) -> None:
    """Connect the filter's handlers to ``client``."""
    client.connect("header", look_at_subject)
    client.connect("end-of-message", hold)


if __name__ == "__main__":
    import logging

    logging.basicConfig(level=logging.INFO)
    main = Client()
    setup(main)
    main.run()
