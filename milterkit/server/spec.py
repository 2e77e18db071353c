"""Connection specs: where a milter listens, in the forms libmilter and milter-manager accept.

``unix:/path``, ``local:/path`` and a bare ``/path`` name a unix socket; ``inet:PORT``,
``inet:PORT@HOST`` and ``inet:PORT@[ADDR]`` an IPv4 socket; ``inet6:PORT`` and
``inet6:PORT@[ADDR]`` (or ``@HOST``) an IPv6 one. No host means every address, as in libmilter.
``fd:N`` (as Debian's libmilter and pymilter accept) is a listening socket the process inherited
as file descriptor N. Parsing is pure; resolving a host name happens only in
:meth:`ConnectionSpec.resolve`.
"""

from __future__ import annotations

import ipaddress
import socket
from dataclasses import dataclass
from typing import Literal

Family = Literal["unix", "inet", "inet6", "fd"]


class SpecError(ValueError):
    """A connection spec that cannot be parsed; the message quotes the spec."""


@dataclass(frozen=True, slots=True)
class ConnectionSpec:
    """A parsed connection spec.

    ``path`` is set for ``unix``; ``port`` and ``host`` (None = every address) for ``inet`` and
    ``inet6``; ``fd`` (the descriptor number) for ``fd``. ``str(spec)`` gives the canonical text
    back (``inet:10025@[127.0.0.1]``).
    """

    family: Family
    path: str | None = None
    port: int = 0
    host: str | None = None
    fd: int | None = None

    @property
    def socket_family(self) -> socket.AddressFamily:
        """The ``socket.AF_*`` constant for this spec (:class:`SpecError` for ``fd:N``, whose
        family is known only from the socket itself)."""
        if self.family == "fd":
            raise SpecError(f"{self} is an inherited socket: its family is the socket's own")
        return {
            "unix": socket.AF_UNIX, "inet": socket.AF_INET, "inet6": socket.AF_INET6,
        }[self.family]

    def resolve(self) -> tuple[str, int] | str:
        """The address to ``bind()``: a path, or ``(address, port)`` with a resolved host.

        A host name is looked up with getaddrinfo and the first address of the spec's family is
        taken, as milter-manager does. An ``fd:N`` spec has no address: :class:`SpecError`.
        """
        if self.family == "fd":
            raise SpecError(f"{self} is an inherited socket: it has no address to bind or connect")
        if self.family == "unix":
            assert self.path is not None
            return self.path
        if self.host is None:
            return ("0.0.0.0" if self.family == "inet" else "::", self.port)
        try:
            ipaddress.ip_address(self.host)
            return (self.host, self.port)
        except ValueError:
            pass
        try:
            infos = socket.getaddrinfo(
                self.host, self.port, self.socket_family, socket.SOCK_STREAM
            )
        except socket.gaierror as exc:
            raise SpecError(f"{self}: cannot resolve host {self.host!r}: {exc}") from None
        address = infos[0][4]
        return (str(address[0]), self.port)

    def __str__(self) -> str:
        if self.family == "fd":
            return f"fd:{self.fd}"
        if self.family == "unix":
            return f"unix:{self.path}"
        if self.host is None:
            return f"{self.family}:{self.port}"
        try:
            ipaddress.ip_address(self.host)
        except ValueError:
            return f"{self.family}:{self.port}@{self.host}"
        return f"{self.family}:{self.port}@[{self.host}]"


def parse_spec(text: str) -> ConnectionSpec:
    """Parse a connection spec; raise :class:`SpecError` saying what is wrong."""
    if not isinstance(text, str):
        raise TypeError(f"a connection spec is a str, not {type(text).__name__}")
    if text.startswith("/"):
        return ConnectionSpec("unix", path=text)
    protocol, colon, content = text.partition(":")
    if not colon:
        raise SpecError(f"spec doesn't have a colon: {text!r}")
    if not content:
        raise SpecError(f"spec doesn't have content: {text!r}")
    protocol = protocol.lower()
    if protocol in ("unix", "local"):
        return ConnectionSpec("unix", path=content)
    if protocol == "fd":
        return ConnectionSpec("fd", fd=_parse_number(content, "descriptor number", text))
    if protocol not in ("inet", "inet6"):
        raise SpecError(
            f"protocol must be 'unix', 'local', 'inet', 'inet6' or 'fd', not {protocol!r}: "
            f"{text!r}"
        )
    family: Family = "inet" if protocol == "inet" else "inet6"
    if "@" not in content:
        _postfix_form(protocol, content, text)
    port_text, at, host = content.partition("@")
    port = _parse_port(port_text, text)
    if not at:
        return ConnectionSpec(family, port=port)
    if not host:
        raise SpecError(f"spec has '@' but no host: {text!r}")
    if host.startswith("["):
        if not host.endswith("]"):
            raise SpecError(f"unbalanced '[' in host: {text!r}")
        literal = host[1:-1]
        try:
            address = ipaddress.ip_address(literal)
        except ValueError:
            raise SpecError(f"not an IP address inside [...]: {text!r}") from None
        if (address.version == 4) != (family == "inet"):
            raise SpecError(f"an IPv{address.version} address in an {family} spec: {text!r}")
        return ConnectionSpec(family, port=port, host=address.compressed)
    return ConnectionSpec(family, port=port, host=host)


def _postfix_form(protocol: str, content: str, text: str) -> None:
    """Refuse Postfix's ``inet:HOST:PORT`` (main.cf's form) with the spec meant instead."""
    host, colon, port = content.rpartition(":")
    if not (colon and host and port.isdigit()):
        return
    bare = host[1:-1] if host.startswith("[") and host.endswith("]") else host
    try:
        address = ipaddress.ip_address(bare)
    except ValueError:
        if ":" in bare:
            return
        at = bare
    else:
        at = f"[{address.compressed}]"
        if address.version == 6:
            protocol = "inet6"
    raise SpecError(
        f"{text!r} is Postfix's form (HOST:PORT, as in main.cf); milterkit listens on "
        f"PORT@HOST: use {protocol}:{port}@{at}"
    )


def _parse_number(digits: str, what: str, text: str) -> int:
    for char in digits:
        if not "0" <= char <= "9":
            raise SpecError(f"{what} has invalid character {char!r}: {text!r}")
    return int(digits)


def _parse_port(port_text: str, text: str) -> int:
    if not port_text:
        raise SpecError(f"spec has no port: {text!r}")
    port = _parse_number(port_text, "port number", text)
    if port > 65535:
        raise SpecError(f"port number is over 65535: {text!r}")
    return port
