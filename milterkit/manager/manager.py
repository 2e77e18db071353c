"""``Manager``: a milter manager: child milters and in-process filters composed as one milter.

Per MTA connection, when the MTA negotiates, the manager opens one connection to every child
milter at once and negotiates with each (with the MTA's offer); then the composition answers
the MTA with the union of every member's needs. From there each child is a member of the
composition like an in-process filter (:class:`~milterkit.manager.child.ChildMilter`): it gets
the events it asked for, its verdicts are ranked with the others', its end-of-message changes
applied in order, its reply text kept; its failure is its own fallback.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable, Sequence
from typing import Any

from ..compose.composer import Composer
from ..compose.ranking import REFUSALS
from ..compose.spec import FilterSpec
from ..compose.stage import ComposedConnection, StageRun
from ..compose.unit import FilterLoadError
from ..compose.view import Change
from ..context import ClientContext
from ..macros import MacrosRequests
from ..protocol.constants import ActionFlag, ProtocolFlag
from ..protocol.negotiation import Option, effective_offer
from ..status import Status
from .child import ChildMilter
from .spec import ChildSpec

log = logging.getLogger("milterkit.manager")


class Manager(Composer):
    """Child milters (``children``, in order) and in-process ``filters`` (after them), composed;
    ``order``, when given, names every member in the order to use instead.

    ``verdict_header``, when set, is the name of a header added to every message that is not
    refused, listing each member's verdict (``opendkim=accept; add-header=continue``): what
    ``milterkit test-server`` shows of each child.
    """

    def __init__(self, children: Sequence[ChildSpec], filters: Iterable[FilterSpec] = (), *,
                 verdict_header: str | None = None, order: Sequence[str] | None = None,
                 ) -> None:
        self.children = [ChildMilter(spec) for spec in children]
        self.verdict_header = verdict_header
        specs = [*(child.filter_spec() for child in self.children), *filters]
        if order is not None:
            specs = _ordered(specs, order)
        super().__init__(specs)

    def setup(self, client: Any) -> None:
        """Start the children that have a command, then compose everything on ``client``."""
        for child in self.children:
            child.start()
        client.connect("negotiate", self._open_children)
        super().setup(client)
        # After the composition's own handler, which tells only the attached members: a child
        # detached by a condition or at negotiation is closed too.
        client.connect("finished", self._close_children)
        log.info("managing %d child milter(s): %s", len(self.children), ", ".join(
            f"{c.name} at {c.spec.connection}" for c in self.children) or "none")

    def connection(self, context: ClientContext) -> ComposedConnection:
        found = self._connections.get(context)
        if found is None:
            from ..compose.member import make_member

            members = [make_member(flt, context) for flt in self.filters]
            found = self._connections[context] = ManagedConnection(context, members, self)
        return found

    def _open_children(self, context: ClientContext, option: Option,
                       requests: MacrosRequests) -> Any:
        """Connect to every child and negotiate (concurrently), before the composition's
        negotiation reads what each child asked for."""
        offer = context.offer
        if not self.children or offer is None:
            return None
        if context.await_hook is None:
            log.error("[%s] the manager needs the asyncio runtime to reach its children; "
                      "every child gets its fallback", context.tag)
            for child in self.children:
                child.link(context).fail("no asyncio runtime")
            return None

        async def open_all() -> None:
            links = [child.link(context) for child in self.children]
            await asyncio.gather(*(link.open(offer) for link in links))
            if context.finished:  # the MTA went away meanwhile
                for link in links:
                    link.close()
                return
            for link in links:
                if link.error is not None:
                    log.error("[%s] milter %s: %s; it answers its fallback (%s)", context.tag,
                              link.name, link.error, link.child.spec.fallback.nick)

        return open_all()

    def _close_children(self, context: ClientContext) -> None:
        for child in self.children:
            child.close(context)

    def _on_negotiate(self, context: ClientContext, option: Option,
                      requests: MacrosRequests) -> Status | None:
        result = super()._on_negotiate(context, option, requests)
        if self.verdict_header and context.offer is not None:
            offered = effective_offer(context.offer)
            option.actions |= offered.actions & ActionFlag.ADD_HEADERS
        return result


def _ordered(specs: list[FilterSpec], order: Sequence[str]) -> list[FilterSpec]:
    """``specs`` in the order ``order`` names them (every member exactly once)."""
    by_name = {spec.label: spec for spec in specs}
    unknown = [name for name in order if name not in by_name]
    if unknown:
        raise FilterLoadError(f"order names {unknown[0]!r}, which is no child milter or "
                              f"filter (members: {', '.join(by_name)})")
    missing = [name for name in by_name if name not in order]
    if missing or len(set(order)) != len(order):
        raise FilterLoadError("order must name every child milter and filter exactly once "
                              f"(members: {', '.join(by_name)})")
    return [by_name[name] for name in order]


class ManagedConnection(ComposedConnection):
    """A composed connection that can add the verdict header at end-of-message."""

    def __init__(self, context: ClientContext, members: list[Any], manager: Manager) -> None:
        super().__init__(context, members)
        self.manager = manager

    def _apply_changes(self, run: StageRun, statuses: dict[int, Status]) -> None:
        option = self.context.option
        if option is not None and option.protocol & ProtocolFlag.HEADER_LEADING_SPACE:
            for member in run.called:
                if not self._wants_leading_space(member):
                    member.view.changes[:] = [_spaced(change) for change in member.view.changes]
        super()._apply_changes(run, statuses)

    def _wants_leading_space(self, member: Any) -> bool:
        """Whether this member gives header values with their leading space itself (it asked
        for HEADER_LEADING_SPACE); the others' values get the space the MTA then no longer
        adds."""
        for child in self.manager.children:
            if child.name == member.name:
                reply = child.link(self.context).reply
                return reply is not None and bool(reply.protocol
                                                  & ProtocolFlag.HEADER_LEADING_SPACE)
        protocol = member.filter.host.context_options.get("protocol")
        return protocol is not None and bool(protocol & ProtocolFlag.HEADER_LEADING_SPACE)

    def finish(self, run: StageRun) -> Status:
        final = super().finish(run)
        header = self.manager.verdict_header
        if header and run.stage == "end-of-message" and final not in REFUSALS:
            result = self.context.message_result
            verdicts = getattr(result, "filter_verdicts", None) or {}
            text = "; ".join(f"{name}={verdict}" for name, verdict in verdicts.items())
            option = self.context.option
            if option is not None and option.protocol & ProtocolFlag.HEADER_LEADING_SPACE:
                text = " " + text
            try:
                self.context.add_header(header, text or "none")
            except Exception as exc:
                log.error("[%s] the verdict header cannot be added: %s", self.context.tag, exc)
        return final


def _spaced(change: Change) -> Change:
    """``change`` with a space before its header value (for an MTA that adds none)."""
    args = list(change.args)
    if change.action == "add_header":
        args[1] = " " + args[1]
    elif change.action == "insert_header":
        args[2] = " " + args[2]
    elif change.action == "change_header" and args[2]:
        args[2] = " " + args[2]
    else:
        return change
    return Change(change.action, tuple(args))
