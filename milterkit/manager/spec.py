"""A configured child milter: where it listens, how it is started and what its failure means."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from ..compose.conditions import Condition
from ..compose.spec import DEFAULT_FILTER_TIMEOUT, FALLBACKS
from ..server.spec import parse_spec
from ..status import Status

#: Seconds to connect to a child and have its negotiation reply, per attempt.
DEFAULT_CONNECT_TIMEOUT = 5.0
#: Attempts to reach a child per MTA connection (and per new SMTP client on it).
DEFAULT_CONNECT_ATTEMPTS = 2
#: Seconds between two attempts.
DEFAULT_RECONNECT_DELAY = 0.2


@dataclass
class ChildSpec:
    """One external child milter of a :class:`~milterkit.manager.Manager`.

    ``connection`` is its connection spec (``inet:8891@127.0.0.1``, ``unix:/run/x.sock``...).
    ``fallback`` is the status its failure becomes (it cannot be reached, does not answer
    within ``timeout`` seconds, breaks the protocol): milter-manager's ``fallback_status``,
    ``accept`` by default. ``evaluation`` records and logs its verdicts and changes without
    sending them; ``conditions`` say when it applies. ``command``, when given, is run by the
    manager at start-up (and again, at most ``max_restarts`` times, when it has exited).
    """

    name: str
    connection: str
    fallback: Status = Status.ACCEPT
    timeout: float | None = DEFAULT_FILTER_TIMEOUT
    connect_timeout: float = DEFAULT_CONNECT_TIMEOUT
    connect_attempts: int = DEFAULT_CONNECT_ATTEMPTS
    reconnect_delay: float = DEFAULT_RECONNECT_DELAY
    #: Seconds a child that could not be reached is not tried at all (0: every connection
    #: tries), so that a host that drops packets does not cost every connection its timeouts.
    retry_after: float = 0.0
    evaluation: bool = False
    conditions: Sequence[Condition] = ()
    command: Sequence[str] | None = None
    start_timeout: float = 10.0
    max_restarts: int = 3

    def __post_init__(self) -> None:
        if not self.name:
            raise ValueError("a child milter needs a name")
        parse_spec(self.connection)  # a SpecError (a ValueError) names the mistake
        if self.fallback not in FALLBACKS:
            names = ", ".join(sorted(s.nick for s in FALLBACKS))
            raise ValueError(f"milter {self.name!r}: fallback must be one of {names}, "
                             f"not {self.fallback.nick}")
        for what, value in (("timeout", self.timeout), ("connect-timeout",
                                                         self.connect_timeout),
                            ("start-timeout", self.start_timeout)):
            if value is not None and value <= 0:
                raise ValueError(f"milter {self.name!r}: {what} must be positive")
        if self.connect_attempts < 1:
            raise ValueError(f"milter {self.name!r}: connect-attempts must be at least 1")
        if self.reconnect_delay < 0 or self.max_restarts < 0 or self.retry_after < 0:
            raise ValueError(f"milter {self.name!r}: reconnect-delay, retry-after and "
                             "max-restarts cannot be negative")
        if self.command is not None and (isinstance(self.command, str) or not self.command):
            raise ValueError(f"milter {self.name!r}: command must be a non-empty list of "
                             "strings")
