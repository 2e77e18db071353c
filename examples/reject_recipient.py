"""Reject one recipient of several: ``RCPT TO:<closed@example.com>`` gets
``550 5.1.1 This mailbox is closed``; the message still goes to the other recipients.

Run it:  milterkit run examples/reject_recipient.py
"""

from __future__ import annotations

from milterkit import Client, ClientContext, Status

CLOSED_MAILBOXES = frozenset({"closed@example.com"})


def check_recipient(context: ClientContext, address: str) -> Status | None:
    if address.strip("<>").lower() in CLOSED_MAILBOXES:
        # A REJECT at envelope-recipient refuses this recipient only, not the message.
        return context.reject("550", "5.1.1", "This mailbox is closed")
    return None


def setup(client: Client) -> None:
    """Connect the filter's handlers to ``client``."""
    client.connect("envelope-recipient", check_recipient)


if __name__ == "__main__":
    import logging

    logging.basicConfig(level=logging.INFO)
    main = Client()
    setup(main)
    main.run()
