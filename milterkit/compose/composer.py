"""``Composer``: several filters in one milter, composed as milter-manager composes milters.

Install it like any filter: ``Composer(specs).setup(client)`` (or pass the composer itself as
the ``setup`` function). It runs every filter's ``setup`` on its own
:class:`~milterkit.compose.host.FilterHost`, then connects itself to every signal of the
client's contexts. Per MTA connection there is one :class:`~milterkit.ClientContext`; each
filter sees it through its own :class:`~milterkit.compose.view.FilterView`.

Negotiation is the union of the filters' needs: the actions any filter wants, the events any
filter (or one of its conditions) handles, the macros any filter requests. No-reply steps are
never requested (every filter's verdict counts, so the MTA must wait for it).
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import Iterable
from typing import Any
from weakref import WeakKeyDictionary

from ..blocking import on_loop
from ..context import ClientContext
from ..macros import MacrosRequests
from ..protocol.constants import ActionFlag, MacroStage, ProtocolFlag
from ..protocol.negotiation import Option, effective_offer
from ..status import Status
from .host import FilterHost
from .member import Filter, Member, make_member
from .ranking import EVENT_FLAGS, STAGE_NAMES
from .spec import FilterSpec
from .stage import ComposedConnection
from .unit import FilterLoadError

log = logging.getLogger("milterkit.compose")
P = ProtocolFlag
S = Status

#: Notifications passed on to every filter that is attached to the connection.
_NOTIFICATIONS = ("define-macro", "timeout", "error")


class Composer:
    """Several filters composed into one milter (see :mod:`milterkit.compose`)."""

    def __init__(self, specs: Iterable[FilterSpec]) -> None:
        self.specs = list(specs)
        seen: set[str] = set()
        for spec in self.specs:
            if spec.label in seen:
                raise FilterLoadError(f"two filters are called {spec.label!r}; give one a "
                                      "name of its own")
            seen.add(spec.label)
        #: The filters, in order, once :meth:`setup` has run.
        self.filters: list[Filter] = []
        self._connections: WeakKeyDictionary[ClientContext, ComposedConnection] = (
            WeakKeyDictionary())

    def __call__(self, client: Any) -> None:
        self.setup(client)

    def setup(self, client: Any) -> None:
        """Set every filter up on its own host and connect the composer to ``client``."""
        if self.filters:
            raise RuntimeError("a Composer is set up on one client only")
        for spec in self.specs:
            host = FilterHost(spec.label, client, spec.unit.check_options(spec.options))
            try:
                spec.unit.setup(host)
            except FilterLoadError:
                raise
            except Exception as exc:
                raise FilterLoadError(f"filter {spec.label!r}: its setup raised "
                                      f"{type(exc).__name__}: {exc}") from exc
            self.filters.append(Filter(spec, host))
        # The composer's own handlers drive the filters on the loop; under threads=N the
        # filters' plain def handlers go to the pool (milterkit.compose.runs).
        client.connect("negotiate", on_loop(self._on_negotiate))
        for stage in STAGE_NAMES:
            client.connect(stage, on_loop(self._stage_handler(stage)))
        client.connect("abort", self._on_abort)
        client.connect("reset", self._on_reset)
        client.connect("finished", self._on_finished)
        client.connect("message-processed", self._on_message_processed)
        for name in _NOTIFICATIONS:
            # Only when a filter listens: define-macro comes before nearly every command.
            if any(flt.host.signals.has_receivers(name) for flt in self.filters):
                client.connect(name, self._notifier(name))
        log.info("composed %d filter(s): %s", len(self.filters), ", ".join(
            f.name + (" (evaluation)" if f.spec.evaluation else "") for f in self.filters))

    def connection(self, context: ClientContext) -> ComposedConnection:
        """The composition's state for ``context`` (made on first use)."""
        found = self._connections.get(context)
        if found is None:
            members = [make_member(flt, context) for flt in self.filters]
            found = self._connections[context] = ComposedConnection(context, members)
        return found

    # -------------------------------------------------------------- negotiation

    def _on_negotiate(self, context: ClientContext, option: Option,
                      requests: MacrosRequests) -> Status | None:
        assert context.offer is not None
        offered = effective_offer(context.offer)
        connection = self.connection(context)
        actions = ActionFlag.NONE
        needed: set[str] = set()
        extra = P.NONE
        condition_macros = MacrosRequests()
        for member in connection.members:
            mine = self._negotiate_member(context, member, offered)
            if mine is None:
                continue
            member_option, member_requests = mine
            actions |= member_option.actions
            extra |= member_option.protocol & P.HEADER_LEADING_SPACE
            unwanted = set()
            for stage, flag in EVENT_FLAGS.items():
                if flag is not None and member_option.protocol & flag:
                    unwanted.add(stage)
                elif member.wants(stage):
                    needed.add(stage)
            member.unwanted = frozenset(unwanted)
            for condition in member.filter.spec.conditions:
                needed.update(condition.stoppers())
                condition_macros.merge({MacroStage(k): list(v)
                                        for k, v in condition.macros.items()})
            requests.merge(member_requests)
        for macro_stage, names in condition_macros.items():
            if macro_stage in requests:  # a request replaces the MTA's list: keep theirs
                requests.merge({macro_stage: names})
        protocol = offered.protocol & (P.SKIP | extra)
        for stage, flag in EVENT_FLAGS.items():
            if flag is not None and stage not in needed:
                protocol |= flag & offered.protocol
        option.actions = ActionFlag(actions & offered.actions & ~ActionFlag.SET_SYMBOL_LIST)
        option.protocol = ProtocolFlag(protocol)
        log.debug("[%s] composed negotiation: actions %r, events %s", context.tag,
                  option.actions, ", ".join(s for s in STAGE_NAMES if s in needed) or "none")
        return None

    def _negotiate_member(
        self, context: ClientContext, member: Member, offered: Option,
    ) -> tuple[Option, MacrosRequests] | None:
        """One filter's needs (after its own negotiate handlers); None if it refused."""
        host: FilterHost = member.filter.host
        default = self._default_option(member, offered)
        member_option = default.copy()
        member_requests = MacrosRequests()
        for stage, names in (host.context_options.get("macro_requests") or {}).items():
            member_requests.set_symbols(stage, *names)
        member_requests.merge(member.view.requested_macros)
        status = S.DEFAULT
        for receiver in member.view.signals.receivers("negotiate", member.view):
            try:
                result = receiver(member.view, member_option, member_requests)
                if inspect.isawaitable(result):
                    if inspect.iscoroutine(result):
                        result.close()
                    raise TypeError("a negotiate handler cannot be a coroutine in a composition")
            except Exception as exc:
                log.error("[%s] filter %s: its negotiate handler raised (%s); it negotiates "
                          "its defaults", context.tag, member.name, exc)
                return default, member_requests
            if result is not None and result is not S.NOT_CHANGE:
                status = S(result)
                if status not in (S.DEFAULT, S.CONTINUE, S.ALL_OPTIONS):
                    break
        if status is S.ALL_OPTIONS:
            member_option = default
        elif status not in (S.DEFAULT, S.CONTINUE):
            log.info("[%s] filter %s answered %s at negotiation: detached for the connection",
                     context.tag, member.name, status.nick)
            member.connection_detached = True
            return None
        return member_option, member_requests

    def _default_option(self, member: Member, offered: Option) -> Option:
        options = member.filter.host.context_options
        actions = options.get("actions")
        protocol = options.get("protocol")
        if protocol is None:
            protocol = P.NONE
            for stage, flag in EVENT_FLAGS.items():
                if flag is not None and not member.view.signals.has_receivers(stage):
                    protocol |= flag
        return Option(offered.version, ActionFlag(offered.actions if actions is None else actions),
                      ProtocolFlag(protocol))

    # -------------------------------------------------------------- events

    def _stage_handler(self, stage: str) -> Any:
        def handler(context: ClientContext, *args: Any) -> Status:
            return self.connection(context).start(stage, args)

        handler.__qualname__ = f"Composer.{stage.replace('-', '_')}"
        return handler

    def _attached(self, context: ClientContext) -> list[Member]:
        return [m for m in self.connection(context).members if not m.connection_detached]

    def _tell(self, context: ClientContext, member: Member, name: str, *args: Any) -> None:
        view = member.view
        for receiver in view.signals.receivers(name, view):
            try:
                result = receiver(view, *args)
                if result is not None and inspect.isawaitable(result):
                    hook = context.await_hook
                    if hook is None:
                        if inspect.iscoroutine(result):
                            result.close()
                        continue
                    hook(result, self._detached_done(context, member, name))
            except Exception:
                log.exception("[%s] filter %s: handler of %r raised", context.tag,
                              member.name, name)

    @staticmethod
    def _detached_done(context: ClientContext, member: Member, name: str) -> Any:
        def done(result: Any, error: BaseException | None) -> None:
            if error is not None:
                log.error("[%s] filter %s: async handler of %r raised: %s", context.tag,
                          member.name, name, error)

        return done

    def _notifier(self, name: str) -> Any:
        def handler(context: ClientContext, *args: Any) -> None:
            for member in self._attached(context):
                self._tell(context, member, name, *args)

        return handler

    def _on_abort(self, context: ClientContext, state: Any) -> None:
        connection = self.connection(context)
        for member in self._attached(context):
            self._tell(context, member, "abort", state)
        connection.end_message()

    def _on_message_processed(self, context: ClientContext, result: Any) -> None:
        for member in self._attached(context):
            self._tell(context, member, "message-processed", result)
        self.connection(context).end_message()  # no ABORT need follow end-of-message

    def _on_reset(self, context: ClientContext) -> None:
        connection = self.connection(context)
        connection.end_message()
        for member in connection.members:
            self._tell(context, member, "reset")
            member.reset_connection()

    def _on_finished(self, context: ClientContext) -> None:
        connection = self.connection(context)
        connection.end_message()
        for member in self._attached(context):
            self._tell(context, member, "finished")
        summary = connection.summary()
        log.info("[%s] filter verdicts: %s", context.tag, summary)
        context.summary_parts.append(f"filters: {summary}")
