"""purepythonmilter's protocol enums that applications use: macro stages and address families."""

from __future__ import annotations

import enum


@enum.unique
class MacroStage(enum.Enum):
    """The stage a macro list applies to, numbered as in the negotiate reply (SMFIM_*).

    purepythonmilter also names the stages Postfix sends but never lets a milter configure
    (HEADER, BODY, UNKNOWN); asking for macros at those is refused here, as Postfix ignores it.
    """

    CONNECT = 0
    HELO = 1
    MAIL_FROM = 2
    RCPT_TO = 3
    DATA = 4
    HEADER = 7
    END_OF_HEADERS = 6
    BODY = 8
    END_OF_MESSAGE = 5
    UNKNOWN = 9


@enum.unique
class AddressFamily(enum.Enum):
    """The family byte of a CONNECT packet."""

    UNKNOWN = b"U"
    UNIX_SOCKET = b"L"
    IPV4 = b"4"
    IPV6 = b"6"


#: Largest payload of a packet; a replacement body chunk must be shorter.
MAX_DATA_SIZE = 65536
