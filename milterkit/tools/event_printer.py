"""A filter that prints every event with its macros and always answers CONTINUE: what
``milterkit test-client`` serves (milter-test-client's twin), to see what a real MTA sends."""

from __future__ import annotations

import enum
from collections.abc import Callable
from typing import Any

from ..context import ClientContext
from ..macros import MacrosRequests
from ..protocol.commands import SocketAddress
from ..protocol.negotiation import Option
from ..protocol.steps import STEPS
from ..server.client import Client
from ..status import State, Status
from .trace import preview

Print = Callable[[str], object]

#: Event signal -> the command byte whose macros it prints (from the steps table).
_STAGE_BYTES = {
    step.signal: step.code for step in STEPS if step.signal not in (None, "negotiate", "abort")
}


def setup_printer(client: Client, out: Print = print) -> None:
    """Connect printing handlers for every event of ``client``'s contexts to ``out``."""

    def show(context: ClientContext, line: str, event: str | None = None) -> None:
        out(line)
        if event is None:
            return
        macros = context.macros.by_stage(_STAGE_BYTES[event])
        if macros:
            out("  macros:")
            for name, value in macros.items():
                out(f"    {name}={value}")

    def negotiate(context: ClientContext, option: Option, requests: MacrosRequests) -> None:
        actions = _flag_names(option.actions)
        steps = _flag_names(option.protocol)
        out(f"negotiate: version=<{option.version}>, action=<{actions}>, step=<{steps}>")

    def connect(context: ClientContext, host: str, address: SocketAddress) -> None:
        show(context, f"connect: host=<{host}>, address=<{address}>", "connect")

    def text_event(event: str, label: str) -> Callable[..., None]:
        def handler(context: ClientContext, value: str) -> None:
            parameters = " ".join(context.envelope_parameters)
            extra = f" {parameters}" if parameters and event.startswith("envelope") else ""
            # Envelope addresses keep the MTA's angle brackets; other values get them added.
            shown = value if event.startswith("envelope") else f"<{value}>"
            show(context, f"{label}: {shown}{extra}", event)

        return handler

    def bare(event: str) -> Callable[..., None]:
        def handler(context: ClientContext) -> None:
            show(context, event, event)

        return handler

    def header(context: ClientContext, name: str, value: str) -> None:
        show(context, f"header: <{name}: {value}>", "header")

    def body(context: ClientContext, chunk: bytes) -> None:
        show(context, f"body: <{preview(chunk, 200)}>", "body")

    def end_of_message(context: ClientContext, chunk: bytes) -> None:
        show(context, "end-of-message" + (f": <{preview(chunk, 200)}>" if chunk else ""),
             "end-of-message")

    def abort(context: ClientContext, state: State) -> Status | None:
        out(f"abort (in {state.nick})")
        return None

    def finished(context: ClientContext) -> None:
        out("finished")

    def error(context: ClientContext, exc: Any) -> None:
        out(f"ERROR: {exc}")

    client.connect("negotiate", negotiate)
    client.connect("connect", connect)
    client.connect("helo", text_event("helo", "helo"))
    client.connect("envelope-from", text_event("envelope-from", "envelope-from"))
    client.connect("envelope-recipient", text_event("envelope-recipient", "envelope-recipient"))
    client.connect("unknown", text_event("unknown", "unknown"))
    client.connect("data", bare("data"))
    client.connect("header", header)
    client.connect("end-of-header", bare("end-of-header"))
    client.connect("body", body)
    client.connect("end-of-message", end_of_message)
    client.connect("abort", abort)
    client.connect("finished", finished)
    client.connect("error", error)


def _flag_names(flags: enum.IntFlag) -> str:
    """``add-headers|change-body``: the single-bit members set in ``flags``."""
    names = [
        member.name.lower().replace("_", "-")
        for member in type(flags).__members__.values()
        if member.name and member.value and not member.value & (member.value - 1)
        and member.value & flags
    ]
    return "|".join(names) or "none"
