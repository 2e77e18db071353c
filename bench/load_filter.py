"""The filter ``bench/load.py`` serves by default: it listens to every event, so the MTA sends
the whole message (a filter with fewer handlers makes the MTA skip events and looks faster),
and adds one header at end-of-message."""

from __future__ import annotations

from milterkit import Client, ClientContext


def _count_header(context: ClientContext, name: str, value: str) -> None:
    context.shelf["headers"] = context.shelf.get("headers", 0) + 1


def _count_body(context: ClientContext, chunk: bytes) -> None:
    context.shelf["size"] = context.shelf.get("size", 0) + len(chunk)


def _stamp(context: ClientContext, chunk: bytes) -> None:
    shelf = context.shelf
    context.add_header("X-Load", f"{shelf.get('headers', 0)} {shelf.get('size', 0)}")


def setup(client: Client) -> None:
    """Connect a handler to every stage of a message."""
    for name in ("connect", "helo", "envelope-from", "envelope-recipient", "data",
                 "end-of-header"):
        client.connect(name, lambda context, *args: None)
    client.connect("header", _count_header)
    client.connect("body", _count_body)
    client.connect("end-of-message", _stamp)
