"""``ServerContext``: the MTA's half of the milter protocol, sans-I/O.

It writes the MTA's commands through a ``write`` callable and takes the milter's reply bytes
through :meth:`ServerContext.receive`, exactly as :class:`~milterkit.ClientContext` does the other
way round. It negotiates, sends CONNECT and HELO, then every queued message, honouring what was
negotiated (NO_* steps are not sent, NR_* steps are not waited for, no ``U`` below version 3, no
``T`` below 4), and checks every reply as strictly as the stricter of Postfix and Sendmail would:
a reply that is not expected, not negotiated or malformed raises
:class:`MilterProtocolViolation`.

The jobs live in their own modules: the session script (:mod:`milterkit.testing.script`, a
generator that yields whenever it waits for a reply; :meth:`receive` resumes it with each final
reply), reply legality (:mod:`milterkit.testing.legality`) and the simulated macros
(:mod:`milterkit.testing.simulated_macros`). This module holds the public object and its queue.
"""

from __future__ import annotations

import itertools
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

from ..protocol import commands as cmd
from ..protocol.constants import DEFAULT_MAX_PAYLOAD, ActionFlag
from ..protocol.constants import ProtocolFlag as P
from ..protocol.errors import ProtocolError
from ..protocol.framing import PacketDecoder
from ..protocol.replies import AnyReply, decode_reply
from .legality import MilterProtocolViolation, ReplyChecks
from .message import Message, Recipient
from .profile import POSTFIX, Profile, get_profile, offered_protocol
from .results import Exchange, MessageOutcome, SessionResult
from .script import Script, SessionScript, Waiting
from .simulated_macros import SimulatedMacros

__all__ = ["Connection", "MilterProtocolViolation", "ReplyTimeout", "SMTPClient", "ServerContext",
           "Submission", "Timeouts"]


class ReplyTimeout(ProtocolError):
    """The milter did not answer in time."""


@dataclass(frozen=True, slots=True)
class SMTPClient:
    """The SMTP client the MTA reports in CONNECT and HELO (milter-test-server's defaults)."""

    hostname: str = "mx.example.net"
    address: cmd.SocketAddress = field(
        default_factory=lambda: cmd.SocketAddress("4", "192.168.123.123", 50443)
    )
    #: The HELO argument; None sends no HELO (a client that went straight to MAIL).
    helo: str | None = "delian"


#: The older name of :class:`SMTPClient` (it was confused with the runtime's ``Connection``).
Connection = SMTPClient


@dataclass(frozen=True, slots=True)
class Timeouts:
    """Seconds the MTA waits; Postfix's defaults (protocol.md 2.4), for the drivers to arm."""

    connect: float = 30.0
    command: float = 30.0
    content: float = 300.0

    def for_stage(self, stage: str) -> float:
        """The wait for a reply at ``stage``: content stages get the content timeout."""
        if stage in ("header", "end-of-header", "body", "end-of-message"):
            return self.content
        return self.command


@dataclass(slots=True)
class Submission:
    """A message plus how the MTA sends it: exact BODY chunks (else cut at the profile's
    chunk size), an UNKNOWN command after the recipients, macros for this message only."""

    message: Message
    chunks: Sequence[bytes] | None = None
    unknown: str | None = None
    macros: Mapping[str, Mapping[str, str]] = field(default_factory=dict)


_sessions = itertools.count(1)


class ServerContext(SessionScript, ReplyChecks, SimulatedMacros):
    """The MTA side of one milter connection.

    ``write`` receives every command packet. ``profile`` is ``"postfix"``, ``"sendmail"`` or a
    :class:`~milterkit.testing.profile.Profile`. ``version``, ``actions`` and ``protocol`` make
    the offer (``protocol`` defaults to what an MTA offers at ``version``). ``macros`` adds or
    overrides macro values per command byte (``{"M": {"{auth_authen}": "alice"}}``); they are
    sent at that stage whatever the milter asked for.

    Call :meth:`start`, queue messages with :meth:`send_message` (before or after starting),
    then :meth:`close`; feed the milter's bytes to :meth:`receive`. :attr:`result` holds what
    came back; :attr:`finished` says when the MTA is done and the connection can close.
    """

    def __init__(
        self,
        write: Callable[[bytes], object],
        *,
        profile: str | Profile = POSTFIX,
        version: int = 6,
        actions: ActionFlag = ActionFlag.ALL,
        protocol: P | None = None,
        connection: SMTPClient | None = None,
        macros: Mapping[str, Mapping[str, str]] | None = None,
        timeouts: Timeouts | None = None,
        max_payload: int = DEFAULT_MAX_PAYLOAD,
        hostname: str = "mail.example.com",
    ) -> None:
        self._write = write
        self.profile = get_profile(profile)
        steps = offered_protocol(version) if protocol is None else protocol
        self.offer = cmd.Negotiate(version, ActionFlag(actions), steps)
        self.connection = connection or SMTPClient()
        self.macros = {stage: dict(values) for stage, values in (macros or {}).items()}
        self.timeouts = timeouts or Timeouts()
        #: The MTA's own name ($myhostname): ``j`` and ``{daemon_name}``.
        self.hostname = hostname
        self.result = SessionResult()
        self.serial = next(_sessions)

        self._decoder = PacketDecoder(max_payload)
        self._queue: deque[Submission] = deque()
        self._closing = False
        self._started = False
        self._finished = False
        self._idle = False
        self._awaiting: str | None = None
        self._script_gen: Script[None] | None = None
        self._outcome: MessageOutcome | None = None
        self._exchange: Exchange | None = None
        self._body_replaced = False
        self._after_body = False
        self._messages = 0
        self._queue_id: str | None = None
        self._recipient: Recipient | None = None
        self._start_time = 0.0
        # What the milter's negotiate reply said.
        self.version = 0
        self.actions = ActionFlag.NONE
        self.steps = P.NONE
        self.macro_lists: dict[str, tuple[str, ...]] = {}
        self._shutdown = False
        #: A ``421`` reply: the MTA ends the SMTP session after this message.
        self._hangup = False
        self._last_reply: str | None = None
        self._verdict_stage = "connect"

    # ------------------------------------------------------------------ public API

    @property
    def finished(self) -> bool:
        """True once the MTA is done (QUIT sent, or the session ended on a verdict or error)."""
        return self._finished

    @property
    def awaiting(self) -> str | None:
        """The stage whose reply is awaited (``"negotiate"``, ``"body"`` …), or None."""
        return self._awaiting

    @property
    def idle(self) -> bool:
        """True when the MTA waits for a message to be queued or for :meth:`close`."""
        return self._idle

    def start(self) -> None:
        """Send the option negotiation; everything else follows the replies."""
        if self._started:
            raise RuntimeError("the session was already started")
        self._started = True
        self._start_time = time.perf_counter()
        self._script_gen = self._script()
        self._resume(None)

    def send_message(
        self,
        message: Message,
        *,
        chunks: Sequence[bytes] | None = None,
        unknown: str | None = None,
        macros: Mapping[str, Mapping[str, str]] | None = None,
    ) -> None:
        """Queue a message for this connection.

        ``chunks`` sends the body in exactly these BODY packets (else it is cut at the
        profile's chunk size); ``unknown`` sends an UNKNOWN command after the recipients;
        ``macros`` add to the connection's macros for this message only.
        """
        self.submit(Submission(message, chunks, unknown, macros or {}))

    def submit(self, submission: Submission) -> None:
        """Queue a :class:`Submission` (what :meth:`send_message` builds)."""
        if self._closing:
            raise RuntimeError("close() was called: no more messages on this connection")
        self._queue.append(submission)
        if self._idle:
            self._resume(None)

    def close(self) -> None:
        """No more messages: send QUIT once the queue is done."""
        self._closing = True
        if self._idle:
            self._resume(None)

    def run(self, messages: Sequence[Message | Submission]) -> None:
        """Start, queue ``messages`` and close: the whole session in one call."""
        for message in messages:
            if isinstance(message, Submission):
                self.submit(message)
            else:
                self.send_message(message)
        self.close()
        self.start()

    def receive(self, data: bytes) -> None:
        """Take reply bytes from the milter; raises :class:`MilterProtocolViolation` (or
        another :class:`~milterkit.protocol.ProtocolError`) when the milter broke the protocol.
        """
        if self._finished:
            if data:
                self._fail(MilterProtocolViolation(
                    f"milter sent {len(data)} bytes after the session ended"
                ))
            return
        for code, payload in self._decoder.decode(data):
            try:
                reply = decode_reply(code, payload)
                self._on_reply(reply)
            except ProtocolError as exc:
                self._fail(exc)
            if self._finished:
                return
        if self._decoder.error is not None:
            error = self._decoder.error
            assert isinstance(error, ProtocolError)
            self._fail(error)

    def connection_lost(self) -> None:
        """The milter closed the connection. An error unless the session was over."""
        if self._finished:
            return
        waiting = f"waiting for the {self._awaiting} reply" if self._awaiting else "idle"
        self._fail(MilterProtocolViolation(f"milter closed the connection ({waiting})"))

    def handle_timeout(self) -> None:
        """The driver's timer for the awaited reply fired: the session fails."""
        if self._finished or self._awaiting is None:
            return
        self._fail(ReplyTimeout(f"no reply to {self._awaiting} in time"))

    # ------------------------------------------------------------------ replies

    def _fail(self, error: ProtocolError) -> None:
        if self.result.error is None:
            self.result.error = error
        self._finish()
        raise error

    def _finish(self) -> None:
        if self._finished:
            return
        self._finished = True
        self._awaiting = None
        self._idle = False
        self.result.elapsed = time.perf_counter() - self._start_time
        if self._script_gen is not None:
            self._script_gen.close()

    def _resume(self, value: AnyReply | None) -> None:
        assert self._script_gen is not None
        self._awaiting = None
        self._idle = False
        try:
            wait = self._script_gen.send(value)
        except StopIteration:
            self._finish()
            return
        if wait is Waiting.IDLE:
            self._idle = True
        else:
            assert isinstance(wait, str)
            self._awaiting = wait

    # ------------------------------------------------------------------ the session

    def _send(self, command: cmd.AnyCommand) -> None:
        exchange = Exchange(command)
        self.result.exchanges.append(exchange)
        if self._outcome is not None:
            self._outcome.exchanges.append(exchange)
        if not isinstance(command, cmd.DefineMacro):
            self._exchange = exchange  # replies belong to the last command, never to a D
        self._write(command.to_bytes())


