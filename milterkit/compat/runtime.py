"""Runtime options a compat application cannot pass itself (its code calls the old library's
``main()``), set by ``milterkit compat`` before the application starts."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class RuntimeOptions:
    """How a compat layer's ``main()`` runs milterkit's :class:`~milterkit.Client`.

    ``listen`` (a connection spec) overrides the one the application asks for; ``None`` keeps the
    application's. ``timeout`` likewise overrides the application's ``settimeout``.
    """

    workers: int = 1
    loop: str = "auto"
    listen: str | None = None
    timeout: float | None = None
    max_connections: int | None = None
    shutdown_timeout: float = 30.0


#: The options in force; ``milterkit compat`` replaces them before running the application.
OPTIONS = RuntimeOptions()
