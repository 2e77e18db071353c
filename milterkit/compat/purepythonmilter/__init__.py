"""purepythonmilter's public API (0.0.1), clean-room on milterkit.

An application written for purepythonmilter imports this package as ``purepythonmilter`` when
it runs under ``milterkit compat purepythonmilter COMMAND``; :data:`SHADOWED` lists the module
names it provides. See the "From purepythonmilter" page of the documentation.
"""

from __future__ import annotations

from .api.application import DEFAULT_RESTRICT_SYMBOLS, ProgrammingError, PurePythonMilter
from .api.models import (
    ConnectionInfoArgs,
    ConnectionInfoArgsIPv4,
    ConnectionInfoArgsIPv6,
    ConnectionInfoArgsUnixSocket,
    ConnectionInfoUnknown,
    EsmtpArgsType,
)
from .protocol.commands import (
    Abort,
    BaseCommand,
    BodyChunk,
    Connect,
    Data,
    EndOfHeaders,
    EndOfMessage,
    Header,
    Helo,
    MailFrom,
    Quit,
    QuitNoClose,
    RcptTo,
    Unknown,
)
from .protocol.definitions import MacroStage
from .protocol.exceptions import ProtocolViolationCommandData
from .protocol.responses import (
    AbstractManipulation,
    AbstractResponse,
    AbstractVerdict,
    Accept,
    AddRecipient,
    AddRecipientWithEsmtpArgs,
    AppendHeader,
    CauseConnectionFail,
    ChangeHeader,
    ChangeMailFrom,
    Continue,
    DiscardMessage,
    InsertHeader,
    Progress,
    Quarantine,
    Reject,
    RejectWithCode,
    RemoveRecipient,
    ReplaceBodyChunk,
    SkipToNextStage,
    TempFailWithCode,
    VerdictOrContinue,
)

#: The version of purepythonmilter whose API this is.
__version__ = "0.0.1"

DEFAULT_LISTENING_TCP_IP = "127.0.0.1"
DEFAULT_LISTENING_TCP_PORT = 9000

_HERE = __name__
#: The module names a purepythonmilter application imports -> the milterkit module providing it
#: (read by ``milterkit compat purepythonmilter``). The layout is purepythonmilter's, so a name
#: under ``purepythonmilter.`` is the same name under this package.
SHADOWED: dict[str, str] = {
    name: _HERE + name.removeprefix("purepythonmilter")
    for name in (
        "purepythonmilter", "purepythonmilter.api", "purepythonmilter.api.application",
        "purepythonmilter.api.models", "purepythonmilter.api.logger",
        "purepythonmilter.protocol", "purepythonmilter.protocol.commands",
        "purepythonmilter.protocol.responses", "purepythonmilter.protocol.definitions",
        "purepythonmilter.protocol.exceptions",
    )
}

__all__ = [
    "DEFAULT_LISTENING_TCP_IP", "DEFAULT_LISTENING_TCP_PORT", "DEFAULT_RESTRICT_SYMBOLS",
    "SHADOWED", "Abort", "AbstractManipulation", "AbstractResponse", "AbstractVerdict", "Accept",
    "AddRecipient", "AddRecipientWithEsmtpArgs", "AppendHeader", "BaseCommand", "BodyChunk",
    "CauseConnectionFail", "ChangeHeader", "ChangeMailFrom", "Connect", "ConnectionInfoArgs",
    "ConnectionInfoArgsIPv4", "ConnectionInfoArgsIPv6", "ConnectionInfoArgsUnixSocket",
    "ConnectionInfoUnknown", "Continue", "Data", "DiscardMessage", "EndOfHeaders",
    "EndOfMessage", "EsmtpArgsType", "Header", "Helo", "InsertHeader", "MacroStage", "MailFrom",
    "ProgrammingError", "Progress", "ProtocolViolationCommandData", "PurePythonMilter",
    "Quarantine", "Quit", "QuitNoClose", "RcptTo", "Reject", "RejectWithCode", "RemoveRecipient",
    "ReplaceBodyChunk", "SkipToNextStage", "TempFailWithCode", "Unknown", "VerdictOrContinue",
    "__version__",
]
