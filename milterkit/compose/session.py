"""Session classes as filters: milter-manager's ``ClientSession`` shape.

A session class is instantiated once per connection with the filter's context view
(``cls(context)``); its methods named after events (``connect(self, hostname, address)``,
``envelope_from(self, address)``, ``header(self, name, value)``, ``end_of_message(self,
chunk)``, ``abort(self, state)``, ``finished(self)``...) are its handlers and return a
:class:`~milterkit.Status` or None. Only the events it defines are asked of the MTA for it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from .ranking import STAGE_NAMES

#: Events a session method may be named after (hyphens become underscores).
SESSION_EVENTS: tuple[str, ...] = (
    *STAGE_NAMES, "abort", "message-processed", "finished", "reset", "define-macro",
)
_KEY = "milterkit.compose.session"


def session_setup(cls: type[Any]) -> Callable[[Any], None]:
    """A ``setup(client)`` that connects ``cls``'s event methods."""

    def setup(client: Any) -> None:
        for event in SESSION_EVENTS:
            method = event.replace("-", "_")
            if callable(getattr(cls, method, None)):
                client.connect(event, _caller(cls, method))

    setup.__doc__ = cls.__doc__
    setup.__qualname__ = f"session_setup({cls.__qualname__})"
    return setup


def _caller(cls: type[Any], method: str) -> Callable[..., Any]:
    def handler(context: Any, *args: Any) -> Any:
        session = context.connection_data.get(_KEY)
        if session is None:
            session = context.connection_data[_KEY] = cls(context)
        return getattr(session, method)(*args)

    return handler
