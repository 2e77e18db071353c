"""A slow lookup under a per-handler deadline: a recipient check that may hang (a stuck DNS or
database) is cancelled after ``handler_deadline`` seconds and the exception policy answers it
(here a 451 temporary failure), while progress keep-alives tell the MTA we are still working.
The keep-alives never extend the deadline.

Run it:  milterkit run examples/deadline.py --handler-deadline 20 --progress-interval 5
(the command-line options override ``handler_deadline`` set in ``main`` below).
"""

from __future__ import annotations

import asyncio
import logging

from milterkit import Client, ClientContext
from milterkit.server import DeadlineExceeded

log = logging.getLogger("deadline-example")
HANGING_DOMAIN = "@hang.example"  # lookups for this domain never finish
_timeouts: list[str] = []  # recipients whose lookup ran past the deadline


async def check_recipient(context: ClientContext, address: str) -> None:
    if address.rstrip(">").endswith(HANGING_DOMAIN):
        await asyncio.Event().wait()  # a lookup that never answers


def on_error(context: ClientContext, error: BaseException) -> None:
    if isinstance(error, DeadlineExceeded):
        _timeouts.append(context.pending or "-")
        log.warning("a lookup ran past its deadline: %s", error)


def setup(client: Client) -> None:
    """Connect the filter's handlers to ``client``."""
    client.connect("envelope-recipient", check_recipient)
    client.connect("error", on_error)


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO)
    main = Client(handler_deadline=20.0, progress_interval=5.0)
    setup(main)
    main.run()
