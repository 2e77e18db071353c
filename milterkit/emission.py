"""Running a stage's handlers and answering the MTA: milter-manager's emission, made strict.

:class:`Emitter` is the part of :class:`~milterkit.ClientContext` that emits a stage's signal,
combines the handlers' statuses (the first decisive one wins), waits for a coroutine handler,
refuses a status the stage does not take, applies the exception policy, and writes the one reply
the stage owes. It keeps no message data: that is the :class:`~milterkit.transaction.Transaction`.
"""

from __future__ import annotations

import inspect
import logging
import time
import weakref
from collections.abc import Awaitable, Callable, Iterator, Sequence
from typing import TYPE_CHECKING, Any, cast

from .blocking import OffloadHook, on_loop, runs_in_thread
from .errors import LocalError, ReplyError, StateError, StatusError
from .negotiation_cache import no_reply_stages
from .protocol.constants import ProtocolFlag as P
from .protocol.negotiation import Negotiation, Option
from .reply import REPLY_CLASS, verdict_packet
from .responses import QUEUE_KEY, apply_queued, handler_status
from .stages import (
    ABORT,
    END_OF_MESSAGE,
    MESSAGE_VERDICTS,
    NEGOTIATE,
    STAGES,
    Stage,
)
from .status import NEXT_HANDLER_RUNS, NO_VERDICT, State, Status

if TYPE_CHECKING:
    from .context import ClientContext
    from .macros import MacrosRequests
    from .result import MessageResult
    from .signals import SignalTable
    from .transaction import Transaction

log = logging.getLogger("milterkit.context")
S = Status

#: Called by the context with an awaitable a handler returned and a callback to call with its
#: result (or the exception it raised). The asyncio runtime provides one.
AwaitHook = Callable[[Awaitable[Any], Callable[[Any, BaseException | None], None]], None]

#: Which do_* handlers a context class overrides (weak: test classes come and go). A class
#: whose do_* methods are replaced after its first context keeps its first answer.
_OVERRIDDEN: weakref.WeakKeyDictionary[type, frozenset[str]] = weakref.WeakKeyDictionary()
_WAITING: Any = object()  # an awaitable is in flight; the stage resumes when it completes
#: Stages at which a message verdict completes the message (no ``abort`` follows it). REJECT
#: or TEMPFAIL at envelope-recipient refuses one recipient only; connect and helo have no message.
_MESSAGE_STAGES = frozenset({"envelope-from", "data", "header", "end-of-header", "body"})


class Emitter:
    """Signal emission and replies of a context (a mixin of :class:`~milterkit.ClientContext`)."""

    # Provided by ClientContext.
    signals: SignalTable
    tag: int
    state: State
    last_state: State
    status: Status
    messages: int
    negotiation: Negotiation | None
    macros_requests: MacrosRequests
    exception_policy: Status | None
    exception_reply: str | None
    await_hook: AwaitHook | None
    offload_hook: OffloadHook | None
    offload_all: bool
    _write: Callable[[bytes], object]
    _finished: bool
    _transaction: Transaction
    _last_result: MessageResult | None
    _option_override: Option | None

    def _respond_negotiate(self, status: Status, option: Option | None) -> None:
        raise NotImplementedError

    def _run(self) -> None:
        raise NotImplementedError

    def _set_state(self, state: State) -> None:
        raise NotImplementedError

    def reset_message_related_data(self) -> None:
        raise NotImplementedError

    def _init_emitter(self) -> None:
        self._pending: Stage | None = None
        self._reply: str | None = None
        self._generation = 0  # bumped when the session ends, so late async results are dropped
        # Stages we never answer (no-reply negotiated with the MTA), by name: a set lookup per
        # reply instead of IntFlag arithmetic (enum's __and__ builds a new flag object each time
        # and was ~10% of feed()'s time).
        self._silent: frozenset[str] = frozenset()
        # Stages where the milter asked not to reply (negotiated with the MTA, or emulated).
        self._no_reply_stages: frozenset[str] = frozenset()
        self._no_reply_any = P.NONE
        cls = type(self)
        overridden = _OVERRIDDEN.get(cls)  # per class, not per connection (issue 15)
        if overridden is None:
            base = _base_context_class(cls)
            overridden = _OVERRIDDEN[cls] = frozenset(
                stage.name for stage in STAGES.values()
                if getattr(cls, stage.method) is not getattr(base, stage.method)
            )
        self._overridden = overridden

    def _set_no_reply(self, negotiation: Negotiation) -> None:
        # Cached per negotiated masks (issue 15): the same sets on every connection.
        self._silent, self._no_reply_stages = no_reply_stages(negotiation)
        self._no_reply_any = negotiation.no_reply

    def _end_session(self) -> None:
        self._generation += 1
        self._pending = None

    @property
    def pending(self) -> str | None:
        """The stage whose reply is owed (a handler returned PROGRESS), or None."""
        return self._pending.name if self._pending is not None else None

    # ------------------------------------------------------------------ public emission

    def emit(self, name: str, *args: Any) -> Status | None:
        """Emit a signal by name, as milter-manager's ``signal_emit``.

        For a ``*-response`` signal this is how a handler that returned PROGRESS answers later:
        ``context.emit("envelope-recipient-response", Status.REJECT)``;
        ``negotiate-response`` also takes milter-manager's ``(option, requests, status)``. For an
        event signal the handlers run and the combined status is returned (no reply is written).
        """
        if name.endswith("-response") and name[: -len("-response")] in STAGES:
            answered = STAGES[name[: -len("-response")]]
            if answered is NEGOTIATE and len(args) == 3:
                option, _requests, status = args
                self._set_requested_option(option)
            else:
                (status,) = args
            self.respond(answered.name, status)
            return None
        stage = STAGES.get(name)
        if stage is not None:
            result = self._run_handlers(stage, args, iter(self._receivers(stage)), S.DEFAULT)
            return None if result is _WAITING else result
        self.signals.signal(name)  # an unknown name raises, listing the valid ones
        self._notify(name, *args)
        return None

    def _set_requested_option(self, option: Option) -> None:
        if not isinstance(option, Option):
            raise TypeError(f"negotiate-response takes an Option, not {option!r}")
        self._option_override = option

    def respond(self, stage: str | None, status: Status | None = None) -> None:
        """Answer the stage whose handler returned PROGRESS: emits ``<stage>-response(status)``.

        ``stage`` may be None for "whatever is pending". Raises :class:`StateError` if no reply is
        owed for that stage. A status the stage does not take (or a reply that does not fit it)
        goes through the exception policy, exactly as if a handler had returned it. Commands that
        arrived meanwhile are processed afterwards.
        """
        pending = self._pending
        if pending is None or (stage is not None and pending.name != stage):
            owed = pending.name if pending else "nothing"
            raise StateError(f"no reply is owed for {stage!r} (a reply is owed for {owed})")
        try:
            coerced = (S.DEFAULT if status is None
                       else handler_status(cast("ClientContext", self), pending.name, status))
            checked = self._check(pending, S.DEFAULT if coerced is S.NOT_CHANGE else coerced)
        except LocalError as exc:
            checked = self._on_handler_error(pending, exc)
        self._respond(pending, checked)
        self._run()

    def _receivers(self, stage: Stage) -> Sequence[Callable[..., Any]]:
        found = self.signals.receivers(stage.name, self)
        if stage.name in self._overridden:
            method = getattr(self, stage.method)

            def call(_context: Any, *args: Any) -> Any:
                return method(*args)

            call.__wrapped__ = method  # type: ignore[attr-defined]  # for milterkit.blocking
            return [*found, call]
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

    # ------------------------------------------------------------------ a stage's emission

    def _dispatch(self, stage: Stage, args: tuple[Any, ...]) -> None:
        self.state = self.last_state = stage.state  # every stage state is a command state
        self._pending = stage
        if stage is END_OF_MESSAGE and QUEUE_KEY in self._transaction.shelf:
            try:
                # milterkit.Queued modifications a handler asked for before end-of-message
                apply_queued(cast("ClientContext", self))
            except Exception as exc:
                self._respond(stage, self._on_handler_error(stage, exc))
                return
        receivers = self._receivers(stage)
        if not receivers:
            # Nobody listens: no opinion, which is always valid. Skip the emission machinery.
            self._respond(stage, S.CONTINUE)
            return
        try:
            if len(receivers) == 1 and not (
                self.offload_hook is not None
                and runs_in_thread(receivers[0], self.offload_all)
            ):
                # Issue 15's fast path: one receiver (the usual case) that runs on the loop is
                # called directly, and "no opinion" or CONTINUE, valid at every stage, go
                # straight to the reply. Anything else takes the general path with the result
                # already in hand; a handler for a thread always takes the general path.
                result = receivers[0](self, *args)
                if result is None:
                    status = S.DEFAULT
                elif result is S.CONTINUE:
                    status = S.CONTINUE
                else:
                    status = self._run_handlers(stage, args, iter((_returning(result),)),
                                                S.DEFAULT)
                    if status is _WAITING:
                        return
                    status = self._check(stage, status)
            else:
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
        offload = self.offload_hook
        for receiver in receivers:
            if offload is not None and runs_in_thread(receiver, self.offload_all):
                # The runtime runs it in a thread; waited for like a coroutine handler.
                result = offload(receiver, (self, *args))
            else:
                result = receiver(self, *args)
            if result is None:
                continue
            if not isinstance(result, Status):
                if inspect.isawaitable(result):
                    self._await(stage, args, receivers, status, result)
                    return _WAITING
                result = handler_status(cast("ClientContext", self), stage.name, result)
            if result is S.NOT_CHANGE:
                continue
            status = result
            if status not in NEXT_HANDLER_RUNS:
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
                    merged = handler_status(cast("ClientContext", self), stage.name, result)
                    if merged is S.NOT_CHANGE:
                        merged = status
                if merged in NEXT_HANDLER_RUNS:
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
        if status in NO_VERDICT:
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
        elif status in REPLY_CLASS and self._reply is not None:
            wanted = REPLY_CLASS[status]
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
        if stage is NEGOTIATE:
            return self._negotiate_error(policy, exc)
        log.error("[%s] handler of %r raised; answering %s", self.tag, stage.name, policy.name,
                  exc_info=exc)
        self._notify("error", exc)
        if self._pending is not stage:
            return policy  # the stage was answered already; leave the next stage's state alone
        self._reply = None
        if policy in REPLY_CLASS and self.exception_reply:
            if self.exception_reply[0] == REPLY_CLASS[policy]:
                self._reply = self.exception_reply
        if stage is END_OF_MESSAGE:
            self._transaction.discard_changes()
        return policy

    def _negotiate_error(self, policy: Status, exc: Exception) -> Status:
        # No verdict can be sent at negotiate: a failing policy closes without an ``O`` reply
        # (the MTA applies its default action, as after any refused negotiation); a passing one
        # negotiates with the defaults, whatever the handler changed before it raised.
        self._option_override = None
        if policy in REPLY_CLASS:
            log.error("[%s] handler of 'negotiate' raised; policy %s: closing without a "
                      "negotiate reply", self.tag, policy.name, exc_info=exc)
            self._notify("error", exc)
            return policy
        log.error("[%s] handler of 'negotiate' raised; policy %s: negotiating with the "
                  "defaults", self.tag, policy.name, exc_info=exc)
        self._notify("error", exc)
        return S.CONTINUE

    # ------------------------------------------------------------------ responses

    def _respond(self, stage: Stage, status: Status) -> None:
        self._pending = None
        if stage is NEGOTIATE:
            option = self._option_override
            for receiver in self.signals.receivers(stage.response, self):
                try:
                    receiver(self, option, self.macros_requests, status)
                except Exception:
                    log.exception("[%s] handler of %r raised", self.tag, stage.response)
            self._respond_negotiate(status, option)
            return
        if status is S.DEFAULT or status is S.NOT_CHANGE:
            # Response handlers see what goes on the wire: "no opinion" is a CONTINUE.
            status = S.CONTINUE
        elif stage.name in self._no_reply_stages and status is not S.NO_REPLY:
            # libmilter's rule: a milter that asked not to reply here gets no verdict through,
            # whether the MTA knows the no-reply step or we emulate it with a 'c'.
            if status is not S.CONTINUE:
                log.warning("[%s] %s at %s, where the milter asked not to reply: sent as "
                            "NO_REPLY", self.tag, status.name, stage.name)
            status = S.NO_REPLY
        for receiver in self.signals.receivers(stage.response, self):
            try:
                receiver(self, status)
            except Exception:
                log.exception("[%s] handler of %r raised", self.tag, stage.response)
        self.status = status
        self.state = stage.replied  # a *_REPLIED state: last_state stays as it is
        if stage is END_OF_MESSAGE:
            self._respond_end_of_message(status)
            return
        if status in MESSAGE_VERDICTS and stage.name in _MESSAGE_STAGES:
            self._transaction.verdict_given = True
        reply, self._reply = self._reply, None
        if stage.name not in self._silent:
            self._write(verdict_packet(status, reply))

    def _respond_end_of_message(self, status: Status) -> None:
        transaction = self._transaction
        replies = transaction.wire_replies()
        parts = [reply.to_bytes() for reply in replies]
        # All body chunks go last and together: Postfix treats the body as complete once
        # another request follows a 'b' (wire_replies keeps that order).
        parts.append(verdict_packet(status, self._reply))
        self._write(b"".join(parts))
        result = transaction.result
        result.status = status
        result.reply = self._reply
        result.modifications = [*transaction.modifications, *transaction.body_chunks]
        result.quarantine_reason = transaction.quarantine_reason
        result.finished = time.monotonic()
        self.messages += 1
        self._last_result = result
        if self.signals.has_receivers("message-processed"):
            self._notify("message-processed", result)
        self.reset_message_related_data()

    # ------------------------------------------------------------------ abort

    def _emit_abort(self, state: State) -> None:
        """Emit ``abort(state)``. ABORT is never answered, so its handlers cannot hold the
        session: an awaitable they return runs on, unwaited."""
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


def _returning(result: Any) -> Callable[..., Any]:
    """A handler that returns ``result`` (a handler's result already in hand), on the loop."""
    return on_loop(lambda *_args: result)


def _base_context_class(cls: type) -> type:
    # The class that defines the default do_* handlers (ClientContext), found without an import
    # cycle: the first class in the MRO that is not a subclass override.
    for klass in reversed(cls.__mro__):
        if "do_connect" in vars(klass):
            return klass
    return cls

