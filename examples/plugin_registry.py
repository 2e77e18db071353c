"""One set of plugins in a :class:`~milterkit.SignalTable`, used two ways: served live by a
Client, and run offline over captured MTA traffic to see what they would have answered.

The plugins:

- ``size_limit``: ``MAIL FROM:<...> SIZE=N`` with N over ``MAX_MESSAGE_SIZE`` is refused with
  ``552 5.3.4 Message size exceeds fixed limit`` before any byte of it is sent;
- ``required_headers``: a message without a ``From`` or ``Date`` header (RFC 5322 wants both)
  is refused at end-of-header with ``550 5.6.0 Message has no "Date" header``;
- ``diagnostics``: on the ``error`` signal, says whose fault an error was (the MTA broke the
  protocol, or a plugin misused milterkit, and how) and keeps the explanation in
  ``context.connection_data["problems"]``.

Every context the Client makes, and every offline context, has the registry's handlers.

Run it live:     milterkit run examples/plugin_registry.py
Check captures:  python examples/plugin_registry.py check FILE...

``check`` reads files written by ``milterkit capture`` (or raw MTA-to-milter bytes), feeds the
MTA's side into a :class:`~milterkit.ClientContext` whose parent table is the registry, and
prints every refusal and every message. A stream that breaks the milter protocol is reported
and makes the exit status 1.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable

from milterkit import (
    SIGNAL_NAMES,
    ActionError,
    Client,
    ClientContext,
    InvalidValue,
    LocalError,
    MessageResult,
    MilterError,
    MilterkitError,
    NegotiationError,
    ProtocolError,
    RemoteProtocolError,
    ReplyError,
    SignalError,
    SignalTable,
    StateError,
    Status,
    StatusError,
    Transaction,
)
from milterkit.tools.capture_format import CaptureError, read_capture

log = logging.getLogger("plugin_registry")

MAX_MESSAGE_SIZE = 10 * 1024 * 1024
REQUIRED_HEADERS = ("From", "Date")

#: The plugins' handlers, by signal: a table of its own, parent of nothing until installed.
REGISTRY = SignalTable(SIGNAL_NAMES)


# ------------------------------------------------------------------ plugin: size_limit


def declared_size(parameters: tuple[str, ...]) -> int | None:
    """The ``SIZE=`` ESMTP parameter of ``MAIL FROM`` (RFC 1870), if the client gave one."""
    for parameter in parameters:
        key, _, value = parameter.partition("=")
        if key.upper() == "SIZE" and value.isdigit():
            return int(value)
    return None


def size_limit(context: ClientContext, sender: str) -> Status | None:
    size = declared_size(context.envelope_parameters)
    if size is not None and size > MAX_MESSAGE_SIZE:
        return context.reject("552", "5.3.4", "Message size exceeds fixed limit")
    return None


# ------------------------------------------------------------------ plugin: required_headers


def note_header(context: ClientContext, name: str, value: str) -> None:
    # The shelf belongs to the message's Transaction: dropped whole when the message ends.
    message: Transaction = context.transaction
    message.shelf.setdefault("headers", set()).add(name.lower())


def required_headers(context: ClientContext) -> Status | None:
    seen: set[str] = context.shelf.get("headers", set())
    for name in REQUIRED_HEADERS:
        if name.lower() not in seen:
            return context.reject("550", "5.6.0", f'Message has no "{name}" header')
    return None


# ------------------------------------------------------------------ plugin: diagnostics


def whose_fault(error: BaseException) -> str:
    """One line saying who caused ``error`` and what kind of mistake it is."""
    # The error's class says whose fault it is: RemoteProtocolError (also called ProtocolError)
    # the peer's, LocalError (also called MilterError) ours; both are MilterkitErrors.
    if isinstance(error, RemoteProtocolError):
        assert isinstance(error, ProtocolError)  # one class, two names
        return f"the MTA broke the milter protocol: {error}"
    if isinstance(error, NegotiationError):
        return f"the negotiation cannot succeed: {error}"
    if isinstance(error, StatusError):
        return f"a plugin returned a status this stage does not take: {error}"
    if isinstance(error, ActionError):
        return f"a plugin used an action it may not use here: {error}"
    if isinstance(error, StateError):
        return f"a plugin answered when no reply was owed: {error}"
    if isinstance(error, ReplyError):
        return f"a plugin set an SMTP reply the MTA would refuse: {error}"
    if isinstance(error, InvalidValue):
        return f"a plugin passed a value the protocol cannot carry: {error}"
    if isinstance(error, SignalError):
        return f"a plugin named an unknown signal or took the wrong arguments: {error}"
    if isinstance(error, LocalError):
        assert isinstance(error, MilterError)  # one class, two names
        return f"a plugin misused milterkit: {error}"
    if isinstance(error, MilterkitError):
        return f"milterkit refused something: {error}"
    return f"a plugin raised {type(error).__name__}: {error}"


def diagnostics(context: ClientContext, error: BaseException) -> None:
    explanation = whose_fault(error)
    context.connection_data.setdefault("problems", []).append(explanation)
    log.warning("[%s] %s", context.tag, explanation)


REGISTRY.connect("envelope-from", size_limit)
REGISTRY.connect("header", note_header)
REGISTRY.connect("end-of-header", required_headers)
REGISTRY.connect("error", diagnostics)


# ------------------------------------------------------------------ live


def setup(client: Client) -> None:
    """Connect every handler of the registry to ``client``, in the registry's order."""
    for name in SIGNAL_NAMES:
        for handler in REGISTRY.receivers(name, None):
            client.connect(name, handler)  # Client.connect checks the handler's arguments


# ------------------------------------------------------------------ offline


def check_stream(data: bytes) -> tuple[list[str], bool]:
    """Feed one connection's MTA-to-milter bytes to the plugins; return the report lines and
    whether the stream followed the protocol."""
    lines: list[str] = []
    # The registry is the parent table: its handlers run for this context as for a live one.
    context = ClientContext(lambda reply: None, signals=REGISTRY)

    def refusal(stage: str) -> Callable[[ClientContext, Status], None]:
        def record(context: ClientContext, status: Status) -> None:
            if status not in (Status.CONTINUE, Status.NO_REPLY):
                lines.append(f"{stage}: {status.nick} {context.reply or ''}".rstrip())

        return record

    def message(context: ClientContext, result: MessageResult) -> None:
        lines.append(f"message from {result.envelope_from}: {result.status.nick}")

    for name in ("connect", "helo", "envelope-from", "envelope-recipient", "end-of-header",
                 "end-of-message"):
        context.signals.connect(f"{name}-response", refusal(name))  # names built at run time
    context.connect("message-processed", message)
    try:
        context.feed(data)
    except ProtocolError:
        # The context has emitted ``error`` (the diagnostics plugin explained it) and finished.
        lines.extend(context.connection_data.get("problems", []))
        return lines, False
    context.connection_lost()  # a capture may end without QUIT
    lines.extend(context.connection_data.get("problems", []))
    return lines, True


def check_files(paths: list[str]) -> int:
    """``check`` mode: report on every capture file; 1 if any broke the protocol."""
    status = 0
    for path in paths:
        try:
            data = read_capture(path).mta_bytes
        except (OSError, CaptureError) as exc:
            print(f"{path}: cannot read: {exc}")
            status = 1
            continue
        lines, ok = check_stream(data)
        print(f"{path}: {'ok' if ok else 'PROTOCOL ERROR'}")
        for line in lines:
            print(f"  {line}")
        if not ok:
            status = 1
    return status


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO)
    if sys.argv[1:2] == ["check"]:
        sys.exit(check_files(sys.argv[2:]))
    main = Client()
    setup(main)
    main.run()
