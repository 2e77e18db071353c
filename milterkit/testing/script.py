"""The session an MTA runs, as a generator: what :class:`~milterkit.testing.ServerContext` sends.

:class:`SessionScript` is the part of the MTA side that decides the order of commands: negotiate,
CONNECT, HELO, then each queued message as far as the milter's verdicts let it go, then QUIT.
The script yields whenever it waits: the stage name whose reply it needs, or
:attr:`Waiting.IDLE` while there is nothing to send. Which commands are sent, and whether a reply
is awaited, comes from the steps table (:mod:`milterkit.protocol.steps`) and the negotiation.
"""

from __future__ import annotations

import enum
import time
from collections import deque
from collections.abc import Callable, Generator, Mapping
from typing import TYPE_CHECKING, TypeVar

from ..protocol import commands as cmd
from ..protocol.constants import ProtocolFlag as P
from ..protocol.replies import AnyReply, NegotiateReply, ReplyText, Shutdown
from ..protocol.steps import STEP_OF_COMMAND, CommandStep
from ..status import Status
from .message import Message, Recipient, strip_one_space
from .profile import Profile
from .results import MessageOutcome, RejectedRecipient, SessionResult, status_of

if TYPE_CHECKING:
    from .server import SMTPClient, Submission

S = Status
T = TypeVar("T")
_DECISIVE = frozenset({S.REJECT, S.TEMPORARY_FAILURE, S.ACCEPT, S.DISCARD})


class Waiting(enum.Enum):
    """What the script waits for when it waits for no reply."""

    #: A message to be queued, or :meth:`~milterkit.testing.ServerContext.close`.
    IDLE = "idle"


class MessageEnd(enum.Enum):
    """How a message's commands ended before the MTA decides about ABORT."""

    #: The milter gave a verdict (or end-of-message was answered).
    VERDICT = "verdict"
    #: The MTA ended it itself (every recipient refused): it sends ABORT whatever its profile.
    NO_VERDICT = "no-verdict"


#: The script's generator: yields a stage name (a reply is awaited) or Waiting.IDLE, is sent the
#: milter's final reply, returns ``T``.
Script = Generator["str | Waiting", "AnyReply | None", T]


class SessionScript:
    """The MTA's session, command by command (a mixin of ServerContext)."""

    # Provided by ServerContext.
    profile: Profile
    offer: cmd.Negotiate
    connection: SMTPClient
    result: SessionResult
    version: int
    steps: P
    _queue: deque[Submission]
    _closing: bool
    _hangup: bool
    _shutdown: bool
    _last_reply: str | None
    _verdict_stage: str
    _outcome: MessageOutcome | None
    _messages: int
    serial: int
    _queue_id: str | None
    _recipient: Recipient | None
    _body_replaced: bool
    _after_body: bool
    _send: Callable[[cmd.AnyCommand], None]
    _check_negotiation: Callable[[NegotiateReply], None]
    _send_macros: Callable[[CommandStep, Mapping[str, Mapping[str, str]]], None]

    @property
    def leading_space(self) -> bool:
        """Whether HEADER_LEADING_SPACE was negotiated."""
        return bool(self.steps & P.HEADER_LEADING_SPACE)

    def _script(self) -> Script[None]:
        self._send(self.offer)
        reply = yield "negotiate"
        assert isinstance(reply, NegotiateReply)
        self._check_negotiation(reply)
        verdict = yield from self._connection()
        while not self._hangup:
            while not self._queue and not self._closing:
                yield Waiting.IDLE
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

    def _connection(self) -> Script[Status | None]:
        conn = self.connection
        address = conn.address
        if address.family == "6" and address.address is not None:
            address = cmd.SocketAddress(
                "6", address.address, address.port, self.profile.ipv6_prefix + address.address
            )
        status = yield from self._event(cmd.Connect(conn.hostname, address))
        self.result.connect_status = status
        if status in _DECISIVE or self._shutdown:
            return self._connection_verdict(status, "connect")
        if conn.helo is not None:
            status = yield from self._event(cmd.Helo(conn.helo))
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
        self, command: cmd.AnyCommand, extra: Mapping[str, Mapping[str, str]] = {}
    ) -> Script[Status]:
        """Send one command with its macros as the profile does; return the milter's status
        (CONTINUE when the command was not sent or not answered)."""
        step = STEP_OF_COMMAND[type(command)]
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
        assert step.signal is not None
        reply = yield step.signal
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

    def _transaction(self, queued: Submission) -> Script[bool]:
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
        if self.profile.abort_after_message or ended is MessageEnd.NO_VERDICT:
            self._send(cmd.Abort())
        return False

    def _envelope(
        self, queued: Submission, outcome: MessageOutcome, queue_id: str
    ) -> Script[MessageEnd | None]:
        message, extra = queued.message, queued.macros
        status = yield from self._event(cmd.Mail(message.sender, message.sender_parameters), extra
        )
        if self._early(outcome, status, "envelope-from"):
            return MessageEnd.VERDICT
        accepted: list[Recipient] = []
        for index, recipient in enumerate(message.recipients):
            self._recipient = recipient
            status = yield from self._event(cmd.Rcpt(recipient.address, recipient.parameters), extra
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
                return MessageEnd.VERDICT
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
            return MessageEnd.NO_VERDICT
        if queued.unknown is not None:
            status = yield from self._event(cmd.Unknown(queued.unknown), extra)
            outcome.unknown_status = status
        status = yield from self._event(cmd.Data(), extra)
        if self._early(outcome, status, "data"):
            return MessageEnd.VERDICT
        return None

    def _content(
        self, queued: Submission, outcome: MessageOutcome
    ) -> Script[MessageEnd]:
        message, extra = queued.message, queued.macros
        for name, raw in message.headers:
            value = raw if self.leading_space else strip_one_space(raw)
            status = yield from self._event(cmd.Header(name, value), extra)
            if self._early(outcome, status, "header"):
                return MessageEnd.VERDICT
        status = yield from self._event(cmd.EndOfHeader(), extra)
        if self._early(outcome, status, "end-of-header"):
            return MessageEnd.VERDICT
        for chunk in self._chunks(queued):
            status = yield from self._event(cmd.Body(chunk), extra)
            if status is S.SKIP:
                outcome.skipped_body = True
                break
            if self._early(outcome, status, "body"):
                return MessageEnd.VERDICT
        status = yield from self._event(cmd.EndOfMessage(), extra)
        self._ended(outcome, status, "end-of-message")
        return MessageEnd.VERDICT

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

    def _ended(self, outcome: MessageOutcome, status: Status, stage: str) -> MessageEnd:
        outcome.status = status
        outcome.stage = stage
        outcome.reply = self._last_reply
        return MessageEnd.VERDICT

    def _delivered(self, outcome: MessageOutcome) -> Message:
        message = outcome.message
        if outcome.stage == "end-of-message":
            return message.apply(
                outcome.modifications,
                leading_space=self.leading_space,
                renumber_deleted=self.profile.renumber_deleted_headers,
            )
        return message



