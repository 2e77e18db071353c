"""``ClientContext``: one MTA connection, sans-I/O. Bytes in through :meth:`~ClientContext.feed`,
named signals out, replies through the ``write`` callable.

The milter is the *client* of the MTA (milter-manager's naming), so this is the milter side.
Nothing here imports asyncio or touches a socket: the runtime moves bytes and arms timers, and a
captured byte stream fed in by hand takes exactly the code path of a live connection.
"""

from __future__ import annotations

import inspect
import itertools
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from .macros import MacrosRequests, MacroTable
from .protocol import commands as cmd
from .protocol.constants import CHUNK_SIZE, DEFAULT_MAX_PAYLOAD, ActionFlag, MacroStage
from .protocol.constants import ProtocolFlag as P
from .protocol.errors import NegotiationError, ProtocolError, UnexpectedCommand
from .protocol.framing import PacketDecoder
from .protocol.negotiation import Negotiation, Option, effective_offer, negotiate
from .protocol.replies import (
    ACCEPT_PACKET,
    CONTINUE_PACKET,
    DISCARD_PACKET,
    PROGRESS_PACKET,
    REJECT_PACKET,
    SKIP_PACKET,
    TEMPFAIL_PACKET,
    AddHeader,
    AddRecipient,
    AddRecipientWithParameters,
    AnyReply,
    ChangeFrom,
    ChangeHeader,
    DeleteRecipient,
    InsertHeader,
    Quarantine,
    ReplaceBody,
    ReplyText,
)
from .reply import ReplyError, format_reply
from .responses import QUEUE_KEY, apply_queued, to_status
from .result import MessageResult
from .signals import SignalTable
from .status import PASS, PASSING, State, Status

F = TypeVar("F", bound=Callable[..., Any])
log = logging.getLogger("milterkit.context")

#: Called by the context with an awaitable a handler returned and a callback to call with its
#: result (or the exception it raised). The asyncio runtime provides one.
AwaitHook = Callable[[Awaitable[Any], Callable[[Any, BaseException | None], None]], None]


class MilterError(Exception):
    """A milter (our side) used the API wrongly; raised locally, nothing is sent."""


class StatusError(MilterError):
    """A handler returned a status that is not valid for the stage."""


class ActionError(MilterError):
    """An action was called where it is not allowed or was not negotiated."""


class StateError(MilterError):
    """A call that does not fit the context's state (a response with no reply owed)."""


S = Status
_CONNECTION_STATUSES = frozenset({S.REJECT, S.TEMPORARY_FAILURE, S.ACCEPT, S.NO_REPLY, S.PROGRESS})
_MESSAGE_STATUSES = _CONNECTION_STATUSES | {S.DISCARD}


@dataclass(frozen=True, slots=True)
class Stage:
    """A replying stage: its signal, its states, its protocol flags and its valid statuses."""

    name: str
    state: State
    replied: State
    no_event: P
    no_reply: P
    allowed: frozenset[Status]

    @property
    def response(self) -> str:
        return self.name + "-response"


NEGOTIATE = Stage(
    "negotiate", State.NEGOTIATE, State.NEGOTIATE_REPLIED, P.NONE, P.NONE,
    PASS | {S.ALL_OPTIONS, S.REJECT, S.TEMPORARY_FAILURE, S.PROGRESS},
)
CONNECT = Stage(
    "connect", State.CONNECT, State.CONNECT_REPLIED, P.NO_CONNECT, P.NO_REPLY_CONNECT,
    PASS | _CONNECTION_STATUSES,
)
HELO = Stage(
    "helo", State.HELO, State.HELO_REPLIED, P.NO_HELO, P.NO_REPLY_HELO,
    PASS | _CONNECTION_STATUSES,
)
ENVELOPE_FROM = Stage(
    "envelope-from", State.ENVELOPE_FROM, State.ENVELOPE_FROM_REPLIED, P.NO_ENVELOPE_FROM,
    P.NO_REPLY_ENVELOPE_FROM, PASS | _MESSAGE_STATUSES,
)
ENVELOPE_RECIPIENT = Stage(
    "envelope-recipient", State.ENVELOPE_RECIPIENT, State.ENVELOPE_RECIPIENT_REPLIED,
    P.NO_ENVELOPE_RECIPIENT, P.NO_REPLY_ENVELOPE_RECIPIENT, PASS | _MESSAGE_STATUSES,
)
DATA = Stage(
    "data", State.DATA, State.DATA_REPLIED, P.NO_DATA, P.NO_REPLY_DATA,
    PASS | _MESSAGE_STATUSES,
)
UNKNOWN = Stage(
    "unknown", State.UNKNOWN, State.UNKNOWN_REPLIED, P.NO_UNKNOWN, P.NO_REPLY_UNKNOWN,
    PASS | {S.REJECT, S.TEMPORARY_FAILURE, S.NO_REPLY, S.PROGRESS},
)
HEADER = Stage(
    "header", State.HEADER, State.HEADER_REPLIED, P.NO_HEADERS, P.NO_REPLY_HEADER,
    PASS | _MESSAGE_STATUSES,
)
END_OF_HEADER = Stage(
    "end-of-header", State.END_OF_HEADER, State.END_OF_HEADER_REPLIED, P.NO_END_OF_HEADER,
    P.NO_REPLY_END_OF_HEADER, PASS | _MESSAGE_STATUSES,
)
BODY = Stage(
    "body", State.BODY, State.BODY_REPLIED, P.NO_BODY, P.NO_REPLY_BODY,
    PASS | _MESSAGE_STATUSES | {S.SKIP},
)
END_OF_MESSAGE = Stage(
    "end-of-message", State.END_OF_MESSAGE, State.END_OF_MESSAGE_REPLIED, P.NONE, P.NONE,
    PASS | {S.REJECT, S.TEMPORARY_FAILURE, S.ACCEPT, S.DISCARD, S.PROGRESS},
)
ABORT = Stage(
    "abort", State.ABORT, State.ABORT_REPLIED, P.NONE, P.NONE, frozenset(Status),
)

#: Every stage a handler answers, by signal name.
STAGES: dict[str, Stage] = {
    stage.name: stage
    for stage in (
        NEGOTIATE, CONNECT, HELO, ENVELOPE_FROM, ENVELOPE_RECIPIENT, DATA, UNKNOWN, HEADER,
        END_OF_HEADER, BODY, END_OF_MESSAGE, ABORT,
    )
}
#: Stages whose events the MTA can be asked not to send.
EVENT_STAGES = tuple(stage for stage in STAGES.values() if stage.no_event)
#: Signals with no status and no response.
NOTIFICATIONS = ("define-macro", "timeout", "message-processed", "finished", "error", "reset")
#: Every signal of a context.
SIGNAL_NAMES: tuple[str, ...] = (
    *STAGES, *(stage.response for stage in STAGES.values()), *NOTIFICATIONS,
)
_COMMAND_STATES = frozenset(stage.state for stage in STAGES.values() if stage is not ABORT)


def _default_method(stage: Stage) -> str:
    return "do_" + stage.name.replace("-", "_")


_WAITING: Any = object()  # an awaitable is in flight; the stage resumes when it completes
_tags = itertools.count(1)


class ClientContext:
    """One MTA connection: decodes the MTA's packets, emits signals, writes replies.

    ``write`` receives every reply packet (bytes); nothing else does I/O. ``signals`` is an
    optional parent :class:`~milterkit.signals.SignalTable` (a Client's) whose handlers run before
    the context's own. ``actions`` defaults to every action the MTA offers; ``protocol`` (the
    protocol steps to request) defaults to "skip the events nobody handles, use SKIP if offered".
    ``exception_policy`` is the status a handler's exception turns into (``None`` re-raises it
    from :meth:`feed`); ``exception_reply`` is the SMTP reply sent with a REJECT or
    TEMPORARY_FAILURE policy.
    """

    def __init__(
        self,
        write: Callable[[bytes], object],
        *,
        signals: SignalTable | None = None,
        actions: ActionFlag | None = None,
        protocol: P | None = None,
        macro_requests: Mapping[MacroStage, Sequence[str]] | None = None,
        max_payload: int = DEFAULT_MAX_PAYLOAD,
        exception_policy: Status | None = Status.TEMPORARY_FAILURE,
        exception_reply: str | None = "451 4.3.0 Temporary failure in the mail filter",
        timeout: float = 7210.0,
        tag: int | None = None,
    ) -> None:
        self._write = write
        self.signals = SignalTable(SIGNAL_NAMES, parent=signals)
        self.requested_actions = actions
        self.requested_protocol = protocol
        self.macros_requests = MacrosRequests()
        for stage, names in (macro_requests or {}).items():
            self.macros_requests.set_symbols(stage, *names)
        if exception_policy is not None and exception_policy not in (
            S.TEMPORARY_FAILURE, S.REJECT, S.ACCEPT, S.CONTINUE
        ):
            raise ValueError(
                "exception_policy must be TEMPORARY_FAILURE, REJECT, ACCEPT, CONTINUE or None, "
                f"not {exception_policy!r}"
            )
        self.exception_policy = exception_policy
        self.exception_reply = _parse_reply(exception_reply) if exception_reply else None
        #: Inactivity timeout in seconds, for the runtime to arm (libmilter's default, 7210 s).
        self.timeout = timeout
        #: A number that names this connection in every log line.
        self.tag = tag if tag is not None else next(_tags)
        #: Set by the runtime so coroutine handlers can be awaited.
        self.await_hook: AwaitHook | None = None
        #: The peer's socket address as the runtime saw it (not the SMTP client's).
        self.peer: object | None = None
        #: Free per-connection storage for handlers; cleared only when a new SMTP client
        #: starts on the connection (QUIT_NC).
        self.connection_data: dict[str, Any] = {}

        self.state = State.START
        self.last_state = State.START
        #: The status of the last reply written.
        self.status = Status.DEFAULT
        self.macros = MacroTable()
        self.negotiation: Negotiation | None = None
        self.offer: cmd.Negotiate | None = None
        #: The SMTP client as the CONNECT command described it.
        self.hostname: str | None = None
        self.address: cmd.SocketAddress | None = None
        self.helo_name: str | None = None
        #: ESMTP parameters of the current MAIL or RCPT command.
        self.envelope_parameters: tuple[str, ...] = ()
        #: Reason given to :meth:`quarantine` in the current message.
        self.quarantine_reason: str | None = None
        self.created = time.monotonic()
        self.messages = 0

        self._decoder = PacketDecoder(max_payload)
        self._backlog: deque[tuple[bytes, bytes]] = deque()
        self._running = False
        self._pending: Stage | None = None
        self._negotiate_option: Option | None = None
        self._generation = 0  # bumped when the session ends, so late async results are dropped
        self._finished = False
        self._connected = False
        self._in_transaction = False
        self._reply: str | None = None
        self._private: Any = None
        self._shelf: dict[str, Any] = {}
        self._modifications: list[AnyReply] = []
        self._body_chunks: list[ReplaceBody] = []
        self._result: MessageResult | None = None
        # Stages we never answer (no-reply negotiated with the MTA), by name: a set lookup per
        # reply instead of IntFlag arithmetic (enum's __and__ builds a new flag object each time
        # and was ~10% of feed()'s time).
        self._silent: frozenset[str] = frozenset()
        # Stages whose handlers may say NO_REPLY: the negotiated ones and the emulated ones.
        self._no_reply_any = P.NONE
        cls = type(self)
        self._overridden = frozenset(
            stage.name
            for stage in STAGES.values()
            if getattr(cls, _default_method(stage))
            is not getattr(ClientContext, _default_method(stage))
        )

    # ------------------------------------------------------------------ signals

    def connect(self, name: str, handler: F, *, weak: bool = False) -> F:
        """Connect ``handler(context, *args)`` to the signal ``name``; returns the handler."""
        return self.signals.connect(name, handler, weak=weak)

    def disconnect(self, name: str, handler: Callable[..., Any]) -> None:
        """Disconnect ``handler`` from the signal ``name``."""
        self.signals.disconnect(name, handler)

    def on(self, name: str) -> Callable[[F], F]:
        """Decorator form of :meth:`connect`: ``@context.on("header")``."""
        return lambda handler: self.connect(name, handler)

    def emit(self, name: str, *args: Any) -> Status | None:
        """Emit a signal by name, as milter-manager's ``signal_emit``.

        For a ``*-response`` signal this is how a handler that returned PROGRESS answers later:
        ``context.emit("envelope-recipient-response", Status.REJECT)``. For an event signal the
        handlers run and the combined status is returned (no reply is written).
        """
        if name.endswith("-response") and name[: -len("-response")] in STAGES:
            (status,) = args
            self.respond(STAGES[name[: -len("-response")]].name, status)
            return None
        stage = STAGES.get(name)
        if stage is not None:
            result = self._run_handlers(stage, args, iter(self._receivers(stage)), S.DEFAULT)
            return None if result is _WAITING else result
        self._notify(name, *args)
        return None

    def respond(self, stage: str | None, status: Status | None = None) -> None:
        """Answer the stage whose handler returned PROGRESS: emits ``<stage>-response(status)``.

        ``stage`` may be None for "whatever is pending". Raises :class:`StateError` if no reply is
        owed for that stage. Commands that arrived meanwhile are processed afterwards.
        """
        pending = self._pending
        if pending is None or (stage is not None and pending.name != stage):
            owed = pending.name if pending else "nothing"
            raise StateError(f"no reply is owed for {stage!r} (a reply is owed for {owed})")
        status = S.DEFAULT if status is None else Status(status)
        try:
            status = self._check(pending, status)
        except MilterError as exc:
            status = self._on_handler_error(pending, exc)
        self._respond(pending, status)
        self._run()

    def _receivers(self, stage: Stage) -> Sequence[Callable[..., Any]]:
        found = self.signals.receivers(stage.name, self)
        if stage.name in self._overridden:
            method = getattr(self, _default_method(stage))
            return [*found, lambda _context, *args: method(*args)]
        return found

    def handles(self, name: str) -> bool:
        """Whether any handler (or an overridden default) listens to the event ``name``."""
        return self.signals.has_receivers(name) or name in self._overridden

    def _notify(self, name: str, *args: Any) -> None:
        """Emit a signal that has no status; a handler that raises is logged, never fatal."""
        for receiver in self.signals.receivers(name, self):
            try:
                receiver(self, *args)
            except Exception:
                log.exception("[%s] handler of %r raised", self.tag, name)

    # ------------------------------------------------------------------ default handlers
    # The class handlers run after every connected handler (GObject's RUN_LAST). Subclasses may
    # override them to build a filter as a class.

    def do_negotiate(self, option: Option, requests: MacrosRequests) -> Status | None:
        return None

    def do_connect(self, hostname: str, address: cmd.SocketAddress) -> Status | None:
        return None

    def do_helo(self, fqdn: str) -> Status | None:
        return None

    def do_envelope_from(self, address: str) -> Status | None:
        return None

    def do_envelope_recipient(self, address: str) -> Status | None:
        return None

    def do_data(self) -> Status | None:
        return None

    def do_unknown(self, command: str) -> Status | None:
        return None

    def do_header(self, name: str, value: str) -> Status | None:
        return None

    def do_end_of_header(self) -> Status | None:
        return None

    def do_body(self, chunk: bytes) -> Status | None:
        return None

    def do_end_of_message(self, chunk: bytes) -> Status | None:
        return None

    def do_abort(self, state: State) -> Status | None:
        return None

    # ------------------------------------------------------------------ feeding

    @property
    def finished(self) -> bool:
        """True once the session is over; the runtime closes the connection then."""
        return self._finished

    @property
    def pending(self) -> str | None:
        """The stage whose reply is owed (a handler returned PROGRESS), or None."""
        return self._pending.name if self._pending is not None else None

    @property
    def in_message_processing(self) -> bool:
        """True from MAIL up to (not including) end-of-message, as milter-manager defines it."""
        return State.ENVELOPE_FROM <= self.state < State.END_OF_MESSAGE

    def feed(self, data: bytes) -> None:
        """Decode ``data`` and dispatch every complete command, in order.

        Raises :class:`~milterkit.protocol.ProtocolError` when the MTA broke the protocol; the
        context has then emitted ``error``, ``abort`` (if a message was open) and ``finished``.
        """
        if self._finished:
            if data:
                raise UnexpectedCommand(f"{len(data)} bytes arrived after the session finished")
            return
        packets = self._decoder.decode(data)
        if packets:
            self._backlog.extend(packets)
            self._run()
        error = self._decoder.error
        if error is not None and not self._finished:
            assert isinstance(error, ProtocolError)
            self._fail(error)
            raise error

    def connection_lost(self) -> None:
        """The MTA closed the connection (EOF, reset): abort an open message and finish."""
        if self._finished:
            return
        if self._decoder.buffered:
            log.info("[%s] connection closed inside a packet (%d bytes dropped)", self.tag,
                     self._decoder.buffered)
        self._abort_open_message()
        self._finish()

    def handle_timeout(self) -> None:
        """The runtime's inactivity timer fired: emit ``timeout``, abort, finish."""
        if self._finished:
            return
        self._notify("timeout")
        self._abort_open_message()
        self._finish()

    def _run(self) -> None:
        if self._running:
            return
        self._running = True
        try:
            backlog = self._backlog
            while backlog and self._pending is None and not self._finished:
                command, payload = backlog.popleft()
                self._process(command, payload)
        except ProtocolError as exc:
            self._running = False
            self._fail(exc)
            raise
        finally:
            self._running = False

    def _process(self, command: bytes, payload: bytes) -> None:
        decoded = cmd.decode_command(command, payload)
        if self.offer is None and command not in b"OD":
            raise UnexpectedCommand(
                f"{type(decoded).__name__} command arrived before option negotiation", command
            )
        _HANDLERS[command](self, decoded)

    def _fail(self, exc: ProtocolError) -> None:
        if self._finished:
            return
        log.error("[%s] protocol error: %s", self.tag, exc)
        self._notify("error", exc)
        self._abort_open_message()
        self._finish()

    def _finish(self) -> None:
        if self._finished:
            return
        self._finished = True
        self._generation += 1
        self._pending = None
        self._backlog.clear()
        self._set_state(State.FINISHED)
        self._notify("finished")

    def _set_state(self, state: State) -> None:
        self.state = state
        if state in _COMMAND_STATES:
            self.last_state = state

    # ------------------------------------------------------------------ command handlers

    def _on_negotiate(self, command: cmd.Negotiate) -> None:
        if self.offer is not None:
            raise UnexpectedCommand("a second OPTNEG arrived on one connection", b"O")
        self.offer = command
        self.macros.clear()
        offered = effective_offer(command)
        option = self._default_option(offered)
        self._dispatch(NEGOTIATE, (option, self.macros_requests), option)

    def _default_option(self, offered: Option) -> Option:
        """What we ask for unless a negotiate handler says otherwise (libmilter's ALL_OPTS)."""
        actions = offered.actions if self.requested_actions is None else self.requested_actions
        actions &= ~ActionFlag.SET_SYMBOL_LIST
        if self.requested_protocol is not None:
            protocol = self.requested_protocol
        else:
            protocol = P.NONE
            for stage in EVENT_STAGES:
                if not self.handles(stage.name):
                    protocol |= stage.no_event
            protocol |= offered.protocol & P.SKIP
        return Option(offered.version, ActionFlag(actions), P(protocol))

    def _on_macro(self, command: cmd.DefineMacro) -> None:
        self.macros.define(command.stage, command.macros)
        if self.signals.has_receivers("define-macro"):
            self._notify("define-macro", command.stage.decode("ascii"), dict(command.macros))

    def _on_connect(self, command: cmd.Connect) -> None:
        if self._connected:
            raise UnexpectedCommand(
                "a second CONNECT arrived without QUIT_NC (K) ending the first client", b"C"
            )
        self._connected = True
        self.macros.clear_after(b"C")
        self.hostname = command.hostname
        self.address = command.address
        self._dispatch(CONNECT, (command.hostname, command.address))

    def _on_helo(self, command: cmd.Helo) -> None:
        self._abort_open_message()
        self.macros.clear_after(b"H")
        self.helo_name = command.name
        self._dispatch(HELO, (command.name,))

    def _on_mail(self, command: cmd.Mail) -> None:
        # Sendmail sends no ABORT after an early verdict: a new MAIL ends the old message.
        self._abort_open_message()
        self.macros.clear_after(b"M")
        result = self._begin_message()
        result.envelope_from = command.sender
        self.envelope_parameters = command.parameters
        self._dispatch(ENVELOPE_FROM, (command.sender,))

    def _on_rcpt(self, command: cmd.Rcpt) -> None:
        self.macros.clear_after(b"R")
        self._begin_message().recipients.append(command.recipient)
        self.envelope_parameters = command.parameters
        self._dispatch(ENVELOPE_RECIPIENT, (command.recipient,))

    def _on_data(self, command: cmd.Data) -> None:
        self._begin_message()
        self._dispatch(DATA, ())

    def _on_header(self, command: cmd.Header) -> None:
        self._begin_message().header_count += 1
        self._dispatch(HEADER, (command.name, command.value))

    def _on_end_of_header(self, command: cmd.EndOfHeader) -> None:
        self._begin_message()
        self._dispatch(END_OF_HEADER, ())

    def _on_body(self, command: cmd.Body) -> None:
        self._begin_message().body_size += len(command.chunk)
        self._dispatch(BODY, (command.chunk,))

    def _on_end_of_message(self, command: cmd.EndOfMessage) -> None:
        self._begin_message().body_size += len(command.chunk)
        self.quarantine_reason = None
        self._dispatch(END_OF_MESSAGE, (command.chunk,))

    def _on_abort(self, command: cmd.Abort) -> None:
        # Postfix sends ABORT after every message and sometimes twice: the second is a no-op.
        if self.state in (State.ABORT, State.ABORT_REPLIED):
            return
        self._abort(self.state)
        # Only a real ABORT forgets the message's macros (after its handlers could read them):
        # the synthetic abort of a MAIL without ABORT must keep the new MAIL's own macros.
        self.macros.clear_message()

    def _on_quit(self, command: cmd.Quit) -> None:
        self._abort_open_message()
        self._set_state(State.QUIT)
        self._finish()

    def _on_quit_nc(self, command: cmd.QuitNewConnection) -> None:
        self._abort_open_message()
        self._set_state(State.QUIT)
        self.macros.clear()
        self._connected = False
        self.hostname = self.address = self.helo_name = None
        self.connection_data.clear()
        self._notify("reset")
        self._set_state(State.NEGOTIATE_REPLIED)

    def _on_unknown(self, command: cmd.Unknown) -> None:
        self._dispatch(UNKNOWN, (command.line,))

    # ------------------------------------------------------------------ transactions

    def _begin_message(self) -> MessageResult:
        result = self._result
        if result is None:
            result = self._result = MessageResult()
            self._in_transaction = True
        return result

    def _abort_open_message(self) -> None:
        if self._in_transaction:
            self._abort(self.state)

    def _abort(self, state: State) -> None:
        """Emit ``abort(state)`` and forget the message. ABORT is never answered, so its
        handlers cannot hold the session: an awaitable they return runs on, unwaited."""
        self._set_state(State.ABORT)
        self._pending = None
        for receiver in self._receivers(ABORT):
            try:
                result = receiver(self, state)
                if result is not None and inspect.isawaitable(result):
                    self._detach(result)
            except Exception as exc:
                log.error("[%s] handler of 'abort' raised", self.tag, exc_info=exc)
                self._notify("error", exc)
        if self.signals.has_receivers(ABORT.response):
            self._notify(ABORT.response, S.ABORT)
        self._set_state(State.ABORT_REPLIED)
        self._end_message()

    def _detach(self, awaitable: Awaitable[Any]) -> None:
        hook = self.await_hook
        if hook is None:
            if inspect.iscoroutine(awaitable):
                awaitable.close()
            log.error("[%s] an abort handler returned an awaitable but there is no runtime to "
                      "await it", self.tag)
            return

        def done(result: Any, error: BaseException | None) -> None:
            if error is not None:
                log.error("[%s] async handler of 'abort' raised", self.tag, exc_info=error)

        hook(awaitable, done)

    def _end_message(self) -> None:
        """Forget everything that belongs to one transaction."""
        self._in_transaction = False
        self._result = None
        self._reply = None
        self._private = None
        self._shelf.clear()
        self._modifications.clear()
        self._body_chunks.clear()
        self.envelope_parameters = ()

    # ------------------------------------------------------------------ emission

    def _dispatch(self, stage: Stage, args: tuple[Any, ...], option: Option | None = None) -> None:
        self.state = self.last_state = stage.state  # every stage state is a command state
        self._pending = stage
        self._negotiate_option = option
        if stage is END_OF_MESSAGE and QUEUE_KEY in self._shelf:
            try:
                apply_queued(self)  # milterkit.Queued modifications, asked for earlier
            except Exception as exc:
                self._respond(stage, self._on_handler_error(stage, exc))
                return
        receivers = self._receivers(stage)
        if not receivers:
            # Nobody listens: no opinion, which is always valid. Skip the emission machinery.
            self._respond(stage, S.CONTINUE)
            return
        try:
            status = self._run_handlers(stage, args, iter(receivers), S.DEFAULT)
            if status is _WAITING:
                return
            status = self._check(stage, status)
        except Exception as exc:
            status = self._on_handler_error(stage, exc)
        if status is S.PROGRESS:
            return
        if self._pending is not stage:
            # A handler already answered with respond() (or the session ended): one reply only.
            if not self._finished:
                log.warning("[%s] %s was answered by respond() and also returned %s; the "
                            "second answer is dropped", self.tag, stage.name, status.name)
            return
        self._respond(stage, status)

    def _run_handlers(
        self, stage: Stage, args: tuple[Any, ...], receivers: Iterator[Callable[..., Any]],
        status: Status,
    ) -> Any:
        """Run handlers until one is decisive: milter-manager's status accumulator."""
        for receiver in receivers:
            result = receiver(self, *args)
            if result is None:
                continue
            if not isinstance(result, Status):
                if inspect.isawaitable(result):
                    self._await(stage, args, receivers, status, result)
                    return _WAITING
                result = _coerce(self, stage, result)
            if result is S.NOT_CHANGE:
                continue
            status = result
            if status not in PASSING:
                return status
        return status

    def _await(
        self, stage: Stage, args: tuple[Any, ...], receivers: Iterator[Callable[..., Any]],
        status: Status, awaitable: Awaitable[Any],
    ) -> None:
        hook = self.await_hook
        if hook is None:
            if inspect.iscoroutine(awaitable):
                awaitable.close()
            raise TypeError(
                f"a handler of {stage.name!r} returned an awaitable, but this context has no "
                "await_hook (coroutine handlers need the asyncio runtime, milterkit.Client)"
            )
        generation = self._generation

        def done(result: Any, error: BaseException | None) -> None:
            if generation != self._generation or self._pending is not stage:
                return  # the session ended (or moved on) while we waited
            try:
                if error is not None:
                    raise error
                if result is None or result is S.NOT_CHANGE:
                    merged = status
                else:
                    merged = result if isinstance(result, Status) else _coerce(self, stage, result)
                if merged in PASSING:
                    final = self._run_handlers(stage, args, receivers, merged)
                    if final is _WAITING:
                        return
                else:
                    final = merged
                final = self._check(stage, final)
            except Exception as exc:
                final = self._on_handler_error(stage, exc)
            if final is not S.PROGRESS:
                self._respond(stage, final)
                self._run()

        hook(awaitable, done)

    def _check(self, stage: Stage, status: Status) -> Status:
        """Refuse a status that is not valid for ``stage``, locally and clearly."""
        if status in PASS:
            return status  # "go on" is valid everywhere
        if status not in stage.allowed:
            valid = ", ".join(sorted(s.name for s in stage.allowed))
            raise StatusError(f"{status.name} is not a valid status for {stage.name} ({valid})")
        if stage is ABORT or stage is NEGOTIATE:
            return status
        if status is S.SKIP:
            option = self.negotiation.option if self.negotiation else None
            if option is None or not option.protocol & P.SKIP:
                raise StatusError("SKIP needs the SKIP protocol step, which was not negotiated")
        elif status is S.NO_REPLY:
            if not stage.no_reply & self._no_reply_any:
                raise StatusError(
                    f"NO_REPLY for {stage.name} needs its no-reply step requested at negotiation"
                )
        elif stage.name in self._silent and status not in PASS and status is not S.PROGRESS:
            raise StatusError(
                f"{status.name} from {stage.name}: the MTA was told not to expect a reply to "
                "this stage, so no verdict can be sent"
            )
        elif status in (S.REJECT, S.TEMPORARY_FAILURE) and self._reply is not None:
            wanted = "5" if status is S.REJECT else "4"
            if self._reply[0] != wanted:
                raise ReplyError(
                    f"reply {self._reply[:3]} does not fit {status.name} (a {wanted}xx reply "
                    "is needed); call set_reply with a matching code"
                )
        return status

    def _on_handler_error(self, stage: Stage, exc: Exception) -> Status:
        """Turn a handler's exception into the configured status (pymilter's exception policy)."""
        policy = self.exception_policy
        if policy is None:
            raise exc
        log.error(
            "[%s] handler of %r raised; answering %s", self.tag, stage.name, policy.name,
            exc_info=exc,
        )
        self._notify("error", exc)
        if stage is NEGOTIATE:
            return S.CONTINUE
        if self._pending is not stage:
            return policy  # the stage was answered already; leave the next stage's state alone
        self._reply = None
        if policy in (S.REJECT, S.TEMPORARY_FAILURE) and self.exception_reply:
            if self.exception_reply[0] == ("5" if policy is S.REJECT else "4"):
                self._reply = self.exception_reply
        if stage is END_OF_MESSAGE:
            self._modifications.clear()
            self._body_chunks.clear()
            self.quarantine_reason = None
        return policy

    # ------------------------------------------------------------------ responses

    def _respond(self, stage: Stage, status: Status) -> None:
        self._pending = None
        if stage is not NEGOTIATE and (status is S.DEFAULT or status is S.NOT_CHANGE):
            # Response handlers see what goes on the wire: "no opinion" is a CONTINUE.
            status = S.CONTINUE
        for receiver in self.signals.receivers(stage.response, self):
            try:
                receiver(self, status)
            except Exception:
                log.exception("[%s] handler of %r raised", self.tag, stage.response)
        if stage is NEGOTIATE:
            self._respond_negotiate(status)
            return
        self.status = status
        self.state = stage.replied  # a *_REPLIED state: last_state stays as it is
        if stage is END_OF_MESSAGE:
            self._respond_end_of_message(status)
            return
        if status is S.CONTINUE and stage.name not in self._silent:
            self._reply = None
            self._write(CONTINUE_PACKET)  # the common case, without the general mapping
            return
        packet = self._reply_packet(stage, status)
        self._reply = None
        if packet is not None:
            self._write(packet)

    def _reply_packet(self, stage: Stage, status: Status) -> bytes | None:
        if stage.name in self._silent:
            return None  # the MTA does not read a reply for this stage
        if status is S.CONTINUE or status is S.NO_REPLY:
            # NO_REPLY here means an emulated no-reply step: the MTA still waits, so say 'c'.
            return CONTINUE_PACKET
        if status is S.REJECT:
            return ReplyText(self._reply).to_bytes() if self._reply else REJECT_PACKET
        if status is S.TEMPORARY_FAILURE:
            return ReplyText(self._reply).to_bytes() if self._reply else TEMPFAIL_PACKET
        if status is S.ACCEPT:
            return ACCEPT_PACKET
        if status is S.DISCARD:
            return DISCARD_PACKET
        if status is S.SKIP:
            return SKIP_PACKET
        raise StatusError(f"{status.name} has no reply packet")  # pragma: no cover - _check

    def _respond_negotiate(self, status: Status) -> None:
        assert self.offer is not None
        self._set_state(State.NEGOTIATE_REPLIED)
        if status not in PASS and status is not S.ALL_OPTIONS:
            log.info("[%s] negotiate answered %s: closing without a reply", self.tag, status.name)
            self.status = status
            self._finish()
            return
        offered = effective_offer(self.offer)
        option = self._negotiate_option or self._default_option(offered)
        if status is S.ALL_OPTIONS:
            option = self._default_option(offered)
        try:
            negotiation = negotiate(self.offer, option, self.macros_requests)
        except NegotiationError as exc:
            self._fail(exc)
            raise
        self.negotiation = negotiation
        silent = negotiation.no_reply & ~negotiation.emulated_no_reply
        self._silent = frozenset(stage.name for stage in STAGES.values() if stage.no_reply & silent)
        self._no_reply_any = negotiation.no_reply
        self.status = S.CONTINUE
        self._write(negotiation.reply.to_bytes())

    def _respond_end_of_message(self, status: Status) -> None:
        result = self._begin_message()
        parts = [reply.to_bytes() for reply in self._modifications]
        if self._body_chunks:
            # All body chunks go last and together: Postfix treats the body as complete once
            # another request follows a 'b'.
            parts.extend(chunk.to_bytes() for chunk in self._body_chunks)
        if self.quarantine_reason is not None:
            parts.append(Quarantine(self.quarantine_reason).to_bytes())
        packet = self._reply_packet(END_OF_MESSAGE, status)
        assert packet is not None
        parts.append(packet)
        self._write(b"".join(parts))
        result.status = status
        result.reply = self._reply
        result.modifications = [*self._modifications, *self._body_chunks]
        result.quarantine_reason = self.quarantine_reason
        result.finished = time.monotonic()
        self.messages += 1
        if self.signals.has_receivers("message-processed"):
            self._notify("message-processed", result)
        self._end_message()

    # ------------------------------------------------------------------ macros and data

    def get_macro(self, name: str, default: str | None = None) -> str | None:
        """A macro's value by ``name`` or ``{name}``; later stages shadow earlier ones."""
        return self.macros.get(name, default)

    def __getitem__(self, name: str) -> str | None:
        return self.macros.get(name)

    def request_macros(self, stage: MacroStage | int | str, *names: str) -> None:
        """Ask the MTA to send ``names`` at ``stage`` (before negotiation, or in its handler)."""
        if self.negotiation is not None:
            raise StateError("macros can only be requested before negotiation is answered")
        self.macros_requests.set_symbols(stage, *names)

    @property
    def private(self) -> Any:
        """Data of the current mail transaction; cleared when the transaction ends."""
        return self._private

    @private.setter
    def private(self, value: Any) -> None:
        self._private = value

    def set_private(self, value: Any) -> None:
        """pymilter's ``setpriv``, scoped to the current transaction."""
        self._private = value

    def get_private(self) -> Any:
        """pymilter's ``getpriv``."""
        return self._private

    @property
    def shelf(self) -> dict[str, Any]:
        """milter-manager's mail-transaction shelf: a dict cleared when the transaction ends."""
        return self._shelf

    @property
    def message_result(self) -> MessageResult | None:
        """The record of the current message, if one is open."""
        return self._result

    @property
    def option(self) -> Option | None:
        """The negotiated version, actions and protocol steps (None before negotiation)."""
        return self.negotiation.option if self.negotiation else None

    # ------------------------------------------------------------------ replies

    def set_reply(
        self, code: str | int, xcode: str | None = None, text: str | Sequence[str] | None = None
    ) -> str:
        """Set the SMTP reply for the next REJECT or TEMPORARY_FAILURE of this stage.

        Validated as Postfix and libmilter do (see :func:`milterkit.reply.format_reply`); used
        once, by the reply of the current stage, then forgotten. Returns the formatted text.
        """
        reply = format_reply(code, xcode, text)
        self._reply = reply
        return reply

    @property
    def reply(self) -> str | None:
        """The SMTP reply text set for the current stage, if any."""
        return self._reply

    def reject(
        self, code: str | int = "550", xcode: str | None = "5.7.1",
        text: str | Sequence[str] | None = "Command rejected",
    ) -> Status:
        """Set a 5xx reply and return REJECT: ``return context.reject("550", "5.7.1", "No")``."""
        self.set_reply(code, xcode, text)
        return S.REJECT

    def temporary_failure(
        self, code: str | int = "451", xcode: str | None = "4.7.1",
        text: str | Sequence[str] | None = "Service unavailable - try again later",
    ) -> Status:
        """Set a 4xx reply and return TEMPORARY_FAILURE."""
        self.set_reply(code, xcode, text)
        return S.TEMPORARY_FAILURE

    def progress(self) -> None:
        """Send a keep-alive (``p``) while a reply is owed; the MTA restarts its timeout.

        Postfix takes it at any stage; Sendmail only at end-of-message.
        """
        stage = self._pending
        if stage is None or stage is ABORT or stage is NEGOTIATE:
            raise StateError("progress() is only possible while a reply is owed to the MTA")
        if stage.name in self._silent:
            raise StateError(f"progress() at {stage.name}: the MTA expects no reply there")
        self._write(PROGRESS_PACKET)

    # ------------------------------------------------------------------ modifications

    def _modify(self, action: str, flag: ActionFlag) -> None:
        if self._pending is not END_OF_MESSAGE:
            raise ActionError(
                f"{action} can only be done at end-of-message, not in state {self.state.nick!r}"
            )
        option = self.negotiation.option if self.negotiation else None
        if option is None or not option.actions & flag:
            have = option.actions if option else ActionFlag.NONE
            raise ActionError(
                f"{action} needs the {flag.name} action, which was not negotiated "
                f"(negotiated: {have!r})"
            )

    def add_header(self, name: str, value: str) -> None:
        """Append a header (``h``)."""
        _check_header(name, value)
        self._modify("add_header", ActionFlag.ADD_HEADERS)
        self._modifications.append(AddHeader(name, value))

    def insert_header(self, index: int, name: str, value: str) -> None:
        """Insert a header at ``index`` (0 = topmost) (``i``)."""
        _check_header(name, value)
        _check_index(index, 0)
        self._modify("insert_header", ActionFlag.ADD_HEADERS)
        self._modifications.append(InsertHeader(index, name, value))

    def change_header(self, name: str, index: int, value: str | None) -> None:
        """Change the ``index``-th (1-based) header called ``name``; None or "" deletes it."""
        _check_header(name, value or "")
        _check_index(index, 1)
        self._modify("change_header", ActionFlag.CHANGE_HEADERS)
        self._modifications.append(ChangeHeader(index, name, value or ""))

    def delete_header(self, name: str, index: int = 1) -> None:
        """Delete the ``index``-th (1-based) header called ``name``."""
        # Not via change_header: an error must name the call the milter made.
        _check_header(name, "")
        _check_index(index, 1)
        self._modify("delete_header", ActionFlag.CHANGE_HEADERS)
        self._modifications.append(ChangeHeader(index, name, ""))

    def change_from(self, sender: str, parameters: str | Iterable[str] | None = None) -> None:
        """Replace the envelope sender, optionally with ESMTP parameters (``e``)."""
        _check_address("change_from", sender)
        params = _join_parameters(parameters)
        self._modify("change_from", ActionFlag.CHANGE_FROM)
        self._modifications.append(ChangeFrom(sender, params))

    def add_recipient(self, recipient: str, parameters: str | Iterable[str] | None = None) -> None:
        """Add an envelope recipient (``+``), or with ESMTP parameters (``2``)."""
        _check_address("add_recipient", recipient)
        params = _join_parameters(parameters)
        if params:
            self._modify("add_recipient with parameters", ActionFlag.ADD_RECIPIENT_WITH_PARAMETERS)
            self._modifications.append(AddRecipientWithParameters(recipient, params))
        else:
            self._modify("add_recipient", ActionFlag.ADD_RECIPIENT)
            self._modifications.append(AddRecipient(recipient))

    def delete_recipient(self, recipient: str) -> None:
        """Remove an envelope recipient, spelled as the MTA sent it (``-``)."""
        _check_address("delete_recipient", recipient)
        self._modify("delete_recipient", ActionFlag.DELETE_RECIPIENT)
        self._modifications.append(DeleteRecipient(recipient))

    def replace_body(self, body: bytes) -> None:
        """Replace the body (``b``, split into 65535-byte packets; sent after other changes).

        Successive calls append, as libmilter's ``smfi_replacebody`` does; an empty body sends
        one empty ``b`` packet, which truncates the body.
        """
        if not isinstance(body, (bytes, bytearray, memoryview)):
            raise TypeError(f"replace_body takes bytes, not {type(body).__name__}")
        self._modify("replace_body", ActionFlag.CHANGE_BODY)
        data = bytes(body)
        if not data:
            self._body_chunks.append(ReplaceBody(b""))
            return
        for start in range(0, len(data), CHUNK_SIZE):
            self._body_chunks.append(ReplaceBody(data[start : start + CHUNK_SIZE]))

    def quarantine(self, reason: str) -> None:
        """Put the message on hold with ``reason`` (``q``, sent just before the verdict)."""
        if not reason or any(c in reason for c in "\0\r\n"):
            raise ValueError(f"quarantine reason must be one non-empty line, not {reason!r}")
        self._modify("quarantine", ActionFlag.QUARANTINE)
        self.quarantine_reason = reason


def _parse_reply(reply: str) -> str:
    """Validate a whole reply given as one string: ``"451 4.3.0 text"``."""
    code, _, rest = reply.partition(" ")
    first, _, text = rest.partition(" ")
    if first and first[0].isdigit() and "." in first:
        return format_reply(code, first, text or None)
    return format_reply(code, None, rest or None)


def _coerce(context: ClientContext, stage: Stage, result: Any) -> Status:
    if isinstance(result, int) and not isinstance(result, bool):
        try:
            return Status(result)
        except ValueError:
            pass
        raise StatusError(
            f"a handler of {stage.name!r} returned {result!r}; return a milterkit.Status or None"
        )
    # A Reply or a modification (milterkit.responses); None from it means "no opinion".
    return to_status(context, stage.name, result) or S.NOT_CHANGE


def _check_header(name: str, value: str) -> None:
    if not isinstance(name, str) or not isinstance(value, str):
        raise TypeError("header name and value must be str")
    if not name:
        raise ValueError("header name must not be empty")
    for char in name:
        if char == ":" or ord(char) <= 32 or ord(char) == 127:
            raise ValueError(f"header name {name!r} contains {char!r}")
    if "\0" in value or "\r" in value:
        raise ValueError(
            f"header value {value!r} contains NUL or CR; fold lines with '\\n' + whitespace"
        )


def _check_index(index: int, lowest: int) -> None:
    if not isinstance(index, int) or not lowest <= index <= 0xFFFFFFFF:
        raise ValueError(f"header index must be an int from {lowest} to 2**32-1, not {index!r}")


def _check_address(action: str, address: str) -> None:
    if not isinstance(address, str) or not address:
        raise ValueError(f"{action} needs a non-empty address")
    if any(c in address for c in "\0\r\n"):
        raise ValueError(f"{action}: address {address!r} contains NUL, CR or LF")


def _join_parameters(parameters: str | Iterable[str] | None) -> str | None:
    if parameters is None:
        return None
    text = parameters if isinstance(parameters, str) else " ".join(parameters)
    if any(c in text for c in "\0\r\n"):
        raise ValueError(f"ESMTP parameters {text!r} contain NUL, CR or LF")
    return text or None


# Command byte -> handler; decode_command has already refused any other byte.
_HANDLERS: dict[bytes, Callable[[ClientContext, Any], None]] = {
    b"O": ClientContext._on_negotiate,
    b"D": ClientContext._on_macro,
    b"C": ClientContext._on_connect,
    b"H": ClientContext._on_helo,
    b"M": ClientContext._on_mail,
    b"R": ClientContext._on_rcpt,
    b"T": ClientContext._on_data,
    b"L": ClientContext._on_header,
    b"N": ClientContext._on_end_of_header,
    b"B": ClientContext._on_body,
    b"E": ClientContext._on_end_of_message,
    b"A": ClientContext._on_abort,
    b"Q": ClientContext._on_quit,
    b"K": ClientContext._on_quit_nc,
    b"U": ClientContext._on_unknown,
}
