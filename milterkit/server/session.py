"""The runtime's own handlers of context signals, connected once per Client.

Every connection needs a few: its ``finished`` closes the transport, and the per-message log
(:mod:`milterkit.server.messagelog`) follows a dozen ``*-response`` signals. Connected to each
new context, they made a blinker signal per name per connection, ~18% of a session's CPU
(issue 15). :class:`SessionSignals` connects them once, to a table between the Client's and
each context's own: they still run after the Client's handlers and before the handlers
connected to the context itself once it is set up (from a ``connection-established`` handler,
say), as when they were connected per connection; each finds its connection by context. The
one difference: handlers a context class connects to itself in its ``__init__`` now run after
them, not before.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..handlers import SIGNAL_ARGUMENTS
from ..signals import SignalTable
from ..stages import SIGNAL_NAMES
from .messagelog import MessageLog, MessageLogs

if TYPE_CHECKING:
    from ..context import ClientContext
    from .connection import Connection


class SessionSignals:
    """The runtime's handlers of one Client's contexts, whose tables' parent is ``parent``."""

    def __init__(self, parent: SignalTable) -> None:
        self.messages = MessageLogs()
        self._connections: dict[ClientContext, Connection] = {}
        self._parent = parent
        self._table = self._new_table(parent)

    def _new_table(self, parent: SignalTable | None) -> SignalTable:
        table = SignalTable(SIGNAL_NAMES, parent=parent, arguments=SIGNAL_ARGUMENTS)
        table.connect("finished", self._on_finished)
        self.messages.connect(table)
        return table

    def attach(self, connection: Connection, context: ClientContext) -> MessageLog:
        """Run the runtime's handlers for ``context`` (until :meth:`detach`); its message log."""
        signals = context.signals
        if signals.parent is self._parent:
            signals.parent = self._table
        else:
            # A create_context override gave its context another parent: a table for this
            # connection alone, the cost of connecting per connection, as before.
            signals.parent = self._new_table(signals.parent)
        self._connections[context] = connection
        return self.messages.start(context)

    def detach(self, context: ClientContext) -> None:
        """Forget ``context`` (its connection is lost)."""
        self._connections.pop(context, None)
        self.messages.stop(context)

    def _on_finished(self, context: ClientContext) -> None:
        connection = self._connections.get(context)
        if connection is not None:
            connection.on_finished()
