"""``Milter.utils``: the address and header helpers pymilter applications import.

Written from pymilter's documented behaviour (its doctests are the specification): envelope
address splitting, a tolerant ``parseaddr``, RFC 2047 header decoding and IP list matching.
"""

from __future__ import annotations

import email.errors
import email.header
import email.utils
import ipaddress
import re
import socket
from collections.abc import Iterable

PAT_IP4 = r"\.".join([r"(?:\d+)"] * 4)
#: A dotted-quad IPv4 address, whole.
ip4re = re.compile(PAT_IP4 + "$")
#: An IPv6 address, whole (any form ipaddress accepts is matched by :func:`is_ip6`).
ip6re = re.compile(r"(?:[0-9a-fA-F]{0,4}:){2,7}(?:[0-9a-fA-F]{0,4}|" + PAT_IP4 + ")$")
dnsre = re.compile(r"^[a-z][-a-z\d.]+$", re.IGNORECASE)


def addr2bin(s: str) -> int:
    """An IPv4 or IPv6 address as an integer."""
    return int(ipaddress.ip_address(s))


def cidr(i: int, n: int, mask: int = 0xFFFFFFFF) -> int:
    """The top ``n`` bits of ``i`` within ``mask``'s width."""
    return ~(mask >> n) & mask & i


def _networks(entry: str) -> list[ipaddress.IPv4Network | ipaddress.IPv6Network]:
    host, _, bits = entry.partition("/")
    if "*" in host:
        parts = host.split(".")
        fixed = [p for p in parts if p != "*"]
        prefix = 8 * len(fixed)
        address = ".".join(fixed + ["0"] * (4 - len(fixed)))
        return [ipaddress.ip_network(f"{address}/{prefix}", strict=False)]
    try:
        ipaddress.ip_address(host)
        addresses = [host]
    except ValueError:
        try:
            addresses = sorted({str(info[4][0]) for info in socket.getaddrinfo(host, None)})
        except OSError:
            return []
    found = []
    for address in addresses:
        width = 32 if ":" not in address else 128
        found.append(ipaddress.ip_network(f"{address}/{bits or width}", strict=False))
    return found


def iniplist(ipaddr: str, iplist: Iterable[str]) -> bool:
    """Whether ``ipaddr`` is in ``iplist``: addresses, CIDR blocks, ``192.168.0.*`` globs or
    host names (resolved). A malformed ``ipaddr`` raises ValueError."""
    address = ipaddress.ip_address(ipaddr)
    for entry in iplist:
        for network in _networks(entry):
            if address.version == network.version and address in network:
                return True
    return False


def parseaddr(t: str) -> tuple[str, str]:
    """``email.utils.parseaddr`` that keeps odd display names and drops source routes."""
    name, address = email.utils.parseaddr(t)
    stripped = t.rstrip()
    if "<" in stripped and stripped.endswith(">"):
        start = stripped.rindex("<")
        inside = stripped[start + 1 : -1].strip()
        if inside.startswith("@") and ":" in inside:
            inside = inside.split(":", 1)[1]  # a source route: keep the mailbox
        outside = stripped[:start].strip()
        if len(outside) >= 2 and outside.startswith('"') and outside.endswith('"'):
            outside = outside[1:-1]
        outside = re.sub(r"\(\((.*)\)\)", r"(\1)", outside)
        return outside, inside
    return name, address


def parse_addr(t: str) -> list[str]:
    """An envelope address as ``[user, domain]`` (``[user]`` without a domain); angle brackets,
    a source route and quotes around the local part are removed."""
    if t.startswith("<") and t.endswith(">"):
        t = t[1:-1]
    if t.startswith('"'):
        if t.endswith('"'):
            return [t[1:-1]]
        end = t.find('"@', 1)
        if end > 0:
            return [t[1:end], t[end + 2 :]]
    if t.startswith("@") and ":" in t:
        t = t.split(":", 1)[1]
    user, at, domain = t.rpartition("@")
    if not at:
        return [t]
    return [user, domain]


def decode(s: str, convert_eols: str | None = None) -> bytes:
    """Base64-decode ``s`` even when its padding is missing."""
    import base64

    data = s.encode("ascii", "ignore") if isinstance(s, str) else s
    data += b"=" * (-len(data.rstrip(b"\r\n")) % 4)
    decoded = base64.b64decode(data.strip())
    if convert_eols:
        decoded = decoded.replace(b"\r\n", convert_eols.encode())
    return decoded


def parse_header(val: str) -> str:
    """A header value with RFC 2047 encoded words decoded (undecodable parts kept as is)."""
    try:
        parts = email.header.decode_header(val)
    except email.errors.HeaderParseError:
        return val
    out = []
    for chunk, charset in parts:
        if isinstance(chunk, bytes):
            try:
                out.append(chunk.decode(charset or "ascii", "replace"))
            except LookupError:
                out.append(chunk.decode("latin-1"))
        else:
            out.append(chunk)
    return "".join(out) if any(cs for _, cs in parts) else val
