"""A filter the test drives from inside the SMTP session, so one process serves many cases.

Verdicts: a token ``<verdict>-at-<stage>`` (verdict ``reject`` or ``tempfail``, stage a signal
name such as ``envelope-from``) in the client's host name (set with XCLIENT), the HELO name, the
sender, a recipient, a header value or the body makes the filter answer that stage with a
three-line SMTP reply (:func:`reply_lines`). A recipient ``<reject-this@...>`` alone is rejected
with ``550 5.1.1``.

Actions: each ``X-Do:`` header holds a JSON list ``[action, arg, ...]``, performed in order at
end-of-message: ``add_header``, ``insert_header``, ``change_header``, ``delete_header``,
``add_recipient``, ``delete_recipient``, ``change_from``, ``quarantine`` (the ClientContext
methods, same arguments), ``replace_body [size]`` (a body of ``size`` bytes from :func:`body_of`),
``discard``, ``raise`` (the handler raises) and ``report`` (add ``X-Seen-*`` headers that show
what the filter received: every header value in brackets, the macros per stage, the number of
the message on this milter connection).

``SCRIPTED_LEADING_SPACE=1`` in the environment makes it negotiate HEADER_LEADING_SPACE;
``SCRIPTED_MACROS="connect={client_addr} {client_port};envelope-from=i"`` makes it ask for its
own macro lists.
"""

from __future__ import annotations

import json
import logging
import os
import re
from typing import Any

from milterkit import Client, ClientContext, Option, Status
from milterkit.macros import MacrosRequests
from milterkit.protocol import ProtocolFlag, SocketAddress

log = logging.getLogger("scripted")
STAGE_TOKEN = re.compile(r"(reject|tempfail)-at-([a-z-]+)")


def reply_lines(verdict: str, stage: str) -> tuple[str, str, list[str]]:
    """The reply the filter gives for ``verdict`` at ``stage``: code, xcode, three lines."""
    code, xcode = ("550", "5.7.1") if verdict == "reject" else ("451", "4.7.1")
    return code, xcode, [f"{verdict} at {stage}", "second line of the reply", "third line"]


def body_of(size: int) -> bytes:
    """A deterministic body of ``size`` bytes in CRLF lines of 64 characters."""
    line = b"".join(bytes([48 + (i % 75)]) for i in range(62)) + b"\r\n"
    whole = line * (size // len(line) + 1)
    return whole[:size]


def _plan(context: ClientContext, stage: str, *texts: str) -> Status | None:
    """Record tokens found in ``texts``; answer ``stage`` if a token asks for it."""
    plan: dict[str, str] = context.connection_data.setdefault("plan", {})
    for text in texts:
        for verdict, wanted in STAGE_TOKEN.findall(text):
            plan.setdefault(wanted, verdict)
    message_plan: dict[str, str] = context.shelf.setdefault("plan", {})
    verdict = plan.get(stage) or message_plan.get(stage)
    if verdict is None:
        return None
    code, xcode, lines = reply_lines(verdict, stage)
    if verdict == "reject":
        return context.reject(code, xcode, lines)
    return context.temporary_failure(code, xcode, lines)


def _plan_message(context: ClientContext, stage: str, text: str) -> Status | None:
    """Like :func:`_plan` for tokens that belong to the current message only."""
    message_plan: dict[str, str] = context.shelf.setdefault("plan", {})
    for verdict, wanted in STAGE_TOKEN.findall(text):
        message_plan.setdefault(wanted, verdict)
    return _plan(context, stage)


def on_negotiate(context: ClientContext, option: Option, requests: MacrosRequests) -> None:
    if os.environ.get("SCRIPTED_LEADING_SPACE") == "1":
        option.protocol |= ProtocolFlag.HEADER_LEADING_SPACE
    for part in filter(None, os.environ.get("SCRIPTED_MACROS", "").split(";")):
        stage, _, names = part.partition("=")
        requests.set_symbols(stage, *names.split())


def on_define_macro(context: ClientContext, stage: str, macros: dict[str, str]) -> None:
    seen: dict[str, dict[str, str]] = context.connection_data.setdefault("macros", {})
    seen.setdefault(stage, {}).update(macros)


def on_connect(context: ClientContext, hostname: str, address: SocketAddress) -> Status | None:
    return _plan(context, "connect", hostname)


def on_helo(context: ClientContext, fqdn: str) -> Status | None:
    return _plan(context, "helo", fqdn)


def on_unknown(context: ClientContext, command: str) -> Status | None:
    return _plan(context, "unknown", command)


def on_envelope_from(context: ClientContext, address: str) -> Status | None:
    return _plan_message(context, "envelope-from", address)


def on_envelope_recipient(context: ClientContext, address: str) -> Status | None:
    if address.lower().startswith("<reject-this@"):
        return context.reject("550", "5.1.1", f"{address} refused by the filter")
    return _plan_message(context, "envelope-recipient", address)


def on_data(context: ClientContext) -> Status | None:
    return _plan(context, "data")


def on_header(context: ClientContext, name: str, value: str) -> Status | None:
    context.shelf.setdefault("headers", []).append((name, value))
    if name.lower() == "x-do":
        context.shelf.setdefault("actions", []).append(json.loads(value))
    return _plan_message(context, "header", value)


def on_end_of_header(context: ClientContext) -> Status | None:
    return _plan(context, "end-of-header")


def on_body(context: ClientContext, chunk: bytes) -> Status | None:
    context.shelf["body_size"] = context.shelf.get("body_size", 0) + len(chunk)
    return _plan_message(context, "body", chunk.decode("ascii", "replace"))


def on_end_of_message(context: ClientContext, chunk: bytes) -> Status | None:
    verdict = _plan_message(context, "end-of-message", chunk.decode("ascii", "replace"))
    if verdict is not None:
        return verdict
    status: Status | None = None
    for action, *args in context.shelf.get("actions", []):
        status = _perform(context, action, args) or status
    return status


def _perform(context: ClientContext, action: str, args: list[Any]) -> Status | None:
    if action == "replace_body":
        context.replace_body(body_of(int(args[0])) if args else b"")
    elif action == "discard":
        return Status.DISCARD
    elif action == "raise":
        raise RuntimeError("the scripted filter was told to raise")
    elif action == "report":
        _report(context)
    elif action in ("add_header", "insert_header", "change_header", "delete_header",
                    "add_recipient", "delete_recipient", "change_from", "quarantine"):
        getattr(context, action)(*args)
    else:
        raise ValueError(f"unknown scripted action {action!r}")
    return None


def _report(context: ClientContext) -> None:
    """Add headers that show what reached the filter (brackets keep spaces visible)."""
    for name, value in context.shelf.get("headers", []):
        if name.lower() != "x-do":
            context.add_header("X-Seen-Header", f"{name}=[{value}]")
    macros: dict[str, dict[str, str]] = context.connection_data.get("macros", {})
    for stage in sorted(macros):
        for name in sorted(macros[stage]):
            context.add_header("X-Seen-Macro", f"{stage} {name}=[{macros[stage][name]}]")
    context.add_header("X-Seen-Message-Number", str(context.messages + 1))
    context.add_header("X-Seen-Body-Size", str(context.shelf.get("body_size", 0)))


def _trace(name: str) -> Any:
    def handler(context: ClientContext, *args: Any) -> None:
        log.debug("[%s] %s%r", context.tag, name, args)

    return handler


def setup(client: Client) -> None:
    """Connect every handler (so Postfix sends every event, headers and body included).

    Every event is also logged at debug level: the log a failing test prints shows what
    Postfix sent.
    """
    for name in ("connect", "helo", "unknown", "envelope-from", "envelope-recipient", "data",
                 "header", "end-of-header", "end-of-message", "abort", "define-macro", "reset"):
        client.connect(name, _trace(name))
    client.connect("negotiate", on_negotiate)
    client.connect("define-macro", on_define_macro)
    client.connect("connect", on_connect)
    client.connect("helo", on_helo)
    client.connect("unknown", on_unknown)
    client.connect("envelope-from", on_envelope_from)
    client.connect("envelope-recipient", on_envelope_recipient)
    client.connect("data", on_data)
    client.connect("header", on_header)
    client.connect("end-of-header", on_end_of_header)
    client.connect("body", on_body)
    client.connect("end-of-message", on_end_of_message)
