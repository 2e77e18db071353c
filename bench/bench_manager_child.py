"""The child milter bench_manager.py starts (``milterkit run bench/bench_manager_child.py``):
it handles every event (so the manager forwards every event to it) and stamps each message."""

from __future__ import annotations

from milterkit import Client, ClientContext


def setup(client: Client) -> None:
    for stage in ("connect", "helo", "envelope-from", "envelope-recipient", "data", "header",
                  "end-of-header", "body"):
        client.connect(stage, lambda context, *args: None)

    @client.on("end-of-message")
    def end_of_message(context: ClientContext, chunk: bytes) -> None:
        context.add_header("X-Bench-Child", "1")
