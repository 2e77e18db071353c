"""One MTA connection of a purepythonmilter application, on a milterkit context.

milterkit decodes the packets and emits signals; the handlers here turn each signal's arguments
back into the payload bytes, build purepythonmilter's command object from them, await the hook,
and turn its response into what milterkit sends:

- ``Continue``/``Accept``/``Reject``/``DiscardMessage``/``SkipToNextStage`` -> the status;
  ``RejectWithCode``/``TempFailWithCode`` -> ``set_reply`` and REJECT or TEMPORARY_FAILURE;
  ``Quarantine`` (end-of-message) -> ``quarantine`` and accept; ``CauseConnectionFail`` -> an
  ``f`` packet, then the session ends.
- Manipulations are queued and applied at end-of-message, in the order they were returned.
  Those returned before MAIL (connect, HELO) apply to every message of the connection, the
  others to the current message only (purepythonmilter kept one list per connection).
- Macros: a hook sees the macros the MTA sent for its own stage just before the command, with
  the names as sent (``{daemon_addr}``), as purepythonmilter shows them; none for a stage whose
  ``restrict_symbols`` entry is empty.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from ... import ClientContext, Status
from ...protocol import ConnectionFailure, SocketAddress
from ...protocol.text import encode_text
from .api.logger import MilterServerConnectionID, connection_id_context
from .protocol import commands, responses

log = logging.getLogger("milterkit.compat.purepythonmilter")

#: Stages where a verdict ends the whole message (at RCPT it refuses one recipient only).
_MESSAGE_STAGES = frozenset({"envelope-from", "data", "header", "end-of-header", "body"})
_MESSAGE_VERDICTS = frozenset({Status.REJECT, Status.TEMPORARY_FAILURE, Status.DISCARD,
                               Status.ACCEPT})

Hook = Callable[[Any], Awaitable[Any]]


class PurePythonMilterContext(ClientContext):
    """A :class:`~milterkit.ClientContext` with the per-connection state of the compat layer."""

    def __init__(self, write: Callable[[bytes], object], **options: Any) -> None:
        super().__init__(write, **options)
        # Kept for CauseConnectionFail, the one reply milterkit has no status for.
        self.raw_write = write
        self.connection_id = MilterServerConnectionID.generate()
        self.connection_manipulations: list[responses.AbstractManipulation] = []
        self.message_manipulations: list[responses.AbstractManipulation] = []
        self.last_macros: tuple[str, dict[str, str]] | None = None
        #: True when the session ended without QUIT (EOF, timeout, protocol error).
        self.ended_without_quit = False
        #: The message whose end was already reported to ``hook_on_abort``.
        self.reported_message: object | None = None

    def connection_lost(self) -> None:
        self.ended_without_quit = True
        super().connection_lost()

    def handle_timeout(self) -> None:
        self.ended_without_quit = True
        super().handle_timeout()


class HookRunner:
    """Connects one application's hooks to a Client's signals."""

    def __init__(
        self, hooks: Mapping[str, Hook | None], hidden_macro_stages: frozenset[str],
        no_reply_signals: frozenset[str] = frozenset(),
    ) -> None:
        self.hooks = dict(hooks)
        #: Command bytes (as str) whose macros the application asked not to see.
        self.hidden = hidden_macro_stages
        #: Signals whose hooks are annotated ``-> None``: the MTA does not wait for a reply.
        self.no_reply = no_reply_signals

    # ------------------------------------------------------------------ wiring

    def signal_handlers(self) -> dict[str, Callable[..., Any]]:
        """Signal name -> handler for every hook that is set (plus the bookkeeping ones)."""
        wanted: dict[str, Callable[..., Any]] = {
            "define-macro": self._on_macro,
            "abort": self._on_abort,
            "finished": self._on_finished,
            "reset": self._on_reset,
            "error": self._on_error,
        }
        builders: dict[str, tuple[str, Callable[..., commands.BaseCommand]]] = {
            "connect": ("hook_on_connect", _connect),
            "helo": ("hook_on_helo", _helo),
            "envelope-from": ("hook_on_mail_from", _mail_from),
            "envelope-recipient": ("hook_on_rcpt_to", _rcpt_to),
            "data": ("hook_on_data", lambda context: commands.Data()),
            "header": ("hook_on_header", _header),
            "end-of-header": ("hook_on_end_of_headers", lambda context: commands.EndOfHeaders()),
            "body": ("hook_on_body_chunk", lambda context, chunk: commands.BodyChunk(chunk)),
            "unknown": ("hook_on_unknown", _unknown),
        }
        for signal, (hook_name, build) in builders.items():
            hook = self.hooks.get(hook_name)
            if hook is not None:
                wanted[signal] = self._stage_handler(signal, hook, build)
        # End-of-message always answers: with no hook it accepts with the queued manipulations.
        wanted["end-of-message"] = self._on_end_of_message
        return wanted

    def _stage_handler(
        self, signal: str, hook: Hook, build: Callable[..., commands.BaseCommand]
    ) -> Callable[..., Awaitable[Status | None]]:
        def handler(context: PurePythonMilterContext, *args: Any) -> Awaitable[Status | None]:
            command = build(context, *args)
            command.macros = self._take_macros(context, command.command_char)
            return self._run(context, signal, hook, command)

        return handler

    # ------------------------------------------------------------------ running hooks

    async def _run(
        self, context: PurePythonMilterContext, signal: str, hook: Hook,
        command: commands.BaseCommand,
    ) -> Status | None:
        connection_id_context.set(context.connection_id)
        response = await hook(command)
        return self._answer(context, signal, response)

    def _on_end_of_message(
        self, context: PurePythonMilterContext, chunk: bytes
    ) -> Awaitable[Status | None]:
        command = commands.EndOfMessage()
        command.macros = self._take_macros(context, "E")
        return self._end_of_message(context, chunk, command)

    async def _end_of_message(
        self, context: PurePythonMilterContext, chunk: bytes, command: commands.EndOfMessage
    ) -> Status | None:
        connection_id_context.set(context.connection_id)
        body_hook = self.hooks.get("hook_on_body_chunk")
        if chunk and body_hook is not None:
            # Sendmail may put the last body bytes in the end-of-message packet; the body hook
            # sees them as one more chunk (purepythonmilter refused such a packet).
            extra = await body_hook(commands.BodyChunk(chunk))
            if isinstance(extra, responses.AbstractResponse):
                self._queue(context, extra.manipulations)
        hook = self.hooks.get("hook_on_end_of_message")
        response = await hook(command) if hook is not None else None
        status = self._answer(context, "end-of-message", response or responses.Continue())
        if status is not None:
            self._message_ended(context)
        return status

    def _answer(
        self, context: PurePythonMilterContext, signal: str, response: object
    ) -> Status | None:
        if response is None:
            return None
        if not isinstance(response, responses.AbstractResponse):
            raise TypeError(
                f"a hook for {signal} returned {response!r}; return a purepythonmilter "
                "response (Continue(), Reject()...) or None"
            )
        self._queue(context, response.manipulations)
        if signal == "end-of-message":
            self._apply(context)
        elif signal in self.no_reply:
            # The MTA was told not to wait for an answer here, so none can be sent (the
            # conversation would go out of step, as it does in purepythonmilter).
            log.warning("%s: the %s hook is annotated to return None but returned %s; "
                        "ignored (its manipulations are kept)", context.connection_id.short,
                        signal, type(response).__name__)
            return None
        status = self._status(context, signal, response)
        if signal in _MESSAGE_STAGES and status in _MESSAGE_VERDICTS:
            self._message_ended(context)
        return status

    def _message_ended(self, context: PurePythonMilterContext) -> None:
        """The message ended with a verdict: the MTA sends ABORT next, and purepythonmilter
        called ``hook_on_abort`` for it. milterkit emits ``abort`` only for a message that ends
        undecided, so the end of a decided one is reported here (and the ``abort`` signal, if
        it comes for the same message, is not reported twice)."""
        context.reported_message = context.message_result
        self._detach(context, "hook_on_abort", commands.Abort())

    def _status(
        self, context: PurePythonMilterContext, signal: str, response: responses.AbstractResponse
    ) -> Status | None:
        if isinstance(response, responses.Continue):
            return Status.CONTINUE
        if isinstance(response, responses.Accept):
            return Status.ACCEPT
        if isinstance(response, responses.Reject):
            return Status.REJECT
        if isinstance(response, responses.DiscardMessage):
            return Status.DISCARD
        if isinstance(response, responses.SkipToNextStage):
            return Status.SKIP
        if isinstance(response, responses.BaseReplyWithCode):
            context.set_reply(response.code_text, response.enhanced_text, response.text)
            return Status.REJECT if response.code_text[0] == "5" else Status.TEMPORARY_FAILURE
        if isinstance(response, responses.Quarantine):
            if signal != "end-of-message":
                raise ValueError(f"Quarantine is only valid at end-of-message, not at {signal}")
            context.quarantine(response.reason)
            return Status.CONTINUE
        if isinstance(response, responses.CauseConnectionFail):
            log.info("%s: CauseConnectionFail at %s: sending 'f' and closing",
                     context.connection_id.short, signal)
            context.raw_write(ConnectionFailure().to_bytes())
            context.connection_lost()  # ends the session: the runtime closes the connection
            return None
        raise TypeError(
            f"{type(response).__name__} is not a final answer; a hook for {signal} cannot "
            "return it"
        )

    # ------------------------------------------------------------------ manipulations

    def _queue(
        self, context: PurePythonMilterContext, manipulations: list[responses.AbstractManipulation]
    ) -> None:
        for manipulation in manipulations:
            if not isinstance(manipulation, responses.AbstractManipulation):
                raise TypeError(f"{manipulation!r} is not a manipulation")
        if context.message_result is None:
            context.connection_manipulations.extend(manipulations)
        else:
            context.message_manipulations.extend(manipulations)

    def _apply(self, context: PurePythonMilterContext) -> None:
        queued = [*context.connection_manipulations, *context.message_manipulations]
        context.message_manipulations = []
        for manipulation in queued:
            apply_manipulation(context, manipulation)

    # ------------------------------------------------------------------ bookkeeping

    def _take_macros(self, context: PurePythonMilterContext, stage: str | bytes) -> dict[str, str]:
        stage = stage.decode("ascii") if isinstance(stage, bytes) else stage
        last, context.last_macros = context.last_macros, None
        if last is None or last[0] != stage or stage in self.hidden:
            return {}
        return dict(last[1])

    def _on_macro(
        self, context: PurePythonMilterContext, stage: str, macros: dict[str, str]
    ) -> None:
        context.last_macros = (stage, macros)

    def _on_abort(self, context: PurePythonMilterContext, state: object) -> Awaitable[None] | None:
        context.message_manipulations = []
        context.last_macros = None
        hook = self.hooks.get("hook_on_abort")
        current = context.message_result
        if hook is None or current is None or current is context.reported_message:
            return None  # no message open, or its end was reported with its verdict
        context.reported_message = current
        return self._notify(context, hook, commands.Abort())

    def _on_finished(self, context: PurePythonMilterContext) -> None:
        if not context.ended_without_quit:
            self._detach(context, "hook_on_quit", commands.Quit())

    def _on_reset(self, context: PurePythonMilterContext) -> None:
        # QUIT_NC: this SMTP client is done; the next one starts with nothing queued.
        context.connection_manipulations = []
        context.message_manipulations = []
        self._detach(context, "hook_on_quit", commands.Quit())

    def _on_error(self, context: PurePythonMilterContext, error: BaseException) -> None:
        context.ended_without_quit = True

    def _detach(
        self, context: PurePythonMilterContext, name: str, command: commands.BaseCommand
    ) -> None:
        hook = self.hooks.get(name)
        if hook is None or context.await_hook is None:
            return

        def done(result: Any, error: BaseException | None) -> None:
            if error is not None:
                log.error("%s: %s raised", context.connection_id.short, name, exc_info=error)

        context.await_hook(self._notify(context, hook, command), done)

    async def _notify(
        self, context: PurePythonMilterContext, hook: Hook, command: commands.BaseCommand
    ) -> None:
        connection_id_context.set(context.connection_id)
        await hook(command)


def apply_manipulation(
    context: ClientContext, manipulation: responses.AbstractManipulation
) -> None:
    """Carry out one queued manipulation with milterkit's action of the same meaning."""
    m = manipulation
    if isinstance(m, responses.InsertHeader):
        context.insert_header(m.index, m.headername, m.headertext)
    elif isinstance(m, responses.ChangeHeader):
        # Both MTAs read index 0 as 1; milterkit's change_header counts from 1.
        context.change_header(m.headername, max(m.nth_occurrence, 1), m.headertext)
    elif isinstance(m, responses.AppendHeader):
        context.add_header(m.headername, m.headertext)
    elif isinstance(m, responses.AddRecipientWithEsmtpArgs):
        context.add_recipient(m.recipient, _esmtp_text(m.esmtp_args))
    elif isinstance(m, responses.AddRecipient):
        context.add_recipient(m.recipient)
    elif isinstance(m, responses.RemoveRecipient):
        context.delete_recipient(m.recipient)
    elif isinstance(m, responses.ChangeMailFrom):
        context.change_from(m.mail_from, _esmtp_text(m.esmtp_args))
    elif isinstance(m, responses.ReplaceBodyChunk):
        context.replace_body(m.chunk)
    else:
        raise TypeError(f"unknown manipulation {m!r}")


def _esmtp_text(args: Mapping[str, str | None]) -> str | None:
    text = " ".join(key if value is None else f"{key}={value}" for key, value in args.items())
    return text or None


# ---------------------------------------------------------------------- payloads
# The signals hand over decoded text; purepythonmilter's commands decode the payload bytes
# themselves, so these put the bytes back exactly (surrogateescape keeps every byte).


def _connect(
    context: ClientContext, hostname: str, address: SocketAddress
) -> commands.Connect:
    socket_data = address.family.encode("ascii")
    if address.family != "U":
        socket_data += address.port.to_bytes(2, "big") + encode_text(address.raw or "")
    return commands.Connect(encode_text(hostname) + b"\0" + socket_data + b"\0")


def _helo(context: ClientContext, name: str) -> commands.Helo:
    return commands.Helo(encode_text(name) + b"\0")


def _envelope(address: str, parameters: tuple[str, ...]) -> bytes:
    return b"".join(encode_text(part) + b"\0" for part in (address, *parameters))


def _mail_from(context: ClientContext, sender: str) -> commands.MailFrom:
    return commands.MailFrom(_envelope(sender, context.envelope_parameters))


def _rcpt_to(context: ClientContext, recipient: str) -> commands.RcptTo:
    return commands.RcptTo(_envelope(recipient, context.envelope_parameters))


def _header(context: ClientContext, name: str, value: str) -> commands.Header:
    return commands.Header(encode_text(name) + b"\0" + encode_text(value) + b"\0")


def _unknown(context: ClientContext, line: str) -> commands.Unknown:
    return commands.Unknown(encode_text(line) + b"\0")
