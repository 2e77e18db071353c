"""The asyncio runtime: :class:`Client` listens, runs one context per MTA connection, applies
timeouts and the connection limit, pre-forks workers and shuts down gracefully.

Nothing below this package imports asyncio; this package never parses a packet itself.
"""

from .awaiting import DeadlineExceeded
from .client import CLIENT_SIGNAL_NAMES, DEFAULT_SPEC, Client
from .listen import Listener, ListenError, systemd_listeners
from .spec import ConnectionSpec, SpecError, parse_spec

__all__ = [
    "CLIENT_SIGNAL_NAMES", "DEFAULT_SPEC", "Client", "ConnectionSpec", "DeadlineExceeded",
    "ListenError", "Listener", "SpecError", "parse_spec", "systemd_listeners",
]
