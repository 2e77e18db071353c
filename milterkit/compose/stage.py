"""One composed connection: the filters' members, and each stage run across them.

At every stage the composer calls, in filter order, each filter that is still working on the
message (or connection), asked for the event, and is not stopped by one of its conditions.
Plain handlers run at once, in order; coroutine handlers (and PROGRESS answers) of several
filters then run concurrently, and the stage is answered when every filter has answered or
timed out. The statuses are combined by :func:`~milterkit.compose.ranking.combine`.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
from collections.abc import Awaitable
from typing import Any

from ..context import ClientContext, StatusError
from ..protocol.constants import ProtocolFlag
from ..reply import ReplyError
from ..status import Status
from .member import Member
from .ranking import ALLOWED, CONNECTION_STAGES, REFUSALS, combine
from .runs import coerce, run_receivers
from .view import Change

# A message verdict at one of these stages ends the message before end-of-message.
_MESSAGE_ENDING = frozenset({"envelope-from", "data", "header", "end-of-header", "body"})
_MESSAGE_VERDICTS = frozenset({Status.ACCEPT, Status.REJECT, Status.DISCARD,
                               Status.TEMPORARY_FAILURE})

log = logging.getLogger("milterkit.compose")
S = Status


class StageRun:
    """One stage across the filters: who was called, who answered what, who still owes."""

    def __init__(self, stage: str, args: tuple[Any, ...]) -> None:
        self.stage = stage
        self.args = args
        self.called: list[Member] = []
        self.results: dict[int, Status] = {}  # by id(member)
        self.failed: set[int] = set()
        self.waiting = 0
        self.starting = True
        self.closed = False


class ComposedConnection:
    """The composition's state for one :class:`~milterkit.ClientContext`."""

    def __init__(self, context: ClientContext, members: list[Member]) -> None:
        self.context = context
        self.members = members
        self.run: StageRun | None = None
        self.message_open = False

    # -------------------------------------------------------------- a stage

    def start(self, stage: str, args: tuple[Any, ...]) -> Status:
        """Call the filters for ``stage``; a status, or PROGRESS while some still work."""
        if stage == "envelope-from" or (
                not self.message_open and stage not in CONNECTION_STAGES and stage != "unknown"):
            self.begin_message()  # MAIL may not be negotiated: the first message event then
        run = self.run = StageRun(stage, args)
        for member in self.members:
            if not member.working(stage):
                continue
            if member.filter.spec.conditions and self._stopped(member, stage, args):
                continue
            if member.wants(stage):
                self._call(member, run)
        run.starting = False
        if run.waiting:
            return S.PROGRESS
        return self.finish(run)

    def _stopped(self, member: Member, stage: str, args: tuple[Any, ...]) -> bool:
        for condition in member.filter.spec.conditions:
            stopper = condition.stoppers().get(stage)
            if stopper is None:
                continue
            try:
                stop = bool(stopper(member.view, *args))
            except Exception:
                log.exception("[%s] filter %s: condition %s raised at %s; the filter stays "
                              "attached", self.context.tag, member.name, condition.name, stage)
                continue
            if stop:
                scope = "connection" if stage in CONNECTION_STAGES else "message"
                log.debug("[%s] filter %s does not apply (condition %s at %s): detached for "
                          "the %s", self.context.tag, member.name, condition.name, stage, scope)
                if scope == "connection":
                    member.connection_detached = True
                else:
                    member.message_detached = True
                return True
        return False

    def _call(self, member: Member, run: StageRun) -> None:
        view = member.view
        view._begin_stage()
        if run.stage == "end-of-message":
            self.earlier_changes(member)
        run.called.append(member)
        receivers = iter(view.signals.receivers(run.stage, view))
        try:
            result = run_receivers(run.stage, view, receivers, run.args)
        except Exception as exc:
            self._fail(member, run, exc)
            return
        if isinstance(result, Status):
            if result is S.PROGRESS:
                self._await_response(member, run)
            else:
                run.results[id(member)] = result
            return
        self._await(member, run, result)

    def _await(self, member: Member, run: StageRun, awaitable: Awaitable[Status]) -> None:
        hook = self.context.await_hook
        if hook is None:
            if inspect.iscoroutine(awaitable):
                awaitable.close()
            self._fail(member, run, TypeError(
                "a coroutine handler needs the asyncio runtime (the context has no await_hook)"))
            return
        timeout = member.filter.spec.timeout
        run.waiting += 1
        job = asyncio.wait_for(awaitable, timeout) if timeout else awaitable
        hook(job, lambda result, error: self._answered(member, run, result, error))

    def _await_response(self, member: Member, run: StageRun) -> None:
        """The filter returned PROGRESS: it answers later with ``view.respond``."""
        run.waiting += 1

        def respond(stage: str | None, status: Status | None) -> None:
            if stage is not None and stage != run.stage:
                raise StatusError(f"filter {member.name!r} owes {run.stage}, not {stage}")
            member.view._responder = None
            self._answered(member, run, S.CONTINUE if status is None else status, None)

        member.view._responder = respond
        timeout = member.filter.spec.timeout
        if timeout:
            try:
                loop = asyncio.get_running_loop()
            except RuntimeError:
                return  # offline: nothing can time out
            member.timers.append(loop.call_later(
                timeout, lambda: self._answered(member, run, None, asyncio.TimeoutError())))

    def _answered(self, member: Member, run: StageRun, result: Any, error: BaseException | None,
                  ) -> None:
        key = id(member)
        if run.closed or key in run.results or self.context.finished:
            return  # the stage, message or session is over, or a timeout answered first
        for timer in member.timers:
            timer.cancel()
        member.timers.clear()
        if error is None:
            try:
                status = coerce(run.stage, result)
            except StatusError as exc:
                error = exc
            else:
                if status is S.PROGRESS:
                    run.waiting -= 1
                    self._await_response(member, run)
                    return
                run.results[key] = status
        if error is not None:
            member.view._responder = None
            if isinstance(error, (asyncio.TimeoutError, TimeoutError)):
                error = TimeoutError(f"no answer to {run.stage} within "
                                     f"{member.filter.spec.timeout:g} s")
            self._fail(member, run, error)
        run.waiting -= 1
        if run.waiting or run.starting:
            return
        context = self.context
        if context.finished or context.pending != run.stage:
            return
        context.respond(run.stage, self.finish(run))

    def _fail(self, member: Member, run: StageRun, error: BaseException) -> None:
        run.results[id(member)] = self.fallback(member, run.stage, error)
        run.failed.add(id(member))

    def fallback(self, member: Member, stage: str, error: BaseException) -> Status:
        """The status a filter's failure becomes; logged with the filter's name."""
        context = self.context
        policy = member.filter.spec.fallback or context.exception_policy or S.TEMPORARY_FAILURE
        status = policy if policy in ALLOWED.get(stage, frozenset()) else S.CONTINUE
        log.error("[%s] filter %s failed at %s (%s: %s); it answers %s", context.tag,
                  member.name, stage, type(error).__name__, error, status.nick,
                  exc_info=None if isinstance(error, TimeoutError) or getattr(
                      error, "expected", False) else error)
        member.view._begin_stage()
        member.failed = True
        reply = context.exception_reply
        if status in (S.REJECT, S.TEMPORARY_FAILURE) and reply:
            if reply[0] == ("5" if status is S.REJECT else "4"):
                code, _, rest = reply.partition(" ")
                xcode, _, text = rest.partition(" ")
                try:
                    member.view.set_reply(code, xcode, text or None)
                except ReplyError:
                    pass
        if stage == "end-of-message":
            member.failed_at_end = True
            member.view.changes.clear()
        for receiver in member.view.signals.receivers("error", member.view):
            try:
                receiver(member.view, error)
            except Exception:
                log.exception("[%s] filter %s: its error handler raised", context.tag,
                              member.name)
        return status

    # -------------------------------------------------------------- combining

    def _normal(self, member: Member, run: StageRun) -> Status:
        stage = run.stage
        status = run.results[id(member)]
        if status in (S.DEFAULT, S.NOT_CHANGE, S.NO_REPLY, S.ALL_OPTIONS):
            return S.CONTINUE
        if status is S.SKIP and stage == "body":
            option = self.context.option
            if option is None or not option.protocol & ProtocolFlag.SKIP:
                return S.CONTINUE  # the MTA cannot skip: the filter just ignores the rest
        if id(member) in run.failed:
            return status
        try:
            if status not in ALLOWED[stage]:
                valid = ", ".join(sorted(s.name for s in ALLOWED[stage]))
                raise StatusError(f"{status.name} is not a valid status for {stage} ({valid})")
            reply = member.view.reply
            if status in (S.REJECT, S.TEMPORARY_FAILURE) and reply is not None:
                wanted = "5" if status is S.REJECT else "4"
                if reply[0] != wanted:
                    raise ReplyError(f"reply {reply[:3]} does not fit {status.name}")
        except (StatusError, ReplyError) as exc:
            run.failed.add(id(member))
            status = run.results[id(member)] = self.fallback(member, stage, exc)
        return status

    def finish(self, run: StageRun) -> Status:
        """Combine the answers of ``run`` into the MTA's status (its reply set on the context)."""
        run.closed = True
        stage = run.stage
        context = self.context
        statuses = {id(member): self._normal(member, run) for member in run.called}
        refusals: list[tuple[Status, Member]] = []
        for member in run.called:
            status = statuses[id(member)]
            per_recipient = stage == "unknown" or (
                stage == "envelope-recipient" and status in (S.REJECT, S.TEMPORARY_FAILURE))
            if member.evaluation and status is not S.CONTINUE:
                log.info("[%s] evaluation: filter %s would answer %s at %s%s", context.tag,
                         member.name, status.nick, stage,
                         f" ({member.view.reply})" if member.view.reply else "")
            if status is S.SKIP:
                member.skipped_body = True
            elif status in REFUSALS or status is S.ACCEPT:
                if not per_recipient:
                    member.decide(stage, status)
                if status is not S.ACCEPT and not member.evaluation:
                    refusals.append((status, member))
        working = []
        for member in self.members:
            if not member.working(stage):
                continue
            if stage != "body":
                working.append(S.CONTINUE)
                break  # one filter going on is enough to say CONTINUE
            status = statuses.get(id(member), S.CONTINUE if member.wants("body") else S.SKIP)
            working.append(S.SKIP if status is S.SKIP or member.skipped_body else S.CONTINUE)
        accepted = not working and any(member.accepted(stage) for member in self.members)
        final = combine((status for status, _ in refusals), working, accepted)
        if final in REFUSALS:
            decider = next(member for status, member in refusals if status is final)
            args = decider.view._reply_args
            if args is not None and final is not S.DISCARD:
                context.set_reply(*args)
        elif stage == "end-of-message":
            self._apply_changes(run, statuses)
        if stage == "end-of-message":
            self._record_message()
        elif stage in _MESSAGE_ENDING and final in _MESSAGE_VERDICTS:
            self._record_message(early=True)  # for the per-message log line
        if log.isEnabledFor(logging.DEBUG):
            log.debug("[%s] %s: %s -> %s", context.tag, stage, ", ".join(
                f"{m.name} {statuses[id(m)].nick}" for m in run.called) or "no filter",
                final.nick)
        return final

    def _apply_changes(self, run: StageRun, statuses: dict[int, Status]) -> None:
        context = self.context
        for member in run.called:
            status = statuses[id(member)]
            if status in REFUSALS or member.failed_at_end:
                continue
            for change in member.view.changes:
                if member.evaluation:
                    log.info("[%s] evaluation: filter %s would %s", context.tag, member.name,
                             change)
                    continue
                try:
                    getattr(context, change.action)(*change.args)
                except Exception as exc:
                    log.error("[%s] filter %s: its change %s failed: %s", context.tag,
                              member.name, change, exc)

    def earlier_changes(self, member: Member) -> None:
        """Give ``member`` the changes of the filters before it (before it is called)."""
        found: list[tuple[str, Change]] = []
        for other in self.members:
            if other is member:
                break
            if not other.evaluation:
                found.extend((other.name, change) for change in other.view.changes)
        member.view.earlier_changes = tuple(found)

    # -------------------------------------------------------------- messages

    def begin_message(self) -> None:
        if self.message_open:
            self.end_message()
        self.message_open = True

    def _record_message(self, early: bool = False) -> None:
        verdicts = {}
        for member in self.members:
            if not early and member.label is None and member.working("end-of-message"):
                member.label = member.describe("continue")
            verdicts[member.name] = member.label or (
                "detached" if member.message_detached or member.connection_detached
                else (member.connection_verdict.nick if member.connection_verdict else
                      "continue"))
        result = self.context.message_result
        if result is not None:
            result.filter_verdicts = verdicts

    def end_message(self) -> None:
        """The message is over (verdict sent, or aborted): count each filter's verdict."""
        if self.run is not None:
            self.run.closed = True
        for member in self.members:
            member.view._responder = None
            for timer in member.timers:
                timer.cancel()
            member.timers.clear()
        if self.message_open:
            for member in self.members:
                member.end_message()
        self.message_open = False

    def summary(self) -> str:
        """``name: verdict count, ...; name: ...`` over the connection's messages."""
        parts = []
        for member in self.members:
            counts = ", ".join(f"{label} {n}" for label, n in sorted(member.tally.items()))
            parts.append(f"{member.name}: {counts or 'no message'}")
        return "; ".join(parts)

