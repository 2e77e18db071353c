"""The bound on what a context queues while a handler's reply is owed (flow control, core side).

``feed`` decodes every packet it is given, but processes them only while no handler is pending;
the rest waits in the context's backlog. :class:`Backlog` is the part of
:class:`~milterkit.ClientContext` that measures that backlog and refuses a peer that goes past
its hard bound with :exc:`~milterkit.protocol.errors.BacklogOverflow` (a protocol error). The
runtime stops reading from the socket long before that bound (``Client(backlog_pause=...)``),
so the hard bound only catches what a single read can bring in.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable

from .protocol.errors import BacklogOverflow
from .protocol.framing import PacketDecoder

#: What a context may queue while a handler's reply is owed, ``(packets, bytes)``.
DEFAULT_MAX_BACKLOG = (65536, 16 * 1024 * 1024)
_HEADER = 5  # the length prefix and the command byte of a packet


class Backlog:
    """Backlog accounting of a context (a mixin of :class:`~milterkit.ClientContext`)."""

    # Provided by ClientContext.
    _backlog: deque[tuple[bytes, bytes]]
    _decoder: PacketDecoder

    @property
    def pending(self) -> str | None:
        raise NotImplementedError

    def _fail(self, exc: Exception) -> None:
        raise NotImplementedError

    def _init_backlog(self, max_backlog: tuple[int, int]) -> None:
        packets, size = max_backlog
        if packets < 1 or size < 1:
            raise ValueError(f"max_backlog must be positive (packets, bytes), not {max_backlog}")
        #: ``(packets, bytes)`` this context may queue while a reply is owed; more is a
        #: :exc:`~milterkit.protocol.errors.BacklogOverflow`.
        self.max_backlog = (packets, size)
        #: Called after queued commands were processed, if set: the runtime sets it while it
        #: has stopped reading, to resume once the backlog has drained.
        self.drain_hook: Callable[[], None] | None = None

    @property
    def buffered(self) -> int:
        """Bytes of an unfinished packet held (the runtime counts only whole ones as activity)."""
        return self._decoder.buffered

    @property
    def backlog(self) -> tuple[int, int]:
        """``(packets, bytes)`` decoded but not processed yet: they wait for a pending handler."""
        backlog = self._backlog
        if not backlog:
            return (0, 0)
        return (len(backlog), sum(_HEADER + len(payload) for _, payload in backlog))

    def _check_backlog(self) -> None:
        packets, size = self.backlog
        limit_packets, limit_bytes = self.max_backlog
        if packets > limit_packets or size > limit_bytes:
            error = BacklogOverflow(
                f"the MTA sent {packets} commands ({size} bytes) while the reply to "
                f"{self.pending} was owed; at most {limit_packets} commands or {limit_bytes} "
                "bytes may wait", packets, size, self.max_backlog,
            )
            self._fail(error)
            raise error
