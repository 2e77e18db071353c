"""The protocol's facts as data, for both sides: one row per MTA command, one per modification.

Everything that says how a command behaves on the wire lives here and only here: its byte, its
command class, the signal a milter hears, the step flags that let the milter opt out of it or out
of answering it, the lowest protocol version that has it, and which macro list comes with it. The
milter side (:class:`~milterkit.ClientContext`), the MTA side
(:class:`~milterkit.testing.ServerContext`), the raw MTA driver of the tests and ``test-server``'s
macro options all read these rows, so a fact cannot disagree with itself. (The model is h11's
``_state.py``: the rules in one file that does not know which side it plays.)
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType

from . import commands as cmd
from . import replies as rp
from .constants import ActionFlag, MacroStage
from .constants import ProtocolFlag as P


@dataclass(frozen=True, slots=True)
class CommandStep:
    """One MTA command kind and everything the protocol says about it."""

    #: The command byte (``b"M"``).
    code: bytes
    #: The class :func:`~milterkit.protocol.decode_command` returns for it.
    command: type[cmd.AnyCommand]
    #: The signal a milter hears (``"envelope-from"``); None for commands that are not events
    #: of their own (``D``, ``Q``, ``K``).
    signal: str | None
    #: The step that asks the MTA not to send this command (``NO_ENVELOPE_FROM``).
    no_event: P
    #: The step that tells the MTA not to wait for a reply (``NO_REPLY_ENVELOPE_FROM``).
    no_reply: P
    #: Whether the MTA waits for a reply at all (never for ``D``, ``A``, ``Q``, ``K``).
    answered: bool
    #: The lowest negotiated protocol version that has the command (``U`` 3, ``T`` 4).
    min_version: int
    #: The command whose macro values the MTA sends before this one (headers come with the
    #: end-of-header list, body chunks with the end-of-message list); None: no macros.
    macros_from: bytes | None
    #: The stage number of the command's own macro list in a negotiate reply (SMFIM_*).
    macro_stage: MacroStage | None
    #: Whether the command is an SMTP command rather than message content: the MTA sends its
    #: macros even when the milter opted out of the event.
    smtp_level: bool

    @property
    def label(self) -> str:
        """The name error messages and traces use (``MAIL``)."""
        return self.command.label


def _row(
    command: type[cmd.AnyCommand], signal: str | None, no_event: P = P.NONE,
    no_reply: P = P.NONE, *, answered: bool = True, min_version: int = 2,
    macros_from: bytes | None = None, macro_stage: MacroStage | None = None,
    smtp_level: bool = False,
) -> CommandStep:
    return CommandStep(command.code, command, signal, no_event, no_reply, answered, min_version,
                       macros_from, macro_stage, smtp_level)


M = MacroStage
#: Every MTA command, in the order of a session.
STEPS: tuple[CommandStep, ...] = (
    _row(cmd.Negotiate, "negotiate"),
    _row(cmd.DefineMacro, None, answered=False),
    _row(cmd.Connect, "connect", P.NO_CONNECT, P.NO_REPLY_CONNECT, macros_from=b"C",
         macro_stage=M.CONNECT, smtp_level=True),
    _row(cmd.Helo, "helo", P.NO_HELO, P.NO_REPLY_HELO, macros_from=b"H", macro_stage=M.HELO,
         smtp_level=True),
    _row(cmd.Mail, "envelope-from", P.NO_ENVELOPE_FROM, P.NO_REPLY_ENVELOPE_FROM,
         macros_from=b"M", macro_stage=M.ENVELOPE_FROM, smtp_level=True),
    _row(cmd.Rcpt, "envelope-recipient", P.NO_ENVELOPE_RECIPIENT, P.NO_REPLY_ENVELOPE_RECIPIENT,
         macros_from=b"R", macro_stage=M.ENVELOPE_RECIPIENT, smtp_level=True),
    _row(cmd.Data, "data", P.NO_DATA, P.NO_REPLY_DATA, min_version=4, macros_from=b"T",
         macro_stage=M.DATA, smtp_level=True),
    _row(cmd.Unknown, "unknown", P.NO_UNKNOWN, P.NO_REPLY_UNKNOWN, min_version=3,
         macros_from=b"U", smtp_level=True),
    _row(cmd.Header, "header", P.NO_HEADERS, P.NO_REPLY_HEADER, macros_from=b"N"),
    _row(cmd.EndOfHeader, "end-of-header", P.NO_END_OF_HEADER, P.NO_REPLY_END_OF_HEADER,
         macros_from=b"N", macro_stage=M.END_OF_HEADER),
    _row(cmd.Body, "body", P.NO_BODY, P.NO_REPLY_BODY, macros_from=b"E"),
    _row(cmd.EndOfMessage, "end-of-message", macros_from=b"E", macro_stage=M.END_OF_MESSAGE),
    _row(cmd.Abort, "abort", answered=False),
    _row(cmd.Quit, None, answered=False),
    _row(cmd.QuitNewConnection, None, answered=False),
)
del M

#: Rows by command byte.
STEP_OF_CODE: Mapping[bytes, CommandStep] = MappingProxyType({s.code: s for s in STEPS})
#: Rows by command class.
STEP_OF_COMMAND: Mapping[type, CommandStep] = MappingProxyType({s.command: s for s in STEPS})
#: Rows of the commands that are signals, by signal name.
STEP_OF_SIGNAL: Mapping[str, CommandStep] = MappingProxyType(
    {s.signal: s for s in STEPS if s.signal is not None}
)
#: Command byte of a macro list, by its SMFIM stage number.
CODE_OF_MACRO_STAGE: Mapping[MacroStage, bytes] = MappingProxyType(
    {s.macro_stage: s.code for s in STEPS if s.macro_stage is not None}
)
#: Steps whose events the milter can ask the MTA not to send.
EVENT_STEPS: tuple[CommandStep, ...] = tuple(s for s in STEPS if s.no_event)

#: The action each end-of-message modification needs negotiated (SMFIF_*).
ACTION_OF_REPLY: Mapping[type, ActionFlag] = MappingProxyType({
    rp.AddHeader: ActionFlag.ADD_HEADERS,
    rp.InsertHeader: ActionFlag.ADD_HEADERS,
    rp.ChangeHeader: ActionFlag.CHANGE_HEADERS,
    rp.ReplaceBody: ActionFlag.CHANGE_BODY,
    rp.AddRecipient: ActionFlag.ADD_RECIPIENT,
    rp.AddRecipientWithParameters: ActionFlag.ADD_RECIPIENT_WITH_PARAMETERS,
    rp.DeleteRecipient: ActionFlag.DELETE_RECIPIENT,
    rp.ChangeFrom: ActionFlag.CHANGE_FROM,
    rp.Quarantine: ActionFlag.QUARANTINE,
})


def command_label(code: bytes) -> str:
    """The name of a command byte for messages (``MAIL``), or its repr if it is none."""
    step = STEP_OF_CODE.get(code)
    return step.label if step is not None else repr(code)
