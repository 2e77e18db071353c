"""Two small filters for the modifications the other examples do not make, used by
``test_filters.py`` next to this file.

- :func:`tidy_headers` inserts ``X-Tidy: checked`` at the top of the headers, deletes every
  ``X-Originating-IP`` header (it leaks the sender's address) and takes the ``[EXTERNAL]`` tag
  off the Subject.
- :func:`redirect` moves mail for a retired address to its successor (delete one recipient,
  add another), sends a copy of every message to an archive mailbox (a recipient added with
  ESMTP parameters) and rewrites the envelope sender of mail from the internal domain to the
  public one.

Run both:  milterkit run examples/testing/filters.py
Run one:   milterkit run examples/testing/filters.py:redirect
"""

from __future__ import annotations

from milterkit import Client, ClientContext

TIDY_HEADER = ("X-Tidy", "checked")
PRIVATE_HEADER = "X-Originating-IP"
SUBJECT_TAG = "[EXTERNAL] "

#: Retired address -> where its mail goes now.
MOVED = {"old@example.com": "new@example.com"}
ARCHIVE = "<archive@example.com>"
#: The archive copy must never bounce back to the sender.
ARCHIVE_PARAMETERS = "NOTIFY=NEVER"
INTERNAL_DOMAIN = "internal.example"
PUBLIC_DOMAIN = "example.com"


def tidy_headers(client: Client) -> None:
    """Plugin: insert a marker header, drop private headers, untag the Subject."""

    def look_at_header(context: ClientContext, name: str, value: str) -> None:
        if name.lower() == PRIVATE_HEADER.lower():
            context.shelf["private"] = context.shelf.get("private", 0) + 1
        elif name.lower() == "subject" and "subject" not in context.shelf:
            context.shelf["subject"] = value

    def tidy(context: ClientContext, chunk: bytes) -> None:
        context.insert_header(0, *TIDY_HEADER)
        # Last one first: Postfix renumbers the headers left after a deletion and Sendmail
        # does not, so deleting from the bottom up means the same thing to both.
        for index in range(context.shelf.get("private", 0), 0, -1):
            context.delete_header(PRIVATE_HEADER, index)
        subject: str | None = context.shelf.get("subject")
        if subject is not None and subject.startswith(SUBJECT_TAG):
            context.change_header("Subject", 1, subject.removeprefix(SUBJECT_TAG))

    client.connect("header", look_at_header)
    client.connect("end-of-message", tidy)


def bare(address: str) -> str:
    """``<User@Example.com>`` -> ``user@example.com``."""
    return address.strip().strip("<>").lower()


def redirect(client: Client) -> None:
    """Plugin: forward retired addresses, archive a copy, masquerade internal senders."""

    def remember_sender(context: ClientContext, address: str) -> None:
        context.shelf["sender"] = address

    def remember_recipient(context: ClientContext, address: str) -> None:
        # Keep the MTA's spelling: delete_recipient must name the recipient exactly as sent.
        context.shelf.setdefault("recipients", []).append(address)

    def rewrite(context: ClientContext, chunk: bytes) -> None:
        for address in context.shelf.get("recipients", []):
            successor = MOVED.get(bare(address))
            if successor is not None:
                context.delete_recipient(address)
                context.add_recipient(f"<{successor}>")
        context.add_recipient(ARCHIVE, ARCHIVE_PARAMETERS)
        local, _, domain = bare(context.shelf.get("sender", "")).partition("@")
        if domain == INTERNAL_DOMAIN:
            context.change_from(f"<{local}@{PUBLIC_DOMAIN}>")

    client.connect("envelope-from", remember_sender)
    client.connect("envelope-recipient", remember_recipient)
    client.connect("end-of-message", rewrite)


def setup(client: Client) -> None:
    """Install both plugins on ``client``."""
    tidy_headers(client)
    redirect(client)


if __name__ == "__main__":
    import logging

    logging.basicConfig(level=logging.INFO)
    main = Client()
    setup(main)
    main.run()
