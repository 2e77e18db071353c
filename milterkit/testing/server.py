"""``ServerContext``: the MTA's half of the milter protocol, sans-I/O.

It writes the MTA's commands through a ``write`` callable and takes the milter's reply bytes
through :meth:`ServerContext.receive`, exactly as :class:`~milterkit.ClientContext` does the other
way round. It negotiates, sends CONNECT and HELO, then every queued message, honouring what was
negotiated (NO_* steps are not sent, NR_* steps are not waited for, no ``U`` below version 3, no
``T`` below 4), and checks every reply as strictly as the stricter of Postfix and Sendmail would:
a reply that is not expected, not negotiated or malformed raises
:class:`MilterProtocolViolation`.

The session is a generator (:meth:`ServerContext._script`) that yields whenever it waits for a
reply; :meth:`receive` resumes it with each final reply. Non-final replies (``p``, ``q`` and the
end-of-message modifications) are collected on the way.
"""

from __future__ import annotations

import itertools
import time
from collections import deque
from collections.abc import Callable, Generator, Mapping, Sequence
from dataclasses import dataclass, field

from ..macros import normalize_name
from ..protocol import commands as cmd
from ..protocol.constants import DEFAULT_MAX_PAYLOAD, ActionFlag, MacroStage
from ..protocol.constants import ProtocolFlag as P
from ..protocol.errors import ProtocolError
from ..protocol.framing import PacketDecoder
from ..protocol.replies import (
    FINAL_REPLIES,
    AddHeader,
    AddRecipient,
    AddRecipientWithParameters,
    AnyReply,
    ChangeFrom,
    ChangeHeader,
    DeleteRecipient,
    InsertHeader,
    NegotiateReply,
    Progress,
    Quarantine,
    ReplaceBody,
    ReplyText,
    Shutdown,
    Skip,
    decode_reply,
)
from ..status import Status
from .message import Message, Recipient, strip_one_space
from .profile import POSTFIX, Profile, get_profile, offered_protocol
from .results import Exchange, MessageOutcome, RejectedRecipient, SessionResult, status_of

S = Status


class MilterProtocolViolation(ProtocolError):
    """The milter sent something the MTA would refuse (the MTA side's view of a slip)."""


class ReplyTimeout(ProtocolError):
    """The milter did not answer in time."""


@dataclass(frozen=True, slots=True)
class Step:
    """One MTA command kind: its stage name, NO_* and NR_* flags and where its macros come from."""

    name: str
    code: bytes
    no_event: P
    no_reply: P
    #: The command byte whose macro list is sent before it (headers use EOH's, chunks EOM's).
    macro_list: str
    #: Whether the MTA sends the ``D`` even when the milter opted out of the event.
    smtp_level: bool
    min_version: int = 2


CONNECT = Step("connect", b"C", P.NO_CONNECT, P.NO_REPLY_CONNECT, "C", True)
HELO = Step("helo", b"H", P.NO_HELO, P.NO_REPLY_HELO, "H", True)
MAIL = Step("envelope-from", b"M", P.NO_ENVELOPE_FROM, P.NO_REPLY_ENVELOPE_FROM, "M", True)
RCPT = Step(
    "envelope-recipient", b"R", P.NO_ENVELOPE_RECIPIENT, P.NO_REPLY_ENVELOPE_RECIPIENT, "R", True
)
UNKNOWN = Step("unknown", b"U", P.NO_UNKNOWN, P.NO_REPLY_UNKNOWN, "U", True, 3)
DATA = Step("data", b"T", P.NO_DATA, P.NO_REPLY_DATA, "T", True, 4)
HEADER = Step("header", b"L", P.NO_HEADERS, P.NO_REPLY_HEADER, "N", False)
END_OF_HEADER = Step(
    "end-of-header", b"N", P.NO_END_OF_HEADER, P.NO_REPLY_END_OF_HEADER, "N", False
)
BODY = Step("body", b"B", P.NO_BODY, P.NO_REPLY_BODY, "E", False)
END_OF_MESSAGE = Step("end-of-message", b"E", P.NONE, P.NONE, "E", False)

_MACRO_STAGE_OF_LIST = {
    "C": MacroStage.CONNECT, "H": MacroStage.HELO, "M": MacroStage.ENVELOPE_FROM,
    "R": MacroStage.ENVELOPE_RECIPIENT, "T": MacroStage.DATA, "N": MacroStage.END_OF_HEADER,
    "E": MacroStage.END_OF_MESSAGE,
}
#: Which action each modification needs.
_ACTION_OF: dict[type, ActionFlag] = {
    AddHeader: ActionFlag.ADD_HEADERS,
    InsertHeader: ActionFlag.ADD_HEADERS,
    ChangeHeader: ActionFlag.CHANGE_HEADERS,
    ReplaceBody: ActionFlag.CHANGE_BODY,
    AddRecipient: ActionFlag.ADD_RECIPIENT,
    AddRecipientWithParameters: ActionFlag.ADD_RECIPIENT_WITH_PARAMETERS,
    DeleteRecipient: ActionFlag.DELETE_RECIPIENT,
    ChangeFrom: ActionFlag.CHANGE_FROM,
    Quarantine: ActionFlag.QUARANTINE,
}
_DECISIVE = frozenset({S.REJECT, S.TEMPORARY_FAILURE, S.ACCEPT, S.DISCARD})
_IDLE = "idle"  # the script waits for a message to be queued or for close()


@dataclass(frozen=True, slots=True)
class Connection:
    """The SMTP client the MTA reports in CONNECT and HELO (milter-test-server's defaults)."""

    hostname: str = "mx.example.net"
    address: cmd.SocketAddress = field(
        default_factory=lambda: cmd.SocketAddress("4", "192.168.123.123", 50443)
    )
    #: The HELO argument; None sends no HELO (a client that went straight to MAIL).
    helo: str | None = "delian"


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


class ServerContext:
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
        connection: Connection | None = None,
        macros: Mapping[str, Mapping[str, str]] | None = None,
        timeouts: Timeouts | None = None,
        max_payload: int = DEFAULT_MAX_PAYLOAD,
        hostname: str = "mail.example.com",
    ) -> None:
        self._write = write
        self.profile = get_profile(profile)
        steps = offered_protocol(version) if protocol is None else protocol
        self.offer = cmd.Negotiate(version, ActionFlag(actions), steps)
        self.connection = connection or Connection()
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
        self._script_gen: Generator[str, AnyReply | None, None] | None = None
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

    @property
    def leading_space(self) -> bool:
        """Whether HEADER_LEADING_SPACE was negotiated."""
        return bool(self.steps & P.HEADER_LEADING_SPACE)

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

    def _violation(self, message: str, reply: AnyReply) -> MilterProtocolViolation:
        return MilterProtocolViolation(
            f"milter sent {type(reply).__name__} ({reply.code!r}) {message}", reply.code
        )

    def _on_reply(self, reply: AnyReply) -> None:
        stage = self._awaiting
        if stage is None:
            raise self._violation("while no reply was expected", reply)
        if self._exchange is not None:
            self._exchange.replies.append(reply)
        eom = stage == "end-of-message"
        if stage == "negotiate":
            if not isinstance(reply, NegotiateReply):
                raise self._violation("in answer to the option negotiation", reply)
            self._resume(reply)
            return
        if isinstance(reply, Progress):
            if not (eom or self.profile.progress_anywhere):
                raise self._violation(f"at {stage}; {self.profile.name} takes it only at "
                                      "end-of-message", reply)
            if self._outcome is not None:
                self._outcome.progress += 1
            return
        if isinstance(reply, Quarantine):
            if not (eom or self.profile.quarantine_anywhere):
                raise self._violation(f"at {stage}; {self.profile.name} takes it only at "
                                      "end-of-message", reply)
            self._need_action(reply)
            if self._outcome is not None:
                self._outcome.quarantine_reason = reply.reason
            return
        if type(reply) in _ACTION_OF:
            if not eom:
                raise self._violation(f"at {stage}; modifications belong to end-of-message", reply)
            self._need_action(reply)
            if isinstance(reply, ReplaceBody):
                if self._after_body:
                    raise self._violation("after another change that followed a body "
                                          "replacement (Postfix takes the body as complete)", reply)
                self._body_replaced = True
            elif self._body_replaced:
                self._after_body = True
            assert self._outcome is not None
            self._outcome.modifications.append(reply)
            return
        if not isinstance(reply, FINAL_REPLIES):
            raise self._violation(f"at {stage}; no MTA takes it", reply)
        if isinstance(reply, Skip):
            if stage != "body":
                raise self._violation(f"at {stage}; SKIP is portable only for body chunks", reply)
            # Negotiated means offered and requested (Postfix tolerates unoffered steps).
            if not self.steps & self.offer.protocol & P.SKIP:
                raise self._violation("but the SKIP step was not negotiated", reply)
        if isinstance(reply, Shutdown) and not self.profile.takes_shutdown:
            raise self._violation(f"at {stage}; {self.profile.name} takes no shutdown", reply)
        if isinstance(reply, ReplyText):
            check_reply_text(reply)
        if stage in ("connect", "helo") and status_of(reply) is S.DISCARD:
            raise self._violation(f"at {stage}; DISCARD needs a message", reply)
        self._resume(reply)

    def _need_action(self, reply: AnyReply) -> None:
        flag = _ACTION_OF[type(reply)]
        if not self.actions & flag:
            raise self._violation(f"but the {flag.name} action was not negotiated", reply)

    def _resume(self, value: AnyReply | None) -> None:
        assert self._script_gen is not None
        self._awaiting = None
        self._idle = False
        try:
            wait = self._script_gen.send(value)
        except StopIteration:
            self._finish()
            return
        if wait == _IDLE:
            self._idle = True
        else:
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

    def _script(self) -> Generator[str, AnyReply | None, None]:
        self._send(self.offer)
        reply = yield "negotiate"
        assert isinstance(reply, NegotiateReply)
        self._check_negotiation(reply)
        verdict = yield from self._connection()
        while not self._hangup:
            while not self._queue and not self._closing:
                yield _IDLE
            if not self._queue:
                break
            queued = self._queue.popleft()
            if verdict is not None:
                self._outcome_without_milter(queued, verdict)
                continue
            shutdown = yield from self._transaction(queued)
            if shutdown:
                return  # Postfix answers 421 and drops the milter: no QUIT
        if verdict is None or self.profile.quit_after_connection_verdict:
            self._send(cmd.Quit())
            self.result.quit_sent = True

    def _check_negotiation(self, reply: NegotiateReply) -> None:
        self.result.negotiation = reply
        offer = self.offer
        if reply.version > offer.version or reply.version < 2:
            raise self._violation(
                f"with version {reply.version}; the MTA offered {offer.version}", reply
            )
        extra_actions = reply.actions & ~offer.actions
        if extra_actions:
            raise self._violation(f"asking for actions {extra_actions!r} that were not offered",
                                  reply)
        extra_steps = reply.protocol & ~offer.protocol & ~P.INTERNAL
        if extra_steps and self.profile.refuse_extra_steps:
            raise self._violation(f"asking for steps {extra_steps!r} that were not offered",
                                  reply)
        self.version = 4 if reply.version == 5 else reply.version
        self.actions = reply.actions
        self.steps = reply.protocol
        for letter, stage in _MACRO_STAGE_OF_LIST.items():
            names = reply.macros.get(stage)
            if names and names.strip():
                self.macro_lists[letter] = tuple(names.split())

    def _connection(self) -> Generator[str, AnyReply | None, Status | None]:
        conn = self.connection
        address = conn.address
        if address.family == "6" and address.address is not None:
            address = cmd.SocketAddress(
                "6", address.address, address.port, self.profile.ipv6_prefix + address.address
            )
        status = yield from self._event(CONNECT, cmd.Connect(conn.hostname, address))
        self.result.connect_status = status
        if status in _DECISIVE or self._shutdown:
            return self._connection_verdict(status, "connect")
        if conn.helo is not None:
            status = yield from self._event(HELO, cmd.Helo(conn.helo))
            self.result.helo_status = status
            if status in _DECISIVE or self._shutdown:
                return self._connection_verdict(status, "helo")
        return None

    def _connection_verdict(self, status: Status, stage: str) -> Status:
        self.result.connection_verdict = status
        self.result.connection_reply = self._last_reply
        self._verdict_stage = stage
        return status

    def _outcome_without_milter(self, queued: Submission, verdict: Status) -> None:
        """A message on a connection the milter already judged: it never sees the message."""
        message = queued.message
        outcome = MessageOutcome(
            original=message, message=message.copy(), status=verdict,
            stage=self._verdict_stage, reply=self.result.connection_reply,
        )
        self.result.messages.append(outcome)

    def _event(
        self, step: Step, command: cmd.AnyCommand, extra: Mapping[str, Mapping[str, str]] = {}
    ) -> Generator[str, AnyReply | None, Status]:
        """Send one command with its macros as the profile does; return the milter's status
        (CONTINUE when the command was not sent or not answered)."""
        self._last_reply = None
        if self.version < step.min_version:
            return S.CONTINUE  # the milter's version lacks this event: not even macros
        opted_out = bool(self.steps & step.no_event)
        if not opted_out or step.smtp_level:
            self._send_macros(step, extra)
        if opted_out:
            return S.CONTINUE
        self._send(command)
        if self.steps & step.no_reply:
            return S.CONTINUE
        reply = yield step.name
        assert reply is not None
        if isinstance(reply, Shutdown):
            self._shutdown = True
            if self._outcome is not None:
                self._outcome.shutdown = True
        if isinstance(reply, ReplyText):
            self._last_reply = reply.text
            # protocol.md 1.8: both MTAs close the SMTP session on a 421, so no later message
            # reaches the milter (the connection then ends as after the last message).
            self._hangup = self._hangup or reply.text.startswith("421")
        return status_of(reply)

    def _send_macros(self, step: Step, extra: Mapping[str, Mapping[str, str]]) -> None:
        profile = self.profile
        if not profile.macros_before_every_event and step.code in (b"L", b"B"):
            return
        values = self._macro_values(step.macro_list, extra)
        if values or profile.macros_before_every_event:
            self._send(cmd.DefineMacro(step.code, values))

    def _macro_values(
        self, letter: str, extra: Mapping[str, Mapping[str, str]]
    ) -> dict[str, str]:
        names = self.macro_lists.get(letter) or self.profile.macro_names.get(letter, ())
        user = {**self.macros.get(letter, {}), **extra.get(letter, {})}
        user_bare = {normalize_name(k): v for k, v in user.items()}
        known = self._known_macros()
        values: dict[str, str] = {}
        for name in names:
            bare = normalize_name(name)
            value = user_bare.get(bare, known.get(bare))
            if value is not None:
                values[name] = value
        for name, value in user.items():
            if normalize_name(name) not in {normalize_name(n) for n in values}:
                values[name] = value
        return values

    def _known_macros(self) -> dict[str, str]:
        """Every macro value the simulated MTA knows at this point of the session."""
        conn = self.connection
        known = {
            "j": self.hostname,
            "daemon_name": self.hostname,
            "daemon_addr": "127.0.0.1",
            "if_name": "localhost",
            "if_addr": "127.0.0.1",
            "v": f"{self.profile.name.capitalize()} (milterkit test-server)",
            "_": f"{conn.hostname} [{conn.address.address or 'unknown'}]",
        }
        outcome = self._outcome
        if outcome is not None:
            sender = outcome.original.sender.strip("<>")
            known.update(mail_addr=sender, mail_host=sender.partition("@")[2] or "localhost",
                         mail_mailer="smtp" if "@" in sender else "local")
        if self._queue_id is not None:
            known["i"] = self._queue_id
            known["msg_id"] = f"<{self._queue_id}@{self.hostname}>"
        if self._recipient is not None:
            rcpt = self._recipient.address.strip("<>")
            known.update(rcpt_addr=rcpt, rcpt_host=rcpt.partition("@")[2] or "localhost",
                         rcpt_mailer="smtp" if "@" in rcpt else "local")
        return known

    def _transaction(self, queued: Submission) -> Generator[str, AnyReply | None, bool]:
        """One message; returns True if the milter shut the session down."""
        message = queued.message
        outcome = MessageOutcome(original=message, message=message.copy())
        self._outcome = outcome
        self._messages += 1
        started = time.perf_counter()
        self._queue_id = None
        self._recipient = None
        self._body_replaced = self._after_body = False
        # Postfix picks the queue id after the first accepted RCPT; Sendmail has one at MAIL.
        queue_id = f"{self.serial:04X}{self._messages:06X}MK"
        if self.profile.queue_id_at_mail:
            self._queue_id = queue_id
        ended = yield from self._envelope(queued, outcome, queue_id)
        if not ended:
            ended = yield from self._content(queued, outcome)
        outcome.elapsed = time.perf_counter() - started
        outcome.message = self._delivered(outcome)
        self.result.messages.append(outcome)
        self._outcome = None
        if self._shutdown:
            return True
        if self.profile.abort_after_message or ended == "no-verdict":
            self._send(cmd.Abort())
        return False

    def _envelope(
        self, queued: Submission, outcome: MessageOutcome, queue_id: str
    ) -> Generator[str, AnyReply | None, str | None]:
        message, extra = queued.message, queued.macros
        status = yield from self._event(
            MAIL, cmd.Mail(message.sender, message.sender_parameters), extra
        )
        if self._early(outcome, status, "envelope-from"):
            return "verdict"
        accepted: list[Recipient] = []
        for index, recipient in enumerate(message.recipients):
            self._recipient = recipient
            status = yield from self._event(
                RCPT, cmd.Rcpt(recipient.address, recipient.parameters), extra
            )
            if self._shutdown:
                return self._ended(outcome, status, "envelope-recipient")
            if status in (S.REJECT, S.TEMPORARY_FAILURE):
                outcome.rejected_recipients.append(
                    RejectedRecipient(recipient, status, self._last_reply)
                )
                continue
            if self._early(outcome, status, "envelope-recipient"):
                # Recipients refused earlier stay refused; after ACCEPT the rest go unfiltered.
                outcome.message.recipients = accepted + list(message.recipients[index:])
                return "verdict"
            accepted.append(recipient)
            if self._queue_id is None:
                self._queue_id = queue_id
        self._recipient = None
        outcome.message.recipients = accepted
        if not accepted:
            last = outcome.rejected_recipients[-1] if outcome.rejected_recipients else None
            outcome.status = last.status if last else S.REJECT
            outcome.reply = last.reply if last else None
            outcome.stage = "envelope-recipient"
            return "no-verdict"
        if queued.unknown is not None:
            status = yield from self._event(UNKNOWN, cmd.Unknown(queued.unknown), extra)
            outcome.unknown_status = status
        status = yield from self._event(DATA, cmd.Data(), extra)
        if self._early(outcome, status, "data"):
            return "verdict"
        return None

    def _content(
        self, queued: Submission, outcome: MessageOutcome
    ) -> Generator[str, AnyReply | None, str]:
        message, extra = queued.message, queued.macros
        for name, raw in message.headers:
            value = raw if self.leading_space else strip_one_space(raw)
            status = yield from self._event(HEADER, cmd.Header(name, value), extra)
            if self._early(outcome, status, "header"):
                return "verdict"
        status = yield from self._event(END_OF_HEADER, cmd.EndOfHeader(), extra)
        if self._early(outcome, status, "end-of-header"):
            return "verdict"
        for chunk in self._chunks(queued):
            status = yield from self._event(BODY, cmd.Body(chunk), extra)
            if status is S.SKIP:
                outcome.skipped_body = True
                break
            if self._early(outcome, status, "body"):
                return "verdict"
        status = yield from self._event(END_OF_MESSAGE, cmd.EndOfMessage(), extra)
        self._ended(outcome, status, "end-of-message")
        return "verdict"

    def _chunks(self, queued: Submission) -> list[bytes]:
        if queued.chunks is not None:
            return [bytes(c) for c in queued.chunks if c]
        body, size = queued.message.body, self.profile.chunk_size
        return [body[i : i + size] for i in range(0, len(body), size)]

    def _early(self, outcome: MessageOutcome, status: Status, stage: str) -> bool:
        """Record a verdict that ends the message before end-of-message."""
        if status in _DECISIVE or self._shutdown:
            self._ended(outcome, status, stage)
            return True
        return False

    def _ended(self, outcome: MessageOutcome, status: Status, stage: str) -> str:
        outcome.status = status
        outcome.stage = stage
        outcome.reply = self._last_reply
        return "verdict"

    def _delivered(self, outcome: MessageOutcome) -> Message:
        message = outcome.message
        if outcome.stage == "end-of-message":
            return message.apply(
                outcome.modifications,
                leading_space=self.leading_space,
                renumber_deleted=self.profile.renumber_deleted_headers,
            )
        return message


def check_reply_text(reply: ReplyText) -> None:
    """Check a ``y`` text as Postfix does: every line ``[45]dd`` then ``-`` (not last) or space
    (last), an enhanced code of the same class, no bare CR or LF."""
    lines = reply.text.split("\r\n")
    first = lines[0][:3]
    for number, line in enumerate(lines, 1):
        last = number == len(lines)
        code = line[:3]
        if len(code) != 3 or code[0] not in "45" or not code.isdigit() or code != first:
            raise MilterProtocolViolation(
                f"reply text line {number} {line!r} does not start with the reply code "
                f"{first!r} ([45]dd)", b"y"
            )
        separator = line[3:4]
        if separator != (" " if last else "-") and not (last and separator == ""):
            raise MilterProtocolViolation(
                f"reply text line {number} {line!r}: the code must be followed by "
                f"{'a space' if last else '-'}", b"y"
            )
        if "\r" in line or "\n" in line:
            raise MilterProtocolViolation(f"reply text line {number} holds a bare CR or LF", b"y")
        xcode = line[4:].split(" ", 1)[0]
        if xcode[:1].isdigit() and "." in xcode and xcode[0] != code[0]:
            raise MilterProtocolViolation(
                f"reply text {line!r}: enhanced code class {xcode[0]} does not match "
                f"{code}", b"y"
            )
