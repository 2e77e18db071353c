"""TCP socket options of an accepted MTA connection (issue 15).

Postfix writes its small milter packets with Nagle's algorithm on: after a packet that needs no
answer (a macro packet before a command, a no-reply event) its next write waits until the
milter's kernel ACKs the first one, and a Linux receiver that has nothing to send delays that
ACK by up to ~40 ms. Every milter, C libmilter's included, then runs at a fraction of what the
MTA could do. Linux's ``TCP_QUICKACK`` sends the pending ACK at once, but the kernel leaves
quick-ACK mode again by itself, so it is re-armed after each read that wrote nothing (a read
that wrote a reply has its ACK carried by that reply): one setsockopt on those reads only,
the cheapest rule that holds (re-arming on every read measured no better behind Postfix, see
docs/performance.rst). ``Client(quickack=False)`` or ``milterkit run --no-quickack`` turn it
off. ``TCP_NODELAY`` is set too, so our own small replies never wait (asyncio and uvloop set
it already; this makes it explicit).
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Callable

__all__ = ["QUICKACK_SUPPORTED", "rearm_quickack", "tune_tcp"]

Setsockopt = Callable[[int, int, int], None]

#: Whether this system has ``TCP_QUICKACK`` (Linux).
QUICKACK_SUPPORTED = hasattr(socket, "TCP_QUICKACK")
_QUICKACK = getattr(socket, "TCP_QUICKACK", 12)
_TCP = socket.IPPROTO_TCP
_INET = (socket.AF_INET, socket.AF_INET6)


def tune_tcp(transport: asyncio.BaseTransport, *, quickack: bool) -> Setsockopt | None:
    """Set ``TCP_NODELAY`` (and ``TCP_QUICKACK`` if ``quickack``) on ``transport``'s socket if
    it is a TCP one; return the setsockopt to re-arm quick ACKs with, or None (a unix socket,
    ``quickack`` false, or no ``TCP_QUICKACK`` on this system)."""
    sock = transport.get_extra_info("socket")
    if sock is None or getattr(sock, "family", None) not in _INET:
        return None
    try:
        sock.setsockopt(_TCP, socket.TCP_NODELAY, 1)
        if not (quickack and QUICKACK_SUPPORTED):
            return None
        sock.setsockopt(_TCP, _QUICKACK, 1)
    except OSError:
        return None  # the peer is already gone: connection_lost follows
    setsockopt: Setsockopt = sock.setsockopt
    return setsockopt


def rearm_quickack(setsockopt: Setsockopt) -> None:
    """Turn quick-ACK mode on again (and ACK what was read, if that is still pending)."""
    try:
        setsockopt(_TCP, _QUICKACK, 1)
    except OSError:
        pass  # closed under us: connection_lost follows
