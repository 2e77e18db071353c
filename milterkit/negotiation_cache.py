"""Negotiation computed once per (MTA offer, filter needs), not once per connection (issue 15).

An MTA offers the same version, actions and steps on every connection, and a filter's needs
(its requested actions and steps, the events it handles, its macro lists) rarely change while
it serves, yet the negotiation is a few dozen enum-flag operations: profiled at ~13% of a
one-message connection's CPU. These functions return what :func:`negotiate` and the context's
defaults would compute, from small caches keyed by exactly what those computations read.
Results that callers may change are handed out as copies; errors are never cached.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from .protocol import commands as cmd
from .protocol.constants import ActionFlag, MacroStage
from .protocol.constants import ProtocolFlag as P
from .protocol.negotiation import Negotiation, Option, effective_offer, negotiate
from .stages import EVENT_STAGES, STAGES

__all__ = ["cached_default_option", "cached_effective_offer", "cached_negotiate",
           "no_reply_stages"]

_LIMIT = 256  # distinct keys kept; a cache that fills up starts again (never seen in practice)
_offers: dict[cmd.Negotiate, Option] = {}
_defaults: dict[tuple[object, ...], Option] = {}
_negotiations: dict[tuple[object, ...], Negotiation] = {}
_no_reply: dict[tuple[int, int], tuple[frozenset[str], frozenset[str]]] = {}


def _store(cache: dict, key: object, value: object) -> None:  # type: ignore[type-arg]
    if len(cache) >= _LIMIT:
        cache.clear()
    cache[key] = value


def cached_effective_offer(offer: cmd.Negotiate) -> Option:
    """:func:`~milterkit.protocol.negotiation.effective_offer` (a fresh copy)."""
    found = _offers.get(offer)
    if found is None:
        found = effective_offer(offer)
        _store(_offers, offer, found)
    return found.copy()


def cached_default_option(
    offered: Option, actions: ActionFlag | None, protocol: P | None, handled: Sequence[bool],
) -> Option:
    """The option a context asks for by default (libmilter's ALL_OPTS): the offered actions (or
    ``actions``) without SETSYMLIST, and ``protocol``, or else the no-event step of every event
    stage not ``handled`` (one flag per :data:`~milterkit.stages.EVENT_STAGES`) plus SKIP if
    offered. A fresh copy: negotiate handlers may change it."""
    key = (offered.version, int(offered.actions), int(offered.protocol),
           None if actions is None else int(actions), None if protocol is None else int(protocol),
           tuple(handled))
    found = _defaults.get(key)
    if found is None:
        wanted = offered.actions if actions is None else actions
        wanted &= ~ActionFlag.SET_SYMBOL_LIST
        if protocol is not None:
            steps = protocol
        else:
            steps = P.NONE
            for stage, handles in zip(EVENT_STAGES, handled, strict=True):
                if not handles:
                    steps |= stage.no_event
            steps |= offered.protocol & P.SKIP
        found = Option(offered.version, ActionFlag(wanted), P(steps))
        _store(_defaults, key, found)
    return found.copy()


def cached_negotiate(
    offer: cmd.Negotiate, option: Option,
    macro_requests: Mapping[MacroStage, Sequence[str]] | None,
) -> Negotiation:
    """:func:`~milterkit.protocol.negotiation.negotiate`, cached; it raises as that does."""
    lists = tuple((int(stage), names if isinstance(names, str) else tuple(names))
                  for stage, names in (macro_requests or {}).items())
    key = (offer, option.version, int(option.actions), int(option.protocol), lists)
    found = _negotiations.get(key)
    if found is None:
        found = negotiate(offer, option, macro_requests)
        _store(_negotiations, key, found)
    return found


def no_reply_stages(negotiation: Negotiation) -> tuple[frozenset[str], frozenset[str]]:
    """The stages never answered on the wire (no-reply negotiated with the MTA) and the stages
    the milter asked not to answer (negotiated or emulated), by signal name."""
    key = (int(negotiation.no_reply), int(negotiation.emulated_no_reply))
    found = _no_reply.get(key)
    if found is None:
        silent = negotiation.no_reply & ~negotiation.emulated_no_reply
        found = (frozenset(s.name for s in STAGES.values() if s.no_reply & silent),
                 frozenset(s.name for s in STAGES.values() if s.no_reply & negotiation.no_reply))
        _store(_no_reply, key, found)
    return found
