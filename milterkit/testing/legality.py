"""Reply legality on the MTA side: every milter reply checked as strictly as the stricter of
Postfix and Sendmail would, so a test fails where a real MTA would refuse the milter.

A reply that is not expected, not negotiated or malformed raises
:class:`~milterkit.testing.MilterProtocolViolation` (a
:class:`~milterkit.RemoteProtocolError`: the milter, the peer, broke the protocol).
"""

from __future__ import annotations

from collections.abc import Callable

from ..protocol import commands as cmd
from ..protocol.constants import ActionFlag
from ..protocol.constants import ProtocolFlag as P
from ..protocol.errors import RemoteProtocolError
from ..protocol.replies import (
    FINAL_REPLIES,
    AnyReply,
    NegotiateReply,
    Progress,
    Quarantine,
    ReplaceBody,
    ReplyText,
    Shutdown,
    Skip,
)
from ..protocol.steps import ACTION_OF_REPLY, CODE_OF_MACRO_STAGE
from ..status import Status
from .profile import Profile
from .results import Exchange, MessageOutcome, SessionResult, status_of

S = Status


class MilterProtocolViolation(RemoteProtocolError):
    """The milter sent something the MTA would refuse (the MTA side's view of a slip)."""


class ReplyChecks:
    """The checks of every reply the milter sends (a mixin of ServerContext)."""

    # Provided by ServerContext.
    profile: Profile
    offer: cmd.Negotiate
    result: SessionResult
    version: int
    actions: ActionFlag
    steps: P
    macro_lists: dict[str, tuple[str, ...]]
    _awaiting: str | None
    _exchange: Exchange | None
    _outcome: MessageOutcome | None
    _body_replaced: bool
    _after_body: bool
    _resume: Callable[[AnyReply | None], None]

    def _violation(self, message: str, reply: AnyReply) -> MilterProtocolViolation:
        return MilterProtocolViolation(
            f"milter sent {type(reply).__name__} ({reply.code!r}) {message}", reply.code
        )

    def _on_reply(self, reply: AnyReply) -> None:
        stage = self._awaiting
        if stage is None:
            raise self._violation("while no reply was expected", reply)
        if self._exchange is not None:
            self._exchange.replies.append(reply)
        eom = stage == "end-of-message"
        if stage == "negotiate":
            if not isinstance(reply, NegotiateReply):
                raise self._violation("in answer to the option negotiation", reply)
            self._resume(reply)
            return
        if isinstance(reply, Progress):
            if not (eom or self.profile.progress_anywhere):
                raise self._violation(f"at {stage}; {self.profile.name} takes it only at "
                                      "end-of-message", reply)
            if self._outcome is not None:
                self._outcome.progress += 1
            return
        if isinstance(reply, Quarantine):
            if not (eom or self.profile.quarantine_anywhere):
                raise self._violation(f"at {stage}; {self.profile.name} takes it only at "
                                      "end-of-message", reply)
            self._need_action(reply)
            if self._outcome is not None:
                self._outcome.quarantine_reason = reply.reason
            return
        if type(reply) in ACTION_OF_REPLY:
            if not eom:
                raise self._violation(f"at {stage}; modifications belong to end-of-message", reply)
            self._need_action(reply)
            if isinstance(reply, ReplaceBody):
                if self._after_body:
                    raise self._violation("after another change that followed a body "
                                          "replacement (Postfix takes the body as complete)", reply)
                self._body_replaced = True
            elif self._body_replaced:
                self._after_body = True
            assert self._outcome is not None
            self._outcome.modifications.append(reply)
            return
        if not isinstance(reply, FINAL_REPLIES):
            raise self._violation(f"at {stage}; no MTA takes it", reply)
        if isinstance(reply, Skip):
            if stage != "body":
                raise self._violation(f"at {stage}; SKIP is portable only for body chunks", reply)
            # Negotiated means offered and requested (Postfix tolerates unoffered steps).
            if not self.steps & self.offer.protocol & P.SKIP:
                raise self._violation("but the SKIP step was not negotiated", reply)
        if isinstance(reply, Shutdown) and not self.profile.takes_shutdown:
            raise self._violation(f"at {stage}; {self.profile.name} takes no shutdown", reply)
        if isinstance(reply, ReplyText):
            check_reply_text(reply)
        if stage in ("connect", "helo") and status_of(reply) is S.DISCARD:
            raise self._violation(f"at {stage}; DISCARD needs a message", reply)
        self._resume(reply)

    def _need_action(self, reply: AnyReply) -> None:
        flag = ACTION_OF_REPLY[type(reply)]
        if not self.actions & flag:
            raise self._violation(f"but the {flag.name} action was not negotiated", reply)

    def _check_negotiation(self, reply: NegotiateReply) -> None:
        self.result.negotiation = reply
        offer = self.offer
        if reply.version > offer.version or reply.version < 2:
            raise self._violation(
                f"with version {reply.version}; the MTA offered {offer.version}", reply
            )
        extra_actions = reply.actions & ~offer.actions
        if extra_actions:
            raise self._violation(f"asking for actions {extra_actions!r} that were not offered",
                                  reply)
        extra_steps = reply.protocol & ~offer.protocol & ~P.INTERNAL
        if extra_steps and self.profile.refuse_extra_steps:
            raise self._violation(f"asking for steps {extra_steps!r} that were not offered",
                                  reply)
        self.version = 4 if reply.version == 5 else reply.version
        self.actions = reply.actions
        self.steps = reply.protocol
        for stage, code in CODE_OF_MACRO_STAGE.items():
            names = reply.macros.get(stage)
            if names and names.strip():
                self.macro_lists[code.decode("ascii")] = tuple(names.split())



def check_reply_text(reply: ReplyText) -> None:
    """Check a ``y`` text as Postfix does: every line ``[45]dd`` then ``-`` (not last) or space
    (last), an enhanced code of the same class, no bare CR or LF."""
    lines = reply.text.split("\r\n")
    first = lines[0][:3]
    for number, line in enumerate(lines, 1):
        last = number == len(lines)
        code = line[:3]
        if len(code) != 3 or code[0] not in "45" or not code.isdigit() or code != first:
            raise MilterProtocolViolation(
                f"reply text line {number} {line!r} does not start with the reply code "
                f"{first!r} ([45]dd)", b"y"
            )
        separator = line[3:4]
        if separator != (" " if last else "-") and not (last and separator == ""):
            raise MilterProtocolViolation(
                f"reply text line {number} {line!r}: the code must be followed by "
                f"{'a space' if last else '-'}", b"y"
            )
        if "\r" in line or "\n" in line:
            raise MilterProtocolViolation(f"reply text line {number} holds a bare CR or LF", b"y")
        xcode = line[4:].split(" ", 1)[0]
        if xcode[:1].isdigit() and "." in xcode and xcode[0] != code[0]:
            raise MilterProtocolViolation(
                f"reply text {line!r}: enhanced code class {xcode[0]} does not match "
                f"{code}", b"y"
            )
