"""A child milter as a composed filter: :class:`ChildMilter`.

Each child is one member of the composition (:class:`~milterkit.compose.Composer`), so the
composition's rules hold for it unchanged: ranking, evaluation mode, conditions, timeouts and
fallbacks. Its handlers forward each event to the child's :class:`~milterkit.manager.link.
ChildLink` for the connection and turn the child's answer into a status: a ``y`` reply becomes
REJECT or TEMPORARY_FAILURE with the child's own reply text, the modifications before its
end-of-message verdict become the filter's changes (applied in order with the others').
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any
from weakref import WeakKeyDictionary

from ..compose.ranking import EVENT_FLAGS, STAGE_NAMES
from ..compose.spec import FilterSpec
from ..compose.unit import FilterUnit
from ..compose.view import FilterView
from ..context import ClientContext
from ..macros import MacrosRequests
from ..protocol import commands as cmd
from ..protocol import replies as rp
from ..protocol.constants import ActionFlag, MacroStage, ProtocolFlag
from ..protocol.negotiation import Option
from ..protocol.replies import NegotiateReply
from ..protocol.steps import STEP_OF_SIGNAL
from ..responses import apply_modification, is_modification
from ..status import Status
from .link import ChildFailure, ChildLink
from .process import ChildProcess
from .spec import ChildSpec

log = logging.getLogger("milterkit.manager")
P = ProtocolFlag
S = Status

_VERDICTS: dict[type, Status] = {
    rp.Continue: S.CONTINUE, rp.Accept: S.ACCEPT, rp.Reject: S.REJECT,
    rp.TempFail: S.TEMPORARY_FAILURE, rp.Discard: S.DISCARD, rp.Skip: S.SKIP,
    rp.Shutdown: S.TEMPORARY_FAILURE, rp.ConnectionFailure: S.TEMPORARY_FAILURE,
}
_CONNECTION_EVENTS = frozenset({"connect", "helo", "unknown"})
#: Every event a child may be sent, and the protocol step that opts out of it.
_ALL_EVENTS = P.NONE
for _flag in EVENT_FLAGS.values():
    if _flag is not None:
        _ALL_EVENTS |= _flag


class ChildHealth:
    """A child's record across connections: consecutive failures to reach it (logged when it
    comes back), and, with ``retry_after``, the time until which it is not tried at all."""

    def __init__(self, name: str, retry_after: float = 0.0) -> None:
        self.name = name
        self.retry_after = retry_after
        self.failures = 0
        #: ``time.monotonic()`` before which no connection is tried (0: try).
        self.down_until = 0.0

    def failed(self) -> None:
        self.failures += 1
        if self.retry_after:
            self.down_until = time.monotonic() + self.retry_after
            log.warning("milter %s: not tried again for %g s (retry-after)", self.name,
                        self.retry_after)

    def worked(self) -> None:
        if self.failures:
            log.info("milter %s is reachable again after %d failed connection(s)", self.name,
                     self.failures)
        self.failures = 0
        self.down_until = 0.0

    def resting(self) -> bool:
        """Whether the child is within its ``retry_after`` pause after a failure."""
        return self.down_until > time.monotonic()


class ChildMilter:
    """One configured child milter: its spec, process, health and per-connection links."""

    def __init__(self, spec: ChildSpec) -> None:
        self.spec = spec
        self.health = ChildHealth(spec.name, spec.retry_after)
        self.process: ChildProcess | None = None
        if spec.command is not None:
            self.process = ChildProcess(spec.name, spec.command, spec.connection,
                                        spec.start_timeout, spec.max_restarts)
        self._links: WeakKeyDictionary[ClientContext, ChildLink] = WeakKeyDictionary()
        #: The child's last negotiate reply on any connection: what the MTA is asked for on
        #: its behalf while it cannot be reached, so that it can take part again after a
        #: reconnection (QUIT_NC) on the same MTA connection.
        self.last_reply: NegotiateReply | None = None

    @property
    def name(self) -> str:
        return self.spec.name

    def start(self) -> None:
        """Run the child's command (when it has one) and wait until it listens."""
        if self.process is not None and self.process.process is None:
            self.process.start()

    def ensure_running(self) -> None:
        if self.process is not None:
            self.process.ensure_running()

    def link(self, context: ClientContext) -> ChildLink:
        """The child's link for ``context`` (made on first use, not yet connected)."""
        found = self._links.get(context)
        if found is None:
            found = self._links[context] = ChildLink(self, context.tag)
        return found

    def close(self, context: ClientContext) -> None:
        """Close the child's link for ``context`` (QUIT), if it has one."""
        found = self._links.get(context)
        if found is not None:
            found.close()

    def filter_spec(self) -> FilterSpec:
        """The child as a member of the composition."""
        unit = FilterUnit(self.name, self._setup, f"child milter at {self.spec.connection}",
                          {}, f"milter {self.spec.connection}")
        spec = self.spec
        return FilterSpec(unit, name=self.name, evaluation=spec.evaluation,
                          fallback=spec.fallback, timeout=spec.timeout,
                          conditions=list(spec.conditions))

    # ------------------------------------------------------------------ the filter

    def _setup(self, host: Any) -> None:
        host.connect("negotiate", self._negotiate)
        for stage in STAGE_NAMES:
            host.connect(stage, self._handler(stage))
        host.connect("abort", self._abort)
        host.connect("reset", self._reset)
        host.connect("finished", self._finished)

    def _negotiate(self, view: FilterView, option: Option, requests: MacrosRequests) -> None:
        link = self.link(view.context)
        reply = link.reply if link.usable else self.last_reply
        if reply is None:
            # Unreachable and never seen: it takes CONNECT only, where its fallback answers.
            option.actions = ActionFlag.NONE
            option.protocol = ProtocolFlag(_ALL_EVENTS & ~P.NO_CONNECT)
            return
        option.actions = ActionFlag(reply.actions & option.actions)
        option.protocol = ProtocolFlag(reply.protocol & (_ALL_EVENTS | P.HEADER_LEADING_SPACE))
        for stage, names in reply.macros.items():
            requests.set_symbols(MacroStage(stage), *names.split())

    def _handler(self, stage: str) -> Callable[..., Any]:
        row = STEP_OF_SIGNAL[stage]

        async def handler(view: FilterView, *args: Any) -> Status | None:
            link = self.link(view.context)
            if link.pending is not None:
                pending, link.pending = link.pending, None
                await pending
            if not link.usable and link.reported and self.spec.fallback is S.CONTINUE:
                return None  # already failed and reported: it goes along quietly
            try:
                link.check()
                command = self._command(view, stage, args, link)
                if stage not in _CONNECTION_EVENTS:
                    link.begin(view.context.message_result)
                macros = None
                if row.macros_from == row.code:  # its own list (not per header or chunk)
                    macros = view.context.macros.by_stage(row.macros_from)
                answer = await link.step(command, macros, _progress(view))
                return self._status(view, stage, answer, link)
            finally:
                if not link.usable:
                    link.reported = True  # the composer logs this failure, once

        handler.__qualname__ = f"ChildMilter.{stage.replace('-', '_')}"
        return handler

    def _command(self, view: FilterView, stage: str, args: tuple[Any, ...],
                 link: ChildLink) -> Any:
        context = view.context
        if stage == "connect":
            return cmd.Connect(args[0], args[1])
        if stage == "helo":
            return cmd.Helo(args[0])
        if stage == "envelope-from":
            return cmd.Mail(args[0], tuple(context.envelope_parameters))
        if stage == "envelope-recipient":
            return cmd.Rcpt(args[0], tuple(context.envelope_parameters))
        if stage == "data":
            return cmd.Data()
        if stage == "unknown":
            return cmd.Unknown(args[0])
        if stage == "header":
            name, value = args
            assert link.reply is not None
            option = context.option
            if (option is not None and option.protocol & P.HEADER_LEADING_SPACE
                    and not link.reply.protocol & P.HEADER_LEADING_SPACE
                    and value.startswith(" ")):
                value = value[1:]  # the MTA sent it for another member
            return cmd.Header(name, value)
        if stage == "end-of-header":
            return cmd.EndOfHeader()
        if stage == "body":
            return cmd.Body(args[0])
        return cmd.EndOfMessage(args[0] if args else b"")

    def _status(self, view: FilterView, stage: str, answer: Any, link: ChildLink) -> Status:
        final = answer.final
        changes = [reply for reply in answer.before if not isinstance(reply, rp.Progress)]
        if changes and stage != "end-of-message":
            link.fail(f"it sent {type(changes[0]).__name__} at {stage}")
            raise ChildFailure(f"protocol error: a modification at {stage}")
        if stage == "end-of-message":
            for change in changes:
                # Checked in turn, not all first: the changes ahead of an unexpected reply
                # are recorded by the time it fails, as they always were.
                if not is_modification(change):
                    raise ChildFailure(f"unexpected reply {type(change).__name__} before "
                                       "end-of-message's verdict")
                apply_modification(view, change)
        if final is None:
            return S.CONTINUE  # not asked to answer (a no-reply step)
        if isinstance(final, rp.ReplyText):
            return _reply_text(view, final.text)
        status = _VERDICTS.get(type(final))
        if status is None:  # pragma: no cover - FINAL_REPLIES are all mapped
            raise ChildFailure(f"unexpected reply {type(final).__name__}")
        return status

    def _abort(self, view: FilterView, state: Any) -> None:
        self.link(view.context).abort()

    def _reset(self, view: FilterView) -> None:
        self.link(view.context).new_client()

    def _finished(self, view: FilterView) -> None:
        self.link(view.context).close()


def _progress(view: FilterView) -> Callable[[], None]:
    """Pass a child's progress packet on to the MTA (which restarts its timer)."""
    context = view.context

    def progress() -> None:
        try:
            context.progress()
        except Exception as exc:  # no reply owed any more: nothing to keep alive
            log.debug("[%s] a progress packet of a child was not passed on: %s", context.tag,
                      exc)

    return progress


def _reply_text(view: FilterView, text: str) -> Status:
    """REJECT or TEMPORARY_FAILURE with the child's own reply text."""
    lines = text.replace("\r\n", "\n").rstrip("\n").split("\n")
    code = lines[0][:3]
    xcode: str | None = None
    texts = []
    for line in lines:
        rest = line[4:] if len(line) > 3 else ""
        first, _, tail = rest.partition(" ")
        if first[:1].isdigit() and first.count(".") == 2:
            xcode = xcode or first
            rest = tail
        texts.append(rest.replace("%%", "%"))
    status = S.REJECT if code.startswith("5") else S.TEMPORARY_FAILURE
    view.set_reply(code, xcode, texts)
    return status
