"""Numbers of the milter wire protocol (version 6), as libmilter's mfdef.h defines them."""

from __future__ import annotations

import enum

#: Largest body chunk an MTA sends and the size ``replace_body`` splits at.
CHUNK_SIZE = 65535
#: libmilter's limit on a packet's payload (length minus the command byte).
STRICT_MAX_PAYLOAD = 65535
#: milterkit's default limit: room for Postfix's 100 KiB headers and MDS_1M peers.
DEFAULT_MAX_PAYLOAD = 1024 * 1024 - 1
#: The newest protocol version; we answer ``min(PROTOCOL_VERSION, offered)``.
PROTOCOL_VERSION = 6
#: libmilter's caps on a reply text.
MAX_REPLY_LINES = 32
MAX_REPLY_LINE_LENGTH = 980


class ActionFlag(enum.IntFlag):
    """What the milter may do at end-of-message (SMFIF_*)."""

    NONE = 0
    ADD_HEADERS = 0x001
    CHANGE_BODY = 0x002
    ADD_RECIPIENT = 0x004
    DELETE_RECIPIENT = 0x008
    CHANGE_HEADERS = 0x010
    QUARANTINE = 0x020
    CHANGE_FROM = 0x040
    ADD_RECIPIENT_WITH_PARAMETERS = 0x080
    SET_SYMBOL_LIST = 0x100

    V1 = 0x0F
    V2 = 0x3F
    ALL = 0x1FF


class ProtocolFlag(enum.IntFlag):
    """Which steps the MTA sends and which need a reply (SMFIP_*)."""

    NONE = 0
    NO_CONNECT = 0x00000001
    NO_HELO = 0x00000002
    NO_ENVELOPE_FROM = 0x00000004
    NO_ENVELOPE_RECIPIENT = 0x00000008
    NO_BODY = 0x00000010
    NO_HEADERS = 0x00000020
    NO_END_OF_HEADER = 0x00000040
    NO_REPLY_HEADER = 0x00000080
    NO_UNKNOWN = 0x00000100
    NO_DATA = 0x00000200
    SKIP = 0x00000400
    ENVELOPE_RECIPIENT_REJECTED = 0x00000800
    NO_REPLY_CONNECT = 0x00001000
    NO_REPLY_HELO = 0x00002000
    NO_REPLY_ENVELOPE_FROM = 0x00004000
    NO_REPLY_ENVELOPE_RECIPIENT = 0x00008000
    NO_REPLY_DATA = 0x00010000
    NO_REPLY_UNKNOWN = 0x00020000
    NO_REPLY_END_OF_HEADER = 0x00040000
    NO_REPLY_BODY = 0x00080000
    HEADER_LEADING_SPACE = 0x00100000
    MDS_256K = 0x10000000
    MDS_1M = 0x20000000
    RESERVED = 0x40000000
    TEST = 0x80000000

    NO_EVENT_MASK = 0x0000037F
    NO_REPLY_MASK = 0x000FF080
    V1 = 0x3F
    V2 = 0x7F
    ALL = 0x1FFFFF
    INTERNAL = 0x70000000


class MacroStage(enum.IntEnum):
    """Stage numbers of the macro lists in a negotiate reply (SMFIM_*). EOM (5) precedes EOH (6)."""

    CONNECT = 0
    HELO = 1
    ENVELOPE_FROM = 2
    ENVELOPE_RECIPIENT = 3
    DATA = 4
    END_OF_MESSAGE = 5
    END_OF_HEADER = 6

