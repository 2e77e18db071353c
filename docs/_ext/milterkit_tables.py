"""Tables of the signal contract, generated at build time from milterkit itself.

Nothing in these tables is typed by hand where the code knows it: the signals come from
``milterkit.stages.STAGES`` and ``NOTIFICATIONS``, the handler arguments from the signatures of
the ``do_*`` default handlers, the allowed statuses from ``Stage.allowed``, and what each status
writes on the wire from running a real :class:`~milterkit.ClientContext` on a real byte stream.
So the documentation cannot drift from the code.

Directives: ``milterkit-signal-table``, ``milterkit-notification-table``,
``milterkit-wire-table``.
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import Callable, Sequence
from typing import Any

from milterkit import ClientContext, Status
from milterkit.errors import MilterError
from milterkit.protocol import (
    Abort,
    ActionFlag,
    AnyCommand,
    Body,
    Connect,
    Data,
    EndOfHeader,
    EndOfMessage,
    Header,
    Helo,
    Mail,
    Negotiate,
    PacketDecoder,
    ProtocolFlag,
    Rcpt,
    SocketAddress,
    Unknown,
)
from milterkit.stages import NOTIFICATIONS, STAGES, Stage

# The tables run deliberately wrong handlers; their warnings are not the build's.
logging.getLogger("milterkit").setLevel(logging.ERROR)

#: The command that triggers each stage, and when it comes.
STAGE_COMMANDS: dict[str, str] = {
    "negotiate": "``O``, once per connection, first",
    "connect": "``C``, once per SMTP client",
    "helo": "``H``, each HELO/EHLO",
    "envelope-from": "``M``, MAIL FROM",
    "envelope-recipient": "``R``, each RCPT TO",
    "data": "``T``, DATA",
    "unknown": "``U``, an SMTP command the MTA does not know",
    "header": "``L``, each header",
    "end-of-header": "``N``, after the last header",
    "body": "``B``, each body chunk (up to 65535 bytes)",
    "end-of-message": "``E``, end of the message",
    "abort": "``A``, or a message cut short (new MAIL, HELO, QUIT, EOF, error), only while a "
             "message is open and has no verdict: never after end-of-message is answered, nor "
             "after ACCEPT, REJECT, DISCARD or TEMPFAIL for the message, nor with no message "
             "open (libmilter's rule and milter-manager's contract)",
}

#: Signals with no status: their arguments and when they are emitted.
NOTIFICATION_ARGS: dict[str, tuple[str, str]] = {
    "define-macro": (
        "stage: str, macros: dict[str, str]",
        "a ``D`` packet: the command byte the macros belong to, and the macros",
    ),
    "timeout": ("", "the runtime's inactivity timer fired (:meth:`~ClientContext.handle_timeout`)"),
    "message-processed": (
        "result: MessageResult",
        "right after the end-of-message reply is written",
    ),
    "finished": ("", "the session is over: QUIT, EOF, protocol error, timeout"),
    "error": (
        "exception: Exception",
        "a protocol error, or a handler raised (before the exception policy answers)",
    ),
    "reset": ("", "QUIT_NC (``K``): a new SMTP client follows on the same connection"),
}

#: Columns of the wire table: a label, what the handler does, and how the no-reply step of the
#: stage is negotiated: not requested (``None``), requested and offered by the MTA (``"nr"``), or
#: requested but not offered, so the context emulates it (``"emulated"``).
BEHAVIOURS: list[tuple[str, Callable[[ClientContext], Any], str | None]] = [
    ("None", lambda context: None, None),
    ("CONTINUE", lambda context: Status.CONTINUE, None),
    ("REJECT", lambda context: Status.REJECT, None),
    ("reject()", lambda context: context.reject("550", "5.7.1", "No"), None),
    ("TEMPFAIL", lambda context: Status.TEMPORARY_FAILURE, None),
    ("temporary_failure()",
     lambda context: context.temporary_failure("451", "4.7.1", "Later"), None),
    ("ACCEPT", lambda context: Status.ACCEPT, None),
    ("DISCARD", lambda context: Status.DISCARD, None),
    ("SKIP", lambda context: Status.SKIP, None),
    ("PROGRESS", lambda context: Status.PROGRESS, None),
    ("ALL_OPTIONS", lambda context: Status.ALL_OPTIONS, None),
    ("NO_REPLY (NR step offered)", lambda context: Status.NO_REPLY, "nr"),
    ("NO_REPLY (NR step not offered)", lambda context: Status.NO_REPLY, "emulated"),
    ("None (NR step offered)", lambda context: None, "nr"),
    ("REJECT (NR step offered)", lambda context: Status.REJECT, "nr"),
    ("REJECT (NR step not offered)", lambda context: Status.REJECT, "emulated"),
]

_CONNECT = Connect("client.example.net", SocketAddress("4", "192.0.2.10", 49152))
_MESSAGE: list[AnyCommand] = [
    Mail("<a@example.net>"), Rcpt("<b@example.org>"), Data(), Header("Subject", "hi"),
    EndOfHeader(), Body(b"body\r\n"), EndOfMessage(),
]
_BEFORE_MESSAGE: list[AnyCommand] = [_CONNECT, Helo("client.example.net")]
_ORDER = ["envelope-from", "envelope-recipient", "data", "header", "end-of-header", "body",
          "end-of-message"]


def session_to(stage: str) -> list[AnyCommand]:
    """The commands after negotiation up to and including the one that triggers ``stage``."""
    if stage == "negotiate":
        return []
    if stage == "connect":
        return [_CONNECT]
    if stage == "helo":
        return list(_BEFORE_MESSAGE)
    if stage == "unknown":
        return [*_BEFORE_MESSAGE, Unknown("XYZZY")]
    if stage == "abort":
        return [*_BEFORE_MESSAGE, _MESSAGE[0], Abort()]
    return [*_BEFORE_MESSAGE, *_MESSAGE[: _ORDER.index(stage) + 1]]


def wire_reply(
    stage: Stage, behaviour: Callable[[ClientContext], Any], no_reply: str | None = None
) -> str:
    """What a context writes for ``stage`` when its one handler does ``behaviour``.

    ``no_reply`` says how the stage's no-reply step is negotiated (see :data:`BEHAVIOURS`).

    Returns the reply codes written in answer to the stage's command (``"c"``, ``"h c"``,
    ``"y"``...), ``"—"`` for nothing, or ``"refused"`` when the context refuses the status with
    a :class:`~milterkit.context.MilterError` (the status is illegal there).
    """
    written: list[bytes] = []
    # Ask for SKIP, so SKIP is not refused as "not negotiated" where it is legal, and for every
    # event, so nothing is negotiated away.
    protocol = ProtocolFlag.SKIP | (stage.no_reply if no_reply else ProtocolFlag.NONE)
    offered = ProtocolFlag.ALL
    if no_reply == "emulated":
        offered &= ~stage.no_reply
    context = ClientContext(written.append, protocol=protocol, exception_policy=None)
    context.connect(stage.name, lambda ctx, *args: behaviour(ctx))
    offer = Negotiate(6, ActionFlag.ALL, offered)
    commands = [offer, *session_to(stage.name)]
    for command in commands[:-1]:
        context.feed(command.to_bytes())
    before = len(written)
    try:
        context.feed(commands[-1].to_bytes())
    except MilterError:
        return "refused"
    decoder = PacketDecoder()
    codes = [code.decode("ascii") for code, _ in decoder.feed(b"".join(written[before:]))]
    if not codes:
        if context.finished:
            return "— (closes)"
        if context.pending is not None:
            return "— (owed)"
        return "—"
    return " ".join(codes)


def handler_arguments(stage: Stage) -> str:
    """The arguments after ``context`` that a handler of ``stage`` receives, from ``do_*``."""
    method = getattr(ClientContext, "do_" + stage.name.replace("-", "_"))
    params = list(inspect.signature(method).parameters.values())[1:]
    parts = []
    for param in params:
        annotation = str(param.annotation).replace("cmd.", "")
        parts.append(f"{param.name}: {annotation}")
    return ", ".join(parts)


def _flag_name(flag: ProtocolFlag) -> str:
    return f"``{flag.name}``" if flag else "—"


def signal_rows() -> list[list[str]]:
    """Rows of the signal contract: one per replying stage."""
    rows = []
    for stage in STAGES.values():
        allowed = sorted(stage.allowed, key=int)
        if stage.name == "abort":
            statuses = "any (ignored: ABORT is never answered)"
        else:
            statuses = ", ".join(s.name for s in allowed)
        args = handler_arguments(stage)
        rows.append([
            f"``{stage.name}``",
            STAGE_COMMANDS[stage.name],
            f"``{args}``" if args else "—",
            statuses,
            f"``{stage.response}``",
            _flag_name(stage.no_event),
            _flag_name(stage.no_reply),
        ])
    return rows


def notification_rows() -> list[list[str]]:
    """Rows of the signals that carry no status and have no response."""
    rows = []
    for name in NOTIFICATIONS:
        args, when = NOTIFICATION_ARGS[name]
        rows.append([f"``{name}``", f"``{args}``" if args else "—", when])
    return rows


def wire_rows() -> list[list[str]]:
    """Rows of the wire table: one per stage, one column per behaviour."""
    rows = []
    for stage in STAGES.values():
        row = [f"``{stage.name}``"]
        for _label, behaviour, no_reply in BEHAVIOURS:
            cell = wire_reply(stage, behaviour, no_reply)
            row.append(f"``{cell}``" if cell[0].isalpha() and cell != "refused" else cell)
        rows.append(row)
    return rows


def list_table(header: Sequence[str], rows: Sequence[Sequence[str]], widths: str = "auto") -> str:
    """reST source of a ``list-table`` with one header row."""
    lines = [".. list-table::", "   :header-rows: 1", f"   :widths: {widths}", ""]
    for row in [list(header), *rows]:
        lines.append(f"   * - {row[0]}")
        lines.extend(f"     - {cell}" for cell in row[1:])
    return "\n".join(lines) + "\n"


def signal_table() -> str:
    """reST of the signal contract table."""
    return list_table(
        ["Signal", "Emitted on", "Handler arguments (after ``context``)", "Allowed statuses",
         "Response signal", "Opt-out step", "No-reply step"],
        signal_rows(),
    )


def notification_table() -> str:
    """reST of the notification table."""
    return list_table(["Signal", "Handler arguments (after ``context``)", "Emitted when"],
                      notification_rows())


def wire_table() -> str:
    """reST of the table of reply codes written, per stage and handler behaviour."""
    return list_table(["Stage", *(label for label, _, _ in BEHAVIOURS)], wire_rows())


def setup(app: Any) -> dict[str, Any]:
    """Register the three directives (Sphinx extension entry point)."""
    from docutils.statemachine import StringList  # type: ignore[import-untyped,unused-ignore]
    from sphinx.util.docutils import SphinxDirective

    def directive(make: Callable[[], str]) -> type[SphinxDirective]:
        class TableDirective(SphinxDirective):
            def run(self) -> list[Any]:
                from docutils import nodes  # type: ignore[import-untyped,unused-ignore]

                container = nodes.container()
                source = StringList(make().splitlines(), source="milterkit_tables")
                self.state.nested_parse(source, self.content_offset, container)
                return list(container.children)

        return TableDirective

    app.add_directive("milterkit-signal-table", directive(signal_table))
    app.add_directive("milterkit-notification-table", directive(notification_table))
    app.add_directive("milterkit-wire-table", directive(wire_table))
    return {"version": "1", "parallel_read_safe": True, "parallel_write_safe": True}
