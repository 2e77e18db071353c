"""milterkit in its own style for bench/peers/run.py: only the handler the job needs (an
X-Load header at end-of-message), so milterkit asks the MTA to skip every other event."""

from __future__ import annotations

from milterkit import Client, ClientContext


def _stamp(context: ClientContext, chunk: bytes) -> None:
    context.add_header("X-Load", "1")


def setup(client: Client) -> None:
    """Connect the one handler."""
    client.connect("end-of-message", _stamp)
