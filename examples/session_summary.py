"""A filter's own words in the runtime's one-line session summary: ``summary_parts``.

When a connection ends, the runtime logs one line for it (logger ``milterkit.server``)::

    [7] session ended (finished): 2 messages (continue 2), 0.012 s, peer unix

Each string in :attr:`~milterkit.ClientContext.summary_parts` by then is added to that line
after a ``"; "``. This filter counts the recipients the MTA sent on the connection and appends
the count as the session finishes, so the line ends ``...; recipients: 3``. The count lives in
``connection_data``, so a new SMTP client on the same connection (QUIT_NC) starts it again.

Run it:  milterkit run examples/session_summary.py
"""

from __future__ import annotations

from milterkit import Client, ClientContext

#: Where the count is kept in ``context.connection_data`` (a key of this filter's own).
COUNT_KEY = "session_summary.recipients"


def count_recipient(context: ClientContext, address: str) -> None:
    """One more recipient on this connection."""
    context.connection_data[COUNT_KEY] = context.connection_data.get(COUNT_KEY, 0) + 1


def add_to_summary(context: ClientContext) -> None:
    """Append the count: ``finished`` comes once a connection, before the summary is logged."""
    context.summary_parts.append(f"recipients: {context.connection_data.get(COUNT_KEY, 0)}")


def setup(client: Client) -> None:
    """Count at RCPT, report when the session finishes."""
    client.connect("envelope-recipient", count_recipient)
    client.connect("finished", add_to_summary)


if __name__ == "__main__":
    import logging

    logging.basicConfig(level=logging.INFO)
    main = Client()
    setup(main)
    main.run()
