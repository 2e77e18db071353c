"""``milterkit demo``: a built-in filter served on a temporary unix socket and driven by the
test-server machinery, so a fresh install shows the whole loop without any mail server.

The filter refuses mail from ``spam.example``, refuses the recipient ``closed@example.com``, and
stamps every message it accepts with ``X-Milterkit-Demo``.
"""

from __future__ import annotations

import asyncio
import tempfile
from collections.abc import Callable

from ..context import ClientContext
from ..server.client import Client
from ..status import Status
from ..testing.message import Message
from ..testing.report import outcome_report
from ..testing.sockets import run_session_async

BLOCKED_DOMAIN = "spam.example"
CLOSED_MAILBOX = "closed@example.com"


def setup(client: Client) -> None:
    """The demo filter: three rules, one handler each."""

    def check_sender(context: ClientContext, address: str) -> Status | None:
        if address.strip("<>").lower().endswith("@" + BLOCKED_DOMAIN):
            return context.reject("550", "5.7.1", f"Mail from {BLOCKED_DOMAIN} is refused")
        return None

    def check_recipient(context: ClientContext, address: str) -> Status | None:
        if address.strip("<>").lower() == CLOSED_MAILBOX:
            return context.reject("550", "5.1.1", "This mailbox is closed")
        return None

    def stamp(context: ClientContext, chunk: bytes) -> None:
        context.add_header("X-Milterkit-Demo", f"checked, queue id {context['i']}")

    client.connect("envelope-from", check_sender)
    client.connect("envelope-recipient", check_recipient)
    client.connect("end-of-message", stamp)


#: The messages the demo sends: (title, message).
MESSAGES = [
    ("a message to two recipients, one of them closed", Message.build(
        sender="alice@example.net", recipients=["bob@example.com", CLOSED_MAILBOX],
        headers=[("From", "Alice <alice@example.net>"), ("To", "Bob <bob@example.com>"),
                 ("Subject", "Lunch?")],
        body="Hi Bob,\nlunch at noon?\nAlice\n",
    )),
    ("a message from a refused domain", Message.build(
        sender=f"offers@{BLOCKED_DOMAIN}", recipients=["bob@example.com"],
        headers=[("From", f"offers@{BLOCKED_DOMAIN}"), ("Subject", "You won!")],
        body="Click here.\n",
    )),
]


async def run_demo(out: Callable[[str], object] = print, color: bool = False) -> int:
    """Serve the filter, send :data:`MESSAGES` on one connection, print what happened."""
    with tempfile.TemporaryDirectory(prefix="milterkit-demo-") as directory:
        spec = f"unix:{directory}/demo.sock"
        client = Client(spec, shutdown_timeout=5.0, socket_activation=False)
        setup(client)
        async with client:
            out(f"A demo milter is listening on {spec}; playing Postfix against it.")
            result = await run_session_async(
                spec, [message for _, message in MESSAGES], check=False)
    # Not strict: a session that failed partway has fewer outcomes, and its error is told below.
    for (title, _), outcome in zip(MESSAGES, result.messages, strict=False):
        out("")
        out(f"=== {title}")
        for line in outcome_report(outcome, show_message=True, color=color):
            out(line)
    if result.error is not None:
        out(f"error: {result.error}")
        return 1
    out("")
    out("Write your own filter: see `milterkit run --help` and `milterkit test-server --help`.")
    return 0


def main(color: bool = False) -> int:
    """Run the demo on a fresh event loop."""
    return asyncio.run(run_demo(color=color))
