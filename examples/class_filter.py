"""A content filter written as a class: a :class:`~milterkit.ClientContext` subclass whose
``do_*`` methods are the handlers, served by a Client through its ``context_class``.

It scans the first ``SCAN_LIMIT`` bytes of every body for a banned phrase:

- a message containing one is rejected at end-of-message with
  ``554 5.7.1 Message content rejected (contains "PHRASE")``;
- a clean one gets ``X-Content-Scan: clean, N body bytes scanned``.

Two protocol details make it cheap for the MTA:

- Headers only feed a count, so the filter asks for the *no-reply* step for headers
  (``NO_REPLY_HEADER``) at negotiation and returns ``NO_REPLY``: the MTA streams the headers
  without waiting for an answer to each. (An MTA that does not offer the step still gets its
  ``c``, written by milterkit.)
- Once the scan has seen enough (a phrase, or ``SCAN_LIMIT`` bytes), the body handler returns
  ``SKIP``, if the MTA offered the SKIP step: the rest of the body is not sent at all.

Run it:  milterkit run examples/class_filter.py
"""

from __future__ import annotations

from dataclasses import dataclass

from milterkit import (
    NO_REPLY,
    NOT_CHANGE,
    SKIP,
    Client,
    ClientContext,
    MacrosRequests,
    Option,
    ProtocolFlag,
    Status,
)

BANNED_PHRASES = (b"wire the money today", b"verify your password here")
#: How much of the body is scanned; a phrase after it goes unnoticed.
SCAN_LIMIT = 100_000
# A phrase may straddle two body chunks: keep this many bytes of the previous one.
_OVERLAP = max(len(phrase) for phrase in BANNED_PHRASES) - 1


@dataclass
class Scan:
    """What the filter knows about the current message."""

    headers: int = 0
    scanned: int = 0
    tail: bytes = b""
    found: bytes | None = None
    done: bool = False


class ContentScanner(ClientContext):
    """One MTA connection of the content filter; the message's shelf holds its :class:`Scan`
    (the context drops the shelf with the message when the transaction ends)."""

    @property
    def scan(self) -> Scan:
        """The current message's scan, started on first use."""
        scan: Scan = self.shelf.setdefault("scan", Scan())
        return scan

    def do_negotiate(self, option: Option, requests: MacrosRequests) -> Status | None:
        # ``option`` already holds the defaults (offered actions, skip unhandled events, SKIP
        # if offered); add the no-reply step for headers to it.
        option.protocol |= ProtocolFlag.NO_REPLY_HEADER
        return None

    def do_header(self, name: str, value: str) -> Status | None:
        self.scan.headers += 1
        # Not a verdict: with the no-reply step the MTA reads nothing for a header.
        return NO_REPLY

    def do_body(self, chunk: bytes) -> Status | None:
        self.look_at(chunk)
        if self.scan.done and self.option is not None and self.option.protocol & ProtocolFlag.SKIP:
            return SKIP
        return NOT_CHANGE

    def do_end_of_message(self, chunk: bytes) -> Status | None:
        self.look_at(chunk)
        scan = self.scan
        if scan.found is not None:
            phrase = scan.found.decode("ascii")
            return self.reject("554", "5.7.1", f'Message content rejected (contains "{phrase}")')
        self.add_header("X-Content-Scan", f"clean, {scan.scanned} body bytes scanned")
        return None

    def look_at(self, chunk: bytes) -> None:
        """Scan ``chunk``, up to the limit."""
        scan = self.scan
        if scan.done or not chunk:
            return
        part = chunk[: SCAN_LIMIT - scan.scanned]
        scan.scanned += len(part)
        window = (scan.tail + part).lower()
        for phrase in BANNED_PHRASES:
            if phrase in window:
                scan.found = phrase
                break
        scan.tail = window[-_OVERLAP:]
        scan.done = scan.found is not None or scan.scanned >= SCAN_LIMIT


def setup(client: Client) -> None:
    """Serve :class:`ContentScanner` contexts from ``client``."""
    client.context_class = ContentScanner


if __name__ == "__main__":
    import logging

    logging.basicConfig(level=logging.INFO)
    main = Client()
    setup(main)
    main.run()
