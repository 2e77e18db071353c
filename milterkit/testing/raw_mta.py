"""A minimal MTA side over a real socket, for the runtime's tests and ``bench/load.py``.

Deliberately small: :class:`~milterkit.testing.ServerContext` is the full MTA simulator. This one
speaks through the protocol package's command objects and ``decode_reply``, honours the
negotiated no-event / no-reply steps as Postfix does (read from the steps table), and counts
progress packets.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from ..protocol import commands as cmd
from ..protocol.constants import ActionFlag, ProtocolFlag
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
from ..server.spec import parse_spec

P = ProtocolFlag


class MTAError(Exception):
    """The milter closed the connection or answered out of turn."""


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


class MTA:
    """An MTA connection to a milter: ``await MTA.open("unix:/run/m.sock")``."""

    def __init__(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, *, timeout: float = 10.0
    ) -> None:
        self.reader = reader
        self.writer = writer
        self.timeout = timeout
        self.negotiated: NegotiateReply | None = None
        self._decoder = PacketDecoder()
        self._packets: list[tuple[bytes, bytes]] = []

    @classmethod
    async def open(cls, spec: str, *, timeout: float = 10.0) -> MTA:
        """Connect to the milter at ``spec`` (a connection spec with a host or a path)."""
        parsed = parse_spec(spec)
        if parsed.family == "unix":
            assert parsed.path is not None
            reader, writer = await asyncio.wait_for(
                asyncio.open_unix_connection(parsed.path), timeout
            )
        else:
            address = parsed.resolve()
            assert isinstance(address, tuple)
            host, port = address
            reader, writer = await asyncio.wait_for(asyncio.open_connection(host, port), timeout)
        return cls(reader, writer, timeout=timeout)

    async def close(self) -> None:
        """Close without QUIT (as an MTA that went away)."""
        self.writer.close()
        try:
            await self.writer.wait_closed()
        except OSError:
            pass

    # ------------------------------------------------------------------ wire

    def send_nowait(self, *commands: object) -> None:
        """Write commands (objects with ``to_bytes()``, or raw bytes) without waiting."""
        for command in commands:
            data = command if isinstance(command, bytes) else command.to_bytes()  # type: ignore[attr-defined]
            self.writer.write(data)

    async def read_reply(self) -> AnyReply:
        """The next packet from the milter, decoded; :class:`MTAError` on EOF."""
        while not self._packets:
            data = await asyncio.wait_for(self.reader.read(65536), self.timeout)
            if not data:
                raise MTAError("the milter closed the connection")
            self._packets.extend(self._decoder.feed(data))
        code, payload = self._packets.pop(0)
        return decode_reply(code, payload)

    async def at_eof(self) -> bool:
        """Wait until the milter closes the connection; True if it did within the timeout."""
        try:
            data = await asyncio.wait_for(self.reader.read(65536), self.timeout)
        except (asyncio.TimeoutError, ConnectionError):
            return isinstance(self.reader.exception(), ConnectionError)
        return data == b""

    async def step(self, command: object) -> Answer:
        """Send ``command`` as Postfix would and wait for the answer the negotiation implies."""
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

    # ------------------------------------------------------------------ session

    async def negotiate(
        self, actions: ActionFlag = ActionFlag.ALL, protocol: ProtocolFlag = P.ALL
    ) -> NegotiateReply:
        """Offer version 6 with ``actions`` and ``protocol``; returns the milter's ``O`` reply."""
        self.send_nowait(cmd.Negotiate(6, actions, protocol))
        reply = await self.read_reply()
        if not isinstance(reply, NegotiateReply):
            raise MTAError(f"expected a negotiate reply, got {reply!r}")
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
