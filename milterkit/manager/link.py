"""One child milter on one MTA connection: :class:`ChildLink`.

It opens the child's connection when the MTA negotiates (bounded attempts, each logged),
negotiates with the MTA's offer, sends every event the child asked for with the macros the MTA
sent for it, and reads the child's answer. Any failure (no connection, a timeout, a broken
protocol) marks the link failed: it is closed, and the child's fallback answers for it from
then on. Nothing it does can end the MTA's session.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from ..mta.channel import Answer, MilterChannel, MTAError
from ..protocol import commands as cmd
from ..protocol.constants import ActionFlag, ProtocolFlag
from ..protocol.replies import NegotiateReply
from ..protocol.steps import STEP_OF_COMMAND

if TYPE_CHECKING:
    from .child import ChildMilter

log = logging.getLogger("milterkit.manager")
P = ProtocolFlag



class ChildFailure(Exception):
    """A child milter cannot be used on this connection (the message says why)."""

    #: Logged without a traceback (the composer's fallback log line says it all).
    expected = True


class ChildLink:
    """A child milter's connection for one MTA connection."""

    def __init__(self, child: ChildMilter, tag: object) -> None:
        self.child = child
        self.tag = tag
        self.channel: MilterChannel | None = None
        #: The child's negotiate reply (None until negotiated, or after a failure to).
        self.reply: NegotiateReply | None = None
        #: Why the link failed (None while it works).
        self.error: str | None = None
        #: Whether the failure was already reported to the composer once.
        self.reported = False
        self._offer: cmd.Negotiate | None = None
        #: Whether the child has a message open (an event of it sent, no end-of-message or
        #: ABORT yet), and which of the MTA's messages (its MessageResult).
        self.in_message = False
        self.message: object | None = None
        #: A reconnection under way (after QUIT_NC), awaited before the next event.
        self.pending: asyncio.Task[None] | None = None

    @property
    def name(self) -> str:
        return self.child.name

    @property
    def usable(self) -> bool:
        return self.channel is not None and not self.channel.closed and self.error is None

    # ------------------------------------------------------------------ opening

    async def open(self, offer: cmd.Negotiate) -> None:
        """Connect and negotiate, in at most ``connect_attempts`` attempts; never raises."""
        self._offer = offer
        spec = self.child.spec
        if self.child.health.resting():
            self.fail(f"down after {self.child.health.failures} failed connection(s); not "
                      f"tried for {spec.retry_after:g} s")
            return
        for attempt in range(1, spec.connect_attempts + 1):
            self.child.ensure_running()
            try:
                await asyncio.wait_for(self._open_once(offer), spec.connect_timeout)
            except (OSError, MTAError, asyncio.TimeoutError, ValueError) as exc:
                reason = _describe(exc, spec.connect_timeout)
                if self.channel is not None:
                    self.channel.abandon()
                    self.channel = None
                if attempt < spec.connect_attempts:
                    log.warning("[%s] milter %s: attempt %d of %d to connect to %s failed "
                                "(%s); trying again", self.tag, self.name, attempt,
                                spec.connect_attempts, spec.connection, reason)
                    await asyncio.sleep(spec.reconnect_delay)
                    continue
                self.fail(f"cannot connect to {spec.connection} after {attempt} attempt(s): "
                          f"{reason}")
                self.child.health.failed()
                return
            self.error = None
            self.reported = False
            self.child.health.worked()
            if attempt > 1:
                log.info("[%s] milter %s: connected at attempt %d", self.tag, self.name,
                         attempt)
            return

    async def _open_once(self, offer: cmd.Negotiate) -> None:
        spec = self.child.spec
        self.channel = await MilterChannel.open(
            spec.connection, timeout=spec.timeout or 3600.0,
            connect_timeout=spec.connect_timeout)
        reply = await self.channel.negotiate(
            ActionFlag(offer.actions), ProtocolFlag(offer.protocol),
            min(offer.version, 6))
        self.reply = self.child.last_reply = reply
        log.debug("[%s] milter %s negotiated: actions %r, protocol %r", self.tag, self.name,
                  reply.actions, reply.protocol)

    def new_client(self) -> None:
        """A new SMTP client on the MTA connection (QUIT_NC): pass it on to a working link;
        a failed one connects again (bounded as at first), before its next event."""
        self.in_message = False  # QUIT_NC ends everything the child had open
        if self.usable:
            self.send(cmd.QuitNewConnection())
            return
        if self._offer is None:
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return
        self.close()
        self.pending = loop.create_task(self.open(self._offer))

    # ------------------------------------------------------------------ events

    def fail(self, reason: str) -> None:
        """Mark the link failed and close it."""
        if self.error is None:
            self.error = reason
        if self.channel is not None:
            self.channel.abandon()

    def check(self) -> MilterChannel:
        """The channel, or :class:`ChildFailure` when the link cannot be used."""
        if not self.usable:
            raise ChildFailure(self.error or "not connected")
        assert self.channel is not None
        return self.channel

    async def step(self, command: Any, macros: Mapping[str, str] | None = None,
                   on_progress: Callable[[], object] | None = None) -> Answer:
        """Send ``command`` (after its macros) and read the answer; :class:`ChildFailure` if
        the child fails. A cancelled wait (the child's timeout) closes the link.
        ``on_progress`` is called at each progress packet of the child."""
        channel = self.check()
        row = STEP_OF_COMMAND.get(type(command))
        try:
            if macros and row is not None and row.macros_from is not None:
                channel.send_macros(row.macros_from, macros)
            answer = await channel.step(command, on_progress)
            if isinstance(command, cmd.EndOfMessage):
                self.in_message = False
            return answer
        except MTAError as exc:
            self.fail(str(exc))
            raise ChildFailure(str(exc)) from None
        except asyncio.CancelledError:
            self.fail("no answer in time")
            raise

    def begin(self, message: object) -> None:
        """A message event for the MTA's ``message`` is about to be sent: when the child still
        has an earlier message open (it ended where this child was not asked, by another
        member's refusal), end that one first with ABORT, as Postfix would."""
        if self.in_message and self.message is not message:
            self.abort()
        self.in_message = True
        self.message = message

    def abort(self) -> None:
        """End the child's open message (ABORT), if it has one."""
        if self.in_message:
            self.send(cmd.Abort())
            self.in_message = False

    def send(self, command: Any) -> None:
        """Send a command that has no answer (ABORT); a failure only marks the link."""
        if self.usable:
            assert self.channel is not None
            try:
                self.channel.send_nowait(command)
            except MTAError as exc:
                self.fail(str(exc))

    def close(self) -> None:
        """Send QUIT (when the link works) and close, without waiting."""
        channel = self.channel
        if channel is None:
            return
        if self.usable:
            try:
                channel.send_nowait(cmd.Quit())
            except MTAError:
                pass
        channel.abandon()
        self.channel = None


def _describe(exc: BaseException, timeout: float) -> str:
    if isinstance(exc, asyncio.TimeoutError) and not isinstance(exc, MTAError):
        return f"no connection and negotiation within {timeout:g} s"
    if isinstance(exc, OSError):
        return exc.strerror or str(exc)
    return str(exc) or type(exc).__name__
