"""purepythonmilter's logger: every line starts with the short id of the connection it is about.

The id lives in a context variable that the session sets at the start of every hook it runs, so
one module-level logger (``PurePythonMilter.logger``) names the right connection in every task.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import MutableMapping
from contextvars import ContextVar
from typing import TYPE_CHECKING, Any


class MilterServerConnectionID(uuid.UUID):
    """A random id per MTA connection; ``short`` (8 hex digits) prefixes log lines."""

    @property
    def short(self) -> str:
        return self.shorten()

    def shorten(self, length: int = 8) -> str:
        return str(self)[:length]

    @classmethod
    def generate(cls) -> MilterServerConnectionID:
        return cls(bytes=uuid.uuid4().bytes)


connection_id_context: ContextVar[MilterServerConnectionID] = ContextVar("connection_id")

if TYPE_CHECKING:
    _Adapter = logging.LoggerAdapter[logging.Logger]
else:
    _Adapter = logging.LoggerAdapter


class ConnectionLoggerAdapter(_Adapter):
    """Prefixes ``<id>: `` (``NONE`` outside a connection) and appends extra contexts."""

    def process(
        self, msg: Any, kwargs: MutableMapping[str, Any]
    ) -> tuple[Any, MutableMapping[str, Any]]:
        extra = dict(self.extra or {})
        given = extra.pop("connection_id", None)
        connection_id = given if isinstance(given, MilterServerConnectionID) else None
        connection_id = connection_id or connection_id_context.get(None)
        short = connection_id.short if connection_id is not None else "NONE"
        trailer = ", ".join(f"{key}={value}" for key, value in extra.items())
        return f"{short}: {msg}{f' [{trailer}]' if trailer else ''}", kwargs


class ConnectionContextLogger:
    """Factory of connection-aware loggers, as purepythonmilter spells it."""

    def get(
        self, name: str, *, extra_contexts: dict[str, Any] | None = None
    ) -> logging.LoggerAdapter[logging.Logger]:
        extra = dict(extra_contexts or {})
        return ConnectionLoggerAdapter(logging.getLogger(name), extra)
