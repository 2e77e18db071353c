"""``ClientContext``: one MTA connection, sans-I/O. Bytes in through :meth:`~ClientContext.feed`,
named signals out, replies through the ``write`` callable.

The milter is the *client* of the MTA (milter-manager's naming), so this is the milter side.
Nothing here imports asyncio or touches a socket: the runtime moves bytes and arms timers, and a
captured byte stream fed in by hand takes exactly the code path of a live connection.

The jobs around it live beside it: the wire facts in :mod:`milterkit.protocol.steps`, the
statuses each stage takes in :mod:`milterkit.stages`, running handlers and combining their
statuses in :mod:`milterkit.emission`, a message's data and actions in
:mod:`milterkit.transaction`, reply packets in :mod:`milterkit.reply`.
"""

from __future__ import annotations

import functools
import itertools
import logging
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from .backlog import DEFAULT_MAX_BACKLOG, Backlog
from .blocking import OffloadHook
from .context_api import ContextAPI
from .emission import AwaitHook, Emitter
from .errors import ActionError, RequirementsNotOffered, UnsupportedOffer
from .errors import MilterError as MilterError  # re-exported for older imports
from .errors import StateError as StateError  # re-exported for older imports
from .errors import StatusError as StatusError  # re-exported for older imports
from .handlers import SIGNAL_ARGUMENTS, ConnectMixin, check_class_handlers
from .macros import MacrosRequests, MacroTable
from .negotiation_cache import cached_default_option, cached_effective_offer, cached_negotiate
from .protocol import commands as cmd
from .protocol.constants import DEFAULT_MAX_PAYLOAD, ActionFlag, MacroStage
from .protocol.constants import ProtocolFlag as P
from .protocol.errors import ProtocolError, UnexpectedCommand
from .protocol.framing import PacketDecoder
from .protocol.negotiation import Negotiation, Option
from .reply import parse_reply
from .result import MessageResult
from .signals import SignalTable
from .stages import (
    ABORT,
    BODY,
    CONNECT,
    DATA,
    END_OF_HEADER,
    END_OF_MESSAGE,
    ENVELOPE_FROM,
    ENVELOPE_RECIPIENT,
    EVENT_STAGES,
    HEADER,
    HELO,
    NEGOTIATE,
    STAGES,
    UNKNOWN,
)
from .stages import SIGNAL_NAMES as SIGNAL_NAMES  # re-exported for older imports
from .status import State, Status
from .transaction import Transaction

if TYPE_CHECKING:
    from .server.client import Client

__all__ = ["ClientContext"]

log = logging.getLogger("milterkit.context")
S = Status
_tags = itertools.count(1)
# Every context of a Client parses the same exception reply: once is enough (issue 15).
_parsed_reply = functools.lru_cache(maxsize=64)(parse_reply)


class ClientContext(ConnectMixin, ContextAPI, Emitter, Backlog):
    """One MTA connection: decodes the MTA's packets, emits signals, writes replies.

    ``write`` receives every reply packet (bytes); nothing else does I/O. ``signals`` is an
    optional parent :class:`~milterkit.signals.SignalTable` (a Client's) whose handlers run before
    the context's own. ``actions`` defaults to every action the MTA offers; ``protocol`` (the
    protocol steps to request) defaults to "skip the events nobody handles, use SKIP if offered".
    ``exception_policy`` is the status a handler's exception turns into (``None`` re-raises it
    from :meth:`feed`); ``exception_reply`` is the SMTP reply sent with a REJECT or
    TEMPORARY_FAILURE policy.
    """

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        check_class_handlers(cls)  # a do_* method that matches no signal is a typo: say so now

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
        max_backlog: tuple[int, int] = DEFAULT_MAX_BACKLOG,
    ) -> None:
        self._write = write
        self.signals = SignalTable(SIGNAL_NAMES, parent=signals, arguments=SIGNAL_ARGUMENTS)
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
        self.exception_reply = _parsed_reply(exception_reply) if exception_reply else None
        #: Inactivity timeout in seconds, for the runtime to arm (libmilter's default, 7210 s).
        self.timeout = timeout
        #: A number that names this connection in every log line.
        self.tag = tag if tag is not None else next(_tags)
        #: Set by the runtime so coroutine handlers can be awaited.
        self.await_hook: AwaitHook | None = None
        #: Set by the runtime to run blocking handlers in threads (see milterkit.blocking).
        self.offload_hook: OffloadHook | None = None
        self.offload_all = False  # every plain def handler, not only the marked ones
        #: The :class:`~milterkit.Client` that made this context; None when fed by hand.
        self.client: Client | None = None
        #: The peer's socket address as the runtime saw it (not the SMTP client's).
        self.peer: object | None = None
        #: Free per-connection storage for handlers; cleared only when a new SMTP client
        #: starts on the connection (QUIT_NC). :attr:`private` is one more slot of it.
        self.connection_data: dict[str, Any] = {}
        #: Words a layer above the context adds to the runtime's one-line session summary
        #: (the composer's per-filter verdicts); the runtime logs them when the session ends.
        self.summary_parts: list[str] = []
        self._private: Any = None

        self.state = State.START
        #: The last command state (milter-manager's ``last_state``): never a ``*_REPLIED`` one.
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
        self.messages = 0

        self._decoder = PacketDecoder(max_payload)
        self._backlog: deque[tuple[bytes, bytes]] = deque()
        self._init_backlog(max_backlog)
        self._running = False
        self._finished = False
        self._connected = False
        self._option_override: Option | None = None
        # The message being filtered (open after MAIL); a fresh one waits for the next MAIL.
        self._transaction = Transaction(self._gate)
        self._transaction_open = False
        self._last_result: MessageResult | None = None
        self._init_emitter()

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
    def in_message_processing(self) -> bool:
        """True from MAIL up to (not including) end-of-message, as milter-manager defines it."""
        return State.ENVELOPE_FROM <= self.state < State.END_OF_MESSAGE

    def feed(self, data: bytes) -> None:
        """Decode ``data`` and dispatch every complete command, in order.

        Raises :class:`~milterkit.RemoteProtocolError` when the MTA broke the protocol, and
        :class:`~milterkit.errors.RequirementsNotOffered` when our own requirements are more than
        the MTA offers; the context has then emitted ``error``, ``abort`` (if a message was
        open) and ``finished``.
        """
        if self._finished:
            if data:
                raise UnexpectedCommand(f"{len(data)} bytes arrived after the session finished")
            return
        packets = self._decoder.decode(data)
        if packets:
            self._backlog.extend(packets)
            self._run()
            if self._backlog:
                self._check_backlog()
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
        except (ProtocolError, RequirementsNotOffered) as exc:
            self._running = False
            self._fail(exc)
            raise
        finally:
            self._running = False
            if self.drain_hook is not None:
                self.drain_hook()

    def _process(self, command: bytes, payload: bytes) -> None:
        decoded = cmd.decode_command(command, payload)
        if self.offer is None and command not in b"OD":
            raise UnexpectedCommand(
                f"{type(decoded).__name__} command arrived before option negotiation", command
            )
        if command != b"D":
            self.macros.clear_after(command)
        _HANDLERS[type(decoded)](self, decoded)

    def _fail(self, exc: Exception) -> None:
        if self._finished:
            return
        log.error("[%s] %s: %s", self.tag, _fault(exc), exc)
        self._notify("error", exc)
        self._abort_open_message()
        self._finish()

    def _finish(self) -> None:
        if self._finished:
            return
        self._finished = True
        self._end_session()
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
        option = self._default_option(cached_effective_offer(command))
        self._option_override = option
        self._dispatch(NEGOTIATE, (option, self.macros_requests))

    def _default_option(self, offered: Option) -> Option:
        """What we ask for unless a negotiate handler says otherwise (libmilter's ALL_OPTS)."""
        # Which events we handle: the no-event steps of the others (unless steps are given).
        handled = ([True] * len(EVENT_STAGES) if self.requested_protocol is not None
                   else [self.handles(stage.name) for stage in EVENT_STAGES])
        return cached_default_option(offered, self.requested_actions, self.requested_protocol,
                                     handled)

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
        self.hostname = command.hostname
        self.address = command.address
        self._dispatch(CONNECT, (command.hostname, command.address))

    def _on_helo(self, command: cmd.Helo) -> None:
        self._abort_open_message()
        self.helo_name = command.name
        self._dispatch(HELO, (command.name,))

    def _on_mail(self, command: cmd.Mail) -> None:
        # Sendmail sends no ABORT after an early verdict: a new MAIL ends the old message.
        self._abort_open_message()
        transaction = self._begin_message()
        transaction.result.envelope_from = command.sender
        transaction.envelope_parameters = command.parameters
        self._dispatch(ENVELOPE_FROM, (command.sender,))

    def _on_rcpt(self, command: cmd.Rcpt) -> None:
        transaction = self._begin_message()
        transaction.result.recipients.append(command.recipient)
        transaction.envelope_parameters = command.parameters
        self._dispatch(ENVELOPE_RECIPIENT, (command.recipient,))

    def _on_data(self, command: cmd.Data) -> None:
        self._begin_message()
        self._dispatch(DATA, ())

    def _on_header(self, command: cmd.Header) -> None:
        self._begin_message().result.header_count += 1
        self._dispatch(HEADER, (command.name, command.value))

    def _on_end_of_header(self, command: cmd.EndOfHeader) -> None:
        self._begin_message()
        self._dispatch(END_OF_HEADER, ())

    def _on_body(self, command: cmd.Body) -> None:
        self._begin_message().result.body_size += len(command.chunk)
        self._dispatch(BODY, (command.chunk,))

    def _on_end_of_message(self, command: cmd.EndOfMessage) -> None:
        self._begin_message().result.body_size += len(command.chunk)
        self._dispatch(END_OF_MESSAGE, (command.chunk,))

    def _on_abort(self, command: cmd.Abort) -> None:
        # Postfix sends ABORT after every message, answered or not, and after a HELO with no
        # message: only a message that is open and undecided hears ``abort``.
        self._abort_open_message()
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
        self._private = None
        self._notify("reset")
        self._set_state(State.NEGOTIATE_REPLIED)

    def _on_unknown(self, command: cmd.Unknown) -> None:
        self._dispatch(UNKNOWN, (command.line,))

    # ------------------------------------------------------------------ transactions

    def _begin_message(self) -> Transaction:
        self._transaction_open = True
        return self._transaction

    def _abort_open_message(self) -> None:
        """Emit ``abort`` for a message that is open and has no verdict, then drop it."""
        if not self._transaction_open:
            return
        if not self._transaction.verdict_given:
            self._emit_abort(self.state)
        self.reset_message_related_data()

    def reset_message_related_data(self) -> None:
        """Forget the current message whole (milter-manager's name): its record, shelf,
        envelope parameters and pending modifications. No ``abort`` is emitted.

        The context calls it when a message ends; a handler rarely needs to.
        """
        self._transaction_open = False
        self._transaction = Transaction(self._gate)
        self._reply = None

    def _gate(self, action: str, flag: ActionFlag) -> None:
        if self._pending is not END_OF_MESSAGE:
            raise ActionError(
                f"{action} can only be done at end-of-message, not in state {self.state.nick!r}"
            )
        option = self.option
        if option is None or not option.actions & flag:
            have = option.actions if option else ActionFlag.NONE
            raise ActionError(
                f"{action} needs the {flag.name} action, which was not negotiated "
                f"(negotiated: {have!r})"
            )

    # ------------------------------------------------------------------ negotiation reply

    def _respond_negotiate(self, status: Status, option: Option | None) -> None:
        assert self.offer is not None
        self._set_state(State.NEGOTIATE_REPLIED)
        if status in (S.REJECT, S.TEMPORARY_FAILURE, S.PROGRESS, S.DISCARD, S.ACCEPT):
            log.info("[%s] negotiate answered %s: closing without a reply", self.tag, status.name)
            self.status = status
            self._finish()
            return
        if status is S.ALL_OPTIONS or option is None:
            option = self._default_option(cached_effective_offer(self.offer))
        try:
            # Cached per (offer, option, macro lists): the same on every connection (issue 15).
            negotiation = cached_negotiate(self.offer, option, self.macros_requests)
        except (UnsupportedOffer, RequirementsNotOffered) as exc:
            self._fail(exc)
            raise
        self.negotiation = negotiation
        self._set_no_reply(negotiation)
        self.status = S.CONTINUE
        self._write(negotiation.reply.to_bytes())

def _fault(exc: Exception) -> str:
    if isinstance(exc, ProtocolError):
        return "protocol error"  # the MTA's
    return "negotiation failed (our own requirements)"


#: The states of the stages: ``last_state`` follows only these (milter-manager's rule).
_COMMAND_STATES = frozenset(stage.state for stage in STAGES.values() if stage is not ABORT)

# Command class -> handler; decode_command has already refused any other byte.
_HANDLERS: dict[type, Callable[[ClientContext, Any], None]] = {
    cmd.Negotiate: ClientContext._on_negotiate,
    cmd.DefineMacro: ClientContext._on_macro,
    cmd.Connect: ClientContext._on_connect,
    cmd.Helo: ClientContext._on_helo,
    cmd.Mail: ClientContext._on_mail,
    cmd.Rcpt: ClientContext._on_rcpt,
    cmd.Data: ClientContext._on_data,
    cmd.Header: ClientContext._on_header,
    cmd.EndOfHeader: ClientContext._on_end_of_header,
    cmd.Body: ClientContext._on_body,
    cmd.EndOfMessage: ClientContext._on_end_of_message,
    cmd.Abort: ClientContext._on_abort,
    cmd.Quit: ClientContext._on_quit,
    cmd.QuitNewConnection: ClientContext._on_quit_nc,
    cmd.Unknown: ClientContext._on_unknown,
}
