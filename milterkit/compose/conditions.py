"""Applicable conditions: when a composed filter applies (milter-manager's "stoppers").

A condition is an object with *stopper* methods named after events (``connect(context,
hostname, address)``, ``helo``, ``envelope_from``, ``envelope_recipient``, ``data``, ``header``,
``end_of_header``, ``body``, ``end_of_message``), each called with the filter's view and the
event's arguments before the filter sees that event. A stopper that returns True detaches the
filter: for the rest of the connection when it stops at ``connect`` or ``helo``, else for the
rest of the message. A detached filter is not called and takes no part in the verdict.

Built-ins (the names a configuration file uses):

- ``authenticated``: apply only to senders that authenticated (SMTP AUTH);
- ``unauthenticated``: apply only to senders that did not;
- ``remote-network``: apply only to SMTP clients outside ``trusted-networks`` (CIDRs,
  default loopback).

Authentication is read from the ``{auth_authen}`` / ``{auth_type}`` macros, which Postfix sends
with MAIL FROM by default (``milter_mail_macros``).
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable, Mapping, Sequence
from typing import Any, ClassVar

from ..protocol.constants import MacroStage
from ..server.target import TargetError, load_module
from .ranking import STAGE_NAMES

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
_AUTH_MACROS = {MacroStage.ENVELOPE_FROM: ("{auth_authen}", "{auth_type}")}


class ConditionError(ValueError):
    """A condition cannot be made from its configuration."""


class Condition:
    """Base class of conditions: define stopper methods named after events."""

    #: The name a configuration file uses.
    name = "condition"
    #: One line shown by ``milterkit filters`` and in logs.
    description = ""
    #: Macros a stopper reads, by stage (added to the macro requests of a stage only when a
    #: filter already asks for that stage, since a request replaces the MTA's own list).
    macros: ClassVar[Mapping[MacroStage, Sequence[str]]] = {}

    def stoppers(self) -> dict[str, Callable[..., Any]]:
        """Stage name -> stopper, for every event this condition looks at."""
        found = {}
        for stage in STAGE_NAMES:
            method = getattr(self, stage.replace("-", "_"), None)
            if callable(method):
                found[stage] = method
        return found

    def __repr__(self) -> str:
        return f"<condition {self.name}>"


def is_authenticated(context: Any) -> bool:
    """Whether the sender authenticated: ``{auth_authen}`` or ``{auth_type}`` is set."""
    return bool(context.get_macro("{auth_authen}") or context.get_macro("{auth_type}"))


class Authenticated(Condition):
    """Apply the filter only to senders that authenticated."""

    name = "authenticated"
    description = "apply only when the sender authenticated (SMTP AUTH)"
    macros: ClassVar[Mapping[MacroStage, Sequence[str]]] = _AUTH_MACROS

    def envelope_from(self, context: Any, address: str) -> bool:
        return not is_authenticated(context)


class Unauthenticated(Condition):
    """Apply the filter only to senders that did not authenticate."""

    name = "unauthenticated"
    description = "apply only when the sender did not authenticate"
    macros: ClassVar[Mapping[MacroStage, Sequence[str]]] = _AUTH_MACROS

    def envelope_from(self, context: Any, address: str) -> bool:
        return is_authenticated(context)


class RemoteNetwork(Condition):
    """Apply the filter only to SMTP clients outside the trusted networks."""

    name = "remote-network"
    description = "apply only to SMTP clients outside the trusted networks"
    DEFAULT_TRUSTED = ("127.0.0.0/8", "::1/128")

    def __init__(self, trusted_networks: Sequence[str] = DEFAULT_TRUSTED) -> None:
        if isinstance(trusted_networks, str) or not isinstance(trusted_networks, Sequence):
            raise ConditionError("remote-network: trusted-networks must be a list of CIDRs")
        networks: list[IPNetwork] = []
        for text in trusted_networks:
            try:
                networks.append(ipaddress.ip_network(str(text), strict=False))
            except ValueError as exc:
                raise ConditionError(f"remote-network: {exc}") from None
        #: The trusted networks.
        self.trusted = tuple(networks)

    def is_trusted(self, address: Any) -> bool:
        """Whether ``address`` (a :class:`~milterkit.SocketAddress`) is in a trusted network."""
        ip = getattr(address, "ip", None)
        if ip is None:
            return False
        if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
            ip = ip.ipv4_mapped
        return any(ip.version == net.version and ip in net for net in self.trusted)

    def connect(self, context: Any, hostname: str, address: Any) -> bool:
        return self.is_trusted(address)


#: Built-in conditions by configuration name.
BUILTIN: dict[str, type[Condition]] = {
    cls.name: cls for cls in (Authenticated, Unauthenticated, RemoteNetwork)
}


def make_condition(spec: str | Mapping[str, Any] | Condition) -> Condition:
    """A condition from its configuration: a name (``"authenticated"``), a table with a
    ``name`` and parameters (``{name = "remote-network", trusted-networks = [...]}``), or
    ``module:factory`` for one's own (called with the parameters, it returns a Condition)."""
    if isinstance(spec, Condition):
        return spec
    if isinstance(spec, str):
        name, params = spec, {}
    elif isinstance(spec, Mapping):
        params = dict(spec)
        name = params.pop("name", None)
        if not isinstance(name, str):
            raise ConditionError(f"a condition table needs a name: {dict(spec)!r}")
    else:
        raise ConditionError(f"a condition is a name or a table, not {spec!r}")
    kwargs = {key.replace("-", "_"): value for key, value in params.items()}
    factory: Any = BUILTIN.get(name)
    if factory is None:
        factory = _load_factory(name)
    try:
        condition = factory(**kwargs)
    except TypeError as exc:
        raise ConditionError(f"condition {name!r}: {exc}") from None
    if not isinstance(condition, Condition):
        raise ConditionError(f"condition {name!r} did not make a milterkit.compose.Condition")
    return condition


def _load_factory(name: str) -> Any:
    module_name, colon, attribute = name.rpartition(":")
    if not colon or not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", attribute):
        known = ", ".join(sorted(BUILTIN))
        raise ConditionError(f"unknown condition {name!r} (built-in: {known}; or "
                             "module:factory)")
    try:
        module = load_module(module_name)
    except TargetError as exc:
        raise ConditionError(f"condition {name!r}: {exc}") from None
    factory = getattr(module, attribute, None)
    if not callable(factory):
        raise ConditionError(f"condition {name!r}: {module_name} defines no {attribute}")
    return factory
