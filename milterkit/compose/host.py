"""What a composed filter's ``setup(client)`` receives: a :class:`FilterHost`.

It looks like a :class:`~milterkit.server.client.Client` to the filter (``connect``, ``on``,
``disconnect``, ``signals``, ``context_options``), but the handlers go to the filter's own
signal table, and the three negotiation options it reads back (``actions``, ``protocol``,
``macro_requests``) are this filter's needs, merged with the others' at negotiation. Anything
else (``worker_id``, ``timeout``...) is read from the real client.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, TypeVar

from ..context import SIGNAL_NAMES
from ..signals import SignalTable

F = TypeVar("F", bound=Callable[..., Any])

#: Client signals (``handler(client, *args)``), forwarded to the real client.
_CLIENT_SIGNALS = ("connection-established", "listen-started", "connection-finished")


class FilterHost:
    """The client one composed filter sets itself up on."""

    def __init__(self, name: str, client: Any, options: Mapping[str, Any]) -> None:
        #: The filter's name (its entry point, file stem or configured name).
        self.name = name
        #: The real :class:`~milterkit.server.client.Client` (or None when composed offline).
        self.client = client
        #: The filter's options: its declared defaults updated with the configured values.
        self.options: dict[str, Any] = dict(options)
        #: The filter's own handlers, by signal.
        self.signals = SignalTable(SIGNAL_NAMES)
        base = dict(getattr(client, "context_options", {}) or {})
        base.update(actions=None, protocol=None, macro_requests=None)
        #: Like ``Client.context_options``; only ``actions``, ``protocol`` and
        #: ``macro_requests`` are read back (as this filter's negotiation needs).
        self.context_options: dict[str, Any] = base

    def connect(self, name: str, handler: F) -> F:
        """Connect ``handler(context, *args)`` to the event ``name`` for this filter only
        (``context`` is the filter's view of each connection); a client signal goes to the
        real client."""
        if name in _CLIENT_SIGNALS:
            if self.client is None:
                raise ValueError(f"{name!r} needs a real client")
            return self.client.connect(name, handler)  # type: ignore[no-any-return]
        return self.signals.connect(name, handler)

    def disconnect(self, name: str, handler: Callable[..., Any]) -> None:
        """Disconnect ``handler`` from ``name``."""
        if name in _CLIENT_SIGNALS and self.client is not None:
            self.client.disconnect(name, handler)
        else:
            self.signals.disconnect(name, handler)

    def on(self, name: str) -> Callable[[F], F]:
        """Decorator form of :meth:`connect`."""
        return lambda handler: self.connect(name, handler)

    def __getattr__(self, name: str) -> Any:
        client = self.__dict__.get("client")
        if name.startswith("_") or client is None:
            raise AttributeError(name)
        return getattr(client, name)
