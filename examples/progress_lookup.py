"""The same recipient lookup as ``async_lookup.py``, in the explicit form: the handler returns
PROGRESS at once, a task does the lookup, sends a progress keep-alive, and answers later with
``context.respond("envelope-recipient", status)``.

This is the form to use when the answer comes from somewhere that is not a coroutine (a
callback, another thread through ``loop.call_soon_threadsafe``).

Run it:  milterkit run examples/progress_lookup.py
"""

from __future__ import annotations

import asyncio

from milterkit import Client, ClientContext, Status

KNOWN_USERS = frozenset({"alice@example.com", "bob@example.com"})
LOOKUP_DELAY = 0.05
# Tasks are kept here until done: the event loop holds only weak references to them.
_running: set[asyncio.Task[None]] = set()


async def answer_later(context: ClientContext, address: str) -> None:
    await asyncio.sleep(LOOKUP_DELAY / 2)
    if context.pending != "envelope-recipient":
        return  # the MTA went away meanwhile
    context.progress()  # tell the MTA we are still working: it restarts its timeout
    await asyncio.sleep(LOOKUP_DELAY / 2)
    if context.pending != "envelope-recipient":
        return
    if address.strip("<>").lower() in KNOWN_USERS:
        context.respond("envelope-recipient", Status.CONTINUE)
    else:
        context.set_reply("550", "5.1.1", "No such user here")
        context.respond("envelope-recipient", Status.REJECT)


def check_recipient(context: ClientContext, address: str) -> Status:
    task = asyncio.get_running_loop().create_task(answer_later(context, address))
    _running.add(task)
    task.add_done_callback(_running.discard)
    return Status.PROGRESS


def setup(client: Client) -> None:
    """Connect the filter's handlers to ``client``."""
    client.connect("envelope-recipient", check_recipient)


if __name__ == "__main__":
    import logging

    logging.basicConfig(level=logging.INFO)
    main = Client()
    setup(main)
    main.run()
