"""What a ``Connect`` command says about the SMTP client, and the ESMTP argument mapping."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

#: ESMTP arguments of MAIL FROM / RCPT TO: keyword -> value (None for a bare keyword).
EsmtpArgsType = dict[str, "str | None"]


class ConnectionInfoArgs:
    """Base class of the four kinds of connection information."""

    __slots__ = ()


@dataclass(frozen=True, slots=True, kw_only=True)
class ConnectionInfoArgsUnixSocket(ConnectionInfoArgs):
    """The SMTP client came over a unix socket at ``path``."""

    path: str


@dataclass(frozen=True, slots=True, kw_only=True)
class ConnectionInfoArgsIPv4(ConnectionInfoArgs):
    """An IPv4 client: the MTA's name for it, its address and its source port."""

    hostname: str
    addr: ipaddress.IPv4Address
    port: int


@dataclass(frozen=True, slots=True, kw_only=True)
class ConnectionInfoArgsIPv6(ConnectionInfoArgs):
    """An IPv6 client: the MTA's name for it, its address and its source port."""

    hostname: str
    addr: ipaddress.IPv6Address
    port: int


@dataclass(frozen=True, slots=True, kw_only=True)
class ConnectionInfoUnknown(ConnectionInfoArgs):
    """The MTA could not tell the client's address (Postfix logs ``unknown[unknown]``)."""

    description: str
