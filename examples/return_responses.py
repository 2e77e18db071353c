"""A filter whose handlers return what they mean: a reply, a change, or a change queued early.

- ``milterkit.Reply(code, xcode, text)`` is a verdict with its SMTP reply (REJECT for 5xx,
  TEMPORARY_FAILURE for 4xx), from any stage.
- A modification from :mod:`milterkit.protocol` (``AddHeader``, ``ChangeHeader``...) returned
  at end-of-message is carried out there.
- ``milterkit.Queued(modification)`` returned *before* end-of-message waits for it: here the
  envelope-from handler decides on a header as soon as it knows the sender. (A bare
  modification before end-of-message is an ActionError, as ``context.add_header`` is there.)

Run it:  milterkit run examples/return_responses.py
"""

from __future__ import annotations

from milterkit import Client, ClientContext, Queued, Reply
from milterkit.protocol import AddHeader, ChangeHeader

BLOCKED = ("<spammer@example.com>",)


def setup(client: Client) -> None:
    @client.on("envelope-from")
    def judge_sender(context: ClientContext, address: str) -> Reply | Queued | None:
        if address in BLOCKED:
            return Reply("550", "5.7.1", "We do not take mail from you")
        if address.endswith("@example.com>"):
            return Queued(AddHeader("X-Sender-Domain", "example.com"))
        return None

    @client.on("envelope-recipient")
    def busy(context: ClientContext, address: str) -> Reply | None:
        if address.endswith("@busy.example>"):
            return Reply("451", "4.7.1", "Mailbox busy, try again later")
        return None

    @client.on("end-of-message")
    def stamp(context: ClientContext, chunk: bytes) -> list[AddHeader | ChangeHeader]:
        # Several responses at once: each is carried out in turn.
        return [AddHeader("X-Filtered-By", "milterkit"), ChangeHeader(1, "X-Scan", "")]


if __name__ == "__main__":
    main_client = Client()
    setup(main_client)
    main_client.run()
