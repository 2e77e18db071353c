"""Reject mail from blocked sender domains, with a multi-line SMTP reply.

``MAIL FROM:<anyone@spam.example>`` is answered::

    550-5.7.1 Mail from spam.example is not accepted here.
    550-5.7.1 If you think this is a mistake,
    550 5.7.1 write to postmaster@example.com.

Run it:  milterkit run examples/reject_sender.py
"""

from __future__ import annotations

from milterkit import Client, ClientContext, Status

BLOCKED_DOMAINS = frozenset({"spam.example", "junk.example"})


def domain_of(address: str) -> str:
    """The domain of ``<local@domain>`` (or of a bare address), lower-cased."""
    return address.strip("<>").rpartition("@")[2].lower()


def check_sender(context: ClientContext, address: str) -> Status | None:
    domain = domain_of(address)
    if domain not in BLOCKED_DOMAINS:
        return None
    # One string per line: milterkit adds the "550-5.7.1 " continuation prefixes.
    return context.reject("550", "5.7.1", [
        f"Mail from {domain} is not accepted here.",
        "If you think this is a mistake,",
        "write to postmaster@example.com.",
    ])


def setup(client: Client) -> None:
    """Connect the filter's handlers to ``client``."""
    client.connect("envelope-from", check_sender)


if __name__ == "__main__":
    import logging

    logging.basicConfig(level=logging.INFO)
    main = Client()
    setup(main)
    main.run()
