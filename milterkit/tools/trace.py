"""One readable line per command or reply, for traces (replay, ``test-server -v``)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING

from ..protocol import commands as cmd
from ..protocol import replies as rep
from ..protocol.commands import AnyCommand
from ..protocol.replies import AnyReply

if TYPE_CHECKING:
    from ..testing.results import Exchange

#: How many bytes of a body chunk a trace shows.
PREVIEW = 40


def preview(data: bytes, limit: int = PREVIEW) -> str:
    """``repr``-style text of the first ``limit`` bytes, with the total size."""
    shown = data[:limit].decode("utf-8", "backslashreplace")
    shown = shown.replace("\r", "\\r").replace("\n", "\\n")
    more = "..." if len(data) > limit else ""
    return f"{len(data)} bytes: {shown}{more}"


def describe_macros(macros: Mapping[str, str]) -> str:
    """``{j=mx, i=4F1}`` (``{}`` when empty)."""
    return "{" + ", ".join(f"{name}={value}" for name, value in macros.items()) + "}"


def describe_command(command: AnyCommand) -> str:
    """``HEADER Subject: hello``, ``MACRO M {i=..}``, ``BODY 12 bytes: ...`` and so on."""
    if isinstance(command, cmd.Negotiate):
        return (f"{command.label} version={command.version} actions={int(command.actions):#x} "
                f"protocol={int(command.protocol):#x}")
    if isinstance(command, cmd.DefineMacro):
        stage = command.stage.decode("ascii", "replace")
        return f"{command.label} {stage} {describe_macros(command.macros)}"
    if isinstance(command, cmd.Connect):
        return f"{command.label} host={command.hostname} address={command.address}"
    if isinstance(command, cmd.Helo):
        return f"{command.label} {command.name}"
    if isinstance(command, cmd.Mail):
        return " ".join([command.label, command.sender, *command.parameters])
    if isinstance(command, cmd.Rcpt):
        return " ".join([command.label, command.recipient, *command.parameters])
    if isinstance(command, cmd.Header):
        return f"{command.label} {command.name}: {command.value!r}"[: 200]
    if isinstance(command, cmd.Body):
        return f"{command.label} {preview(command.chunk)}"
    if isinstance(command, cmd.EndOfMessage):
        return command.label + (f" {preview(command.chunk)}" if command.chunk else "")
    if isinstance(command, cmd.Unknown):
        return f"{command.label} {command.line}"
    return command.label  # DATA, END-OF-HEADER, ABORT, QUIT, QUIT_NC


def describe_reply(reply: AnyReply) -> str:
    """``continue``, ``reply-code 550 5.7.1 no``, ``add-header X-Spam: yes`` and so on."""
    if isinstance(reply, rep.NegotiateReply):
        lists = ", ".join(f"{stage.name.lower()}=[{names}]" for stage, names in
                          reply.macros.items())
        return (f"negotiate version={reply.version} actions={int(reply.actions):#x} "
                f"protocol={int(reply.protocol):#x}" + (f" macros: {lists}" if lists else ""))
    if isinstance(reply, rep.ReplyText):
        return "reply-code " + reply.text.replace("\r\n", " | ")
    if isinstance(reply, rep.Quarantine):
        return f"quarantine {reply.reason}"
    if isinstance(reply, (rep.AddRecipient, rep.DeleteRecipient)):
        kind = "add-recipient" if isinstance(reply, rep.AddRecipient) else "delete-recipient"
        return f"{kind} {reply.recipient}"
    if isinstance(reply, rep.AddRecipientWithParameters):
        return f"add-recipient {reply.recipient} {reply.parameters}"
    if isinstance(reply, rep.ChangeFrom):
        return f"change-from {reply.sender}" + (f" {reply.parameters}" if reply.parameters else "")
    if isinstance(reply, rep.AddHeader):
        return f"add-header {reply.name}: {reply.value!r}"
    if isinstance(reply, rep.InsertHeader):
        return f"insert-header [{reply.index}] {reply.name}: {reply.value!r}"
    if isinstance(reply, rep.ChangeHeader):
        if not reply.value:
            return f"delete-header {reply.name}[{reply.index}]"
        return f"change-header {reply.name}[{reply.index}]: {reply.value!r}"
    if isinstance(reply, rep.ReplaceBody):
        return f"replace-body {preview(reply.chunk)}"
    return {
        rep.Continue: "continue", rep.Reject: "reject", rep.TempFail: "temporary-failure",
        rep.Accept: "accept", rep.Discard: "discard", rep.Skip: "skip", rep.Progress: "progress",
        rep.Shutdown: "shutdown", rep.ConnectionFailure: "connection-failure",
    }[type(reply)]


def exchange_lines(exchanges: Iterable[Exchange]) -> list[str]:
    """``> COMMAND`` then ``< reply`` lines for each command the MTA side sent."""
    lines = []
    for exchange in exchanges:
        lines.append("> " + describe_command(exchange.command))
        lines.extend("< " + describe_reply(r) for r in exchange.replies)
    return lines
