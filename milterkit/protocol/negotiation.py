"""Option negotiation as libmilter does it (engine.c ``st_optionneg``), made explicit.

The MTA offers a version, the actions it allows and the protocol steps it understands. The milter
asks for a subset; :func:`negotiate` turns the two into the ``O`` reply and says which no-reply
steps the milter must emulate by writing ``c`` itself, because the MTA does not know them.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from .commands import Negotiate
from .constants import PROTOCOL_VERSION, ActionFlag, MacroStage, ProtocolFlag
from .errors import RequirementsNotOffered, UnsupportedOffer
from .replies import NegotiateReply

P = ProtocolFlag

#: Steps that only ask the MTA to send less: dropping one the MTA does not know is harmless.
_DROPPABLE = P.NO_EVENT_MASK | P.SKIP


@dataclass(slots=True)
class Option:
    """A version, an action mask and a protocol-step mask: an offer, a request or the result."""

    version: int = PROTOCOL_VERSION
    actions: ActionFlag = ActionFlag.NONE
    protocol: ProtocolFlag = ProtocolFlag.NONE

    def copy(self) -> Option:
        return Option(self.version, self.actions, self.protocol)


@dataclass(frozen=True, slots=True)
class Negotiation:
    """The outcome of a negotiation.

    ``option`` is what was agreed (the reply's version, actions and steps); ``no_reply`` is every
    step the milter will not answer for, and ``emulated_no_reply`` the part of it the MTA did not
    offer, for which the milter writes ``c`` itself.
    """

    reply: NegotiateReply
    option: Option
    offered: Option
    no_reply: ProtocolFlag
    emulated_no_reply: ProtocolFlag
    macro_requests: Mapping[MacroStage, str] = field(default_factory=dict)


def effective_offer(offer: Negotiate) -> Option:
    """The MTA's offer with libmilter's reading of zero masks (version-1 defaults)."""
    actions = offer.actions if offer.actions else ActionFlag.V1
    protocol = offer.protocol if offer.protocol else ProtocolFlag.V1
    return Option(offer.version, ActionFlag(actions), ProtocolFlag(protocol))


def negotiate(
    offer: Negotiate,
    request: Option,
    macro_requests: Mapping[MacroStage, Sequence[str]] | None = None,
) -> Negotiation:
    """Answer ``offer`` with ``request``, as libmilter would.

    - The reply version is ``min(6, offered)``; an offer below version 2 is refused.
    - Requested actions must all be offered, else :class:`RequirementsNotOffered` (the caller closes
      the connection without an ``O`` reply, as libmilter does).
    - No-reply steps the MTA did not offer are left out of the reply and emulated.
    - Event-skipping steps and SKIP that the MTA does not know are dropped; any other requested
      step it does not know (leading space, rejected recipients) is refused.
    - Internal bits (MDS sizes, test mode) are never requested.
    - Macro lists are sent only if the MTA offered SETSYMLIST; an end-of-message list brings an
      end-of-header list along (Sendmail selects EOM macros by the EOH flag).
    """
    if offer.version < 2:
        raise UnsupportedOffer(f"MTA offers protocol version {offer.version}; at least 2 is needed")
    offered = effective_offer(offer)
    version = min(PROTOCOL_VERSION, offered.version, request.version)

    lists: dict[MacroStage, str] = {}
    for stage, names in (macro_requests or {}).items():
        text = names if isinstance(names, str) else " ".join(names)
        if text:
            lists[MacroStage(stage)] = text
    if MacroStage.END_OF_MESSAGE in lists and MacroStage.END_OF_HEADER not in lists:
        lists[MacroStage.END_OF_HEADER] = lists[MacroStage.END_OF_MESSAGE]

    actions = ActionFlag(request.actions)
    if lists and ActionFlag.SET_SYMBOL_LIST in offered.actions:
        actions |= ActionFlag.SET_SYMBOL_LIST
    else:
        lists = {}
    missing = actions & ~offered.actions
    if missing:
        raise RequirementsNotOffered(
            f"milter requires actions {missing!r} the MTA does not offer "
            f"(offered {offered.actions!r})"
        )

    # The MDS sizes and the test bit describe the MTA, not a step to ask for: never request them.
    wanted = ProtocolFlag(request.protocol) & ~(ProtocolFlag.INTERNAL | ProtocolFlag.TEST)
    no_reply = wanted & P.NO_REPLY_MASK
    emulated = no_reply & ~offered.protocol
    steps = wanted & ~emulated
    steps &= ~(_DROPPABLE & ~offered.protocol)
    unknown = steps & ~offered.protocol
    if unknown:
        raise RequirementsNotOffered(
            f"milter requires protocol steps {unknown!r} the MTA does not offer "
            f"(offered {offered.protocol!r})"
        )
    reply = NegotiateReply(version, actions, steps, lists)
    return Negotiation(
        reply=reply,
        option=Option(version, actions, steps),
        offered=offered,
        no_reply=ProtocolFlag(no_reply),
        emulated_no_reply=ProtocolFlag(emulated),
        macro_requests=lists,
    )
