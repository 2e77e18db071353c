"""The MTA's side of one milter connection over a real socket: :class:`MilterChannel`.

What the milter manager uses to talk to each child milter (and the runtime's tests and
``bench/load.py`` to talk to a milter). It speaks through the protocol package's command objects
and ``decode_reply``, honours the negotiated no-event / no-reply steps as Postfix does (read
from the steps table), collects what comes before a final reply (progress, modifications) and
bounds every wait. :class:`~milterkit.testing.ServerContext` is the full, strict MTA simulator
of the test tools; this one is deliberately small.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from ..protocol import commands as cmd
from ..protocol.constants import ActionFlag, ProtocolFlag
from ..protocol.errors import ProtocolError
from ..protocol.framing import PacketDecoder
from ..protocol.replies import (
    FINAL_REPLIES,
    AnyReply,
    Continue,
    NegotiateReply,
    Progress,
    Skip,
    decode_reply,
)
from ..protocol.steps import STEP_OF_COMMAND
from .opening import READ_SIZE, open_spec

P = ProtocolFlag


class MTAError(Exception):
    """The milter closed the connection, answered out of turn or not in time."""


class ReplyTimeoutError(MTAError, asyncio.TimeoutError):
    """The milter did not answer within the channel's timeout (the channel stays open: the
    caller decides whether to wait again or :meth:`MilterChannel.abandon` it)."""


def braced(name: str) -> str:
    """A macro name as the MTA sends it: ``i`` stays, ``auth_authen`` becomes
    ``{auth_authen}`` (:class:`~milterkit.macros.MacroTable` keeps names without braces)."""
    if len(name) == 1 or name.startswith("{"):
        return name
    return "{" + name + "}"


@dataclass
class Answer:
    """What the milter answered to one command: its final reply and what came before it."""

    final: AnyReply | None
    before: list[AnyReply] = field(default_factory=list)

    @property
    def progress(self) -> int:
        """Progress packets received while waiting."""
        return sum(isinstance(reply, Progress) for reply in self.before)

    @property
    def passed(self) -> bool:
        """True if the milter let the command through (or was not asked)."""
        return self.final is None or isinstance(self.final, Continue)


@dataclass
class Outcome:
    """One message: every step's answer by name, and the end-of-message modifications and
    verdict."""

    steps: dict[str, Answer] = field(default_factory=dict)
    recipients: dict[str, Answer] = field(default_factory=dict)
    modifications: list[AnyReply] = field(default_factory=list)
    verdict: AnyReply | None = None


class MilterChannel:
    """The MTA's end of one milter connection: ``await MilterChannel.open("unix:/m.sock")``.

    ``timeout`` bounds every read (a progress packet starts it again, as with Postfix).
    """

    def __init__(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, *, timeout: float = 10.0
    ) -> None:
        self.reader = reader
        self.writer = writer
        self.timeout = timeout
        self.negotiated: NegotiateReply | None = None
        self._decoder = PacketDecoder()
        self._packets: list[tuple[bytes, bytes]] = []
        #: True once the connection is closed (by either side) or broken.
        self.closed = False

    @classmethod
    async def open(cls, spec: str, *, timeout: float = 10.0,
                   connect_timeout: float | None = None) -> MilterChannel:
        """Connect to the milter at ``spec`` (a connection spec with a host or a path) within
        ``connect_timeout`` seconds (default: ``timeout``)."""
        reader, writer = await open_spec(spec, timeout if connect_timeout is None
                                         else connect_timeout)
        return cls(reader, writer, timeout=timeout)

    async def close(self) -> None:
        """Close without QUIT (as an MTA that went away)."""
        self.abandon()
        try:
            await self.writer.wait_closed()
        except OSError:
            pass

    def abandon(self) -> None:
        """Close at once, without waiting (after a timeout or a protocol error)."""
        self.closed = True
        self.writer.close()

    async def quit(self) -> None:
        """Send QUIT and close."""
        if not self.closed:
            try:
                self.send_nowait(cmd.Quit())
                await asyncio.wait_for(self.writer.drain(), self.timeout)
            except (OSError, asyncio.TimeoutError):
                pass
        await self.close()

    # ------------------------------------------------------------------ wire

    def send_nowait(self, *commands: object) -> None:
        """Write commands (objects with ``to_bytes()``, or raw bytes) without waiting."""
        if self.closed:
            raise MTAError("the connection to the milter is closed")
        for command in commands:
            data = command if isinstance(command, bytes) else command.to_bytes()  # type: ignore[attr-defined]
            self.writer.write(data)

    def send_macros(self, stage: bytes, macros: Mapping[str, str]) -> None:
        """Send ``macros`` for the command byte ``stage`` (names in braces as the MTA sends
        them); nothing for none."""
        if macros:
            self.send_nowait(cmd.DefineMacro(stage, {braced(k): v for k, v in macros.items()}))

    async def read_reply(self) -> AnyReply:
        """The next packet from the milter, decoded; :class:`MTAError` on EOF, a timeout or
        a packet that does not decode."""
        while not self._packets:
            try:
                data = await asyncio.wait_for(self.reader.read(READ_SIZE), self.timeout)
            except asyncio.TimeoutError:
                raise ReplyTimeoutError(f"no reply within {self.timeout:g} s") from None
            except OSError as exc:
                self.abandon()
                raise MTAError(f"the connection broke: {exc}") from None
            if not data:
                self.abandon()
                raise MTAError("the milter closed the connection")
            try:
                self._packets.extend(self._decoder.feed(data))
            except ProtocolError as exc:
                self.abandon()
                raise MTAError(f"the milter broke the protocol: {exc}") from None
            if self._decoder.error is not None:
                self.abandon()
                raise MTAError(f"the milter broke the protocol: {self._decoder.error}")
        code, payload = self._packets.pop(0)
        try:
            return decode_reply(code, payload)
        except ProtocolError as exc:
            self.abandon()
            raise MTAError(f"the milter broke the protocol: {exc}") from None

    async def at_eof(self) -> bool:
        """Wait until the milter closes the connection; True if it did within the timeout."""
        try:
            data = await asyncio.wait_for(self.reader.read(65536), self.timeout)
        except (asyncio.TimeoutError, ConnectionError):
            return isinstance(self.reader.exception(), ConnectionError)
        return data == b""

    async def step(self, command: object,
                   on_progress: Callable[[], object] | None = None) -> Answer:
        """Send ``command`` as Postfix would and wait for the answer the negotiation implies;
        ``on_progress`` is called at each progress packet that comes meanwhile."""
        row = STEP_OF_COMMAND.get(type(command))
        option = self.negotiated.protocol if self.negotiated else P.NONE
        if row is not None and option & row.no_event:
            return Answer(None)
        self.send_nowait(command)
        if row is not None and (not row.answered or option & row.no_reply):
            return Answer(None)
        before: list[AnyReply] = []
        while True:
            reply = await self.read_reply()
            if isinstance(reply, FINAL_REPLIES):
                return Answer(reply, before)
            before.append(reply)
            if on_progress is not None and isinstance(reply, Progress):
                on_progress()

    # ------------------------------------------------------------------ session

    async def negotiate(
        self, actions: ActionFlag = ActionFlag.ALL, protocol: ProtocolFlag = P.ALL,
        version: int = 6,
    ) -> NegotiateReply:
        """Offer ``version`` with ``actions`` and ``protocol``; returns the milter's ``O``
        reply, with what it asks for beyond the offer masked off (as Postfix does)."""
        self.send_nowait(cmd.Negotiate(version, actions, protocol))
        reply = await self.read_reply()
        if not isinstance(reply, NegotiateReply):
            self.abandon()
            raise MTAError(f"expected a negotiate reply, got {type(reply).__name__}")
        reply = dataclasses.replace(reply, actions=ActionFlag(reply.actions & actions),
                                    protocol=ProtocolFlag(reply.protocol & protocol))
        self.negotiated = reply
        return reply

    async def connect(
        self, hostname: str = "client.example", address: str = "192.0.2.1", port: int = 40000,
    ) -> Answer:
        """Send CONNECT for an IPv4 SMTP client."""
        return await self.step(cmd.Connect(hostname, cmd.SocketAddress("4", address, port)))

    async def helo(self, name: str = "client.example") -> Answer:
        """Send HELO."""
        return await self.step(cmd.Helo(name))

    async def message(
        self,
        sender: str = "<sender@example.org>",
        recipients: Sequence[str] = ("<rcpt@example.com>",),
        headers: Iterable[tuple[str, str]] = (("Subject", "test"), ("From", "sender@example.org")),
        body: bytes = b"Hello.\r\n",
        chunk_size: int = 65535,
    ) -> Outcome:
        """One transaction, stopping where the milter's answers would make Postfix stop."""
        outcome = Outcome()
        step = outcome.steps["envelope-from"] = await self.step(cmd.Mail(sender))
        if not step.passed:
            self.send_nowait(cmd.Abort())
            return outcome
        accepted = 0
        for rcpt in recipients:
            step = outcome.recipients[rcpt] = await self.step(cmd.Rcpt(rcpt))
            accepted += step.passed
        if not accepted:
            self.send_nowait(cmd.Abort())
            return outcome
        for name, command in (("data", cmd.Data()),):
            step = outcome.steps[name] = await self.step(command)
            if not step.passed:
                self.send_nowait(cmd.Abort())
                return outcome
        for name, value in headers:
            step = await self.step(cmd.Header(name, value))
            if not step.passed:
                outcome.steps["header"] = step
                self.send_nowait(cmd.Abort())
                return outcome
        step = outcome.steps["end-of-header"] = await self.step(cmd.EndOfHeader())
        if not step.passed:
            self.send_nowait(cmd.Abort())
            return outcome
        for start in range(0, len(body), chunk_size):
            chunk = body[start : start + chunk_size]
            step = outcome.steps["body"] = await self.step(cmd.Body(chunk))
            if isinstance(step.final, Skip):
                break
            if not step.passed:
                self.send_nowait(cmd.Abort())
                return outcome
        step = outcome.steps["end-of-message"] = await self.step(cmd.EndOfMessage())
        outcome.modifications = [r for r in step.before if not isinstance(r, Progress)]
        outcome.verdict = step.final
        return outcome

    async def session(self, messages: int = 1, **message: Any) -> list[Outcome]:
        """Negotiate, CONNECT, HELO, ``messages`` transactions (``message`` are
        :meth:`message`'s arguments), QUIT."""
        if self.negotiated is None:
            await self.negotiate()
        await self.connect()
        await self.helo()
        outcomes = [await self.message(**message) for _ in range(messages)]
        self.send_nowait(cmd.Quit())
        await self.writer.drain()
        return outcomes


#: The older name of :class:`MilterChannel` (the runtime's tests and bench/load.py use it).
MTA = MilterChannel
