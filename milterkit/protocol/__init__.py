"""The sans-I/O milter protocol: framing, commands, replies and negotiation.

No sockets, no asyncio, no signals, no logging: bytes in, typed objects out, and back.
"""

from .commands import (
    Abort,
    AnyCommand,
    Body,
    Connect,
    Data,
    DefineMacro,
    EndOfHeader,
    EndOfMessage,
    Header,
    Helo,
    Mail,
    Negotiate,
    Quit,
    QuitNewConnection,
    Rcpt,
    SocketAddress,
    Unknown,
    decode_command,
)
from .constants import (
    CHUNK_SIZE,
    DEFAULT_MAX_PAYLOAD,
    MAX_REPLY_LINE_LENGTH,
    MAX_REPLY_LINES,
    PROTOCOL_VERSION,
    STRICT_MAX_PAYLOAD,
    ActionFlag,
    MacroStage,
    ProtocolFlag,
)
from .errors import (
    EmptyName,
    EmptyPayload,
    FramingError,
    InvalidAddress,
    MalformedPacket,
    MalformedStage,
    MissingNul,
    NegotiationError,
    PacketTooLarge,
    ProtocolError,
    ShortPayload,
    TrailingData,
    TruncatedStream,
    UnexpectedCommand,
    UnknownCommand,
    UnknownFamily,
    ZeroLengthPacket,
)
from .framing import PacketDecoder, encode_packet
from .negotiation import Negotiation, Option, effective_offer, negotiate
from .replies import (
    Accept,
    AddHeader,
    AddRecipient,
    AddRecipientWithParameters,
    AnyReply,
    ChangeFrom,
    ChangeHeader,
    ConnectionFailure,
    Continue,
    DeleteRecipient,
    Discard,
    InsertHeader,
    NegotiateReply,
    Progress,
    Quarantine,
    Reject,
    ReplaceBody,
    ReplyText,
    Shutdown,
    Skip,
    TempFail,
    decode_reply,
)
from .steps import (
    ACTION_OF_REPLY,
    STEP_OF_CODE,
    STEP_OF_COMMAND,
    STEP_OF_SIGNAL,
    STEPS,
    CommandStep,
)
from .text import decode_text, encode_text

__all__ = [
    "ACTION_OF_REPLY", "Abort", "Accept", "ActionFlag", "AddHeader", "AddRecipient",
    "AddRecipientWithParameters", "AnyCommand", "AnyReply", "Body", "CHUNK_SIZE", "ChangeFrom",
    "ChangeHeader", "CommandStep", "Connect", "ConnectionFailure", "Continue",
    "DEFAULT_MAX_PAYLOAD", "Data", "DefineMacro", "DeleteRecipient", "Discard", "EmptyName",
    "EmptyPayload", "EndOfHeader", "EndOfMessage", "FramingError", "Header", "Helo",
    "InsertHeader", "InvalidAddress", "MAX_REPLY_LINES", "MAX_REPLY_LINE_LENGTH", "MacroStage",
    "Mail", "MalformedPacket", "MalformedStage", "MissingNul", "Negotiate", "NegotiateReply",
    "Negotiation", "NegotiationError", "Option", "PROTOCOL_VERSION", "PacketDecoder",
    "PacketTooLarge", "Progress", "ProtocolError", "ProtocolFlag", "Quarantine", "Quit",
    "QuitNewConnection", "Rcpt", "Reject", "ReplaceBody", "ReplyText", "STEPS", "STEP_OF_CODE",
    "STEP_OF_COMMAND", "STEP_OF_SIGNAL", "STRICT_MAX_PAYLOAD", "ShortPayload", "Shutdown", "Skip",
    "SocketAddress", "TempFail", "TrailingData", "TruncatedStream", "UnexpectedCommand", "Unknown",
    "UnknownCommand", "UnknownFamily", "ZeroLengthPacket", "decode_command", "decode_reply",
    "decode_text", "effective_offer", "encode_packet", "encode_text", "negotiate",
]
