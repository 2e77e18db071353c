"""A clean-room, pure-Python ``milter`` module: the API of pymilter's C extension, served by
milterkit's asyncio runtime instead of libmilter.

Register callbacks with the ``set_*_callback`` functions and :func:`register`, say where to
listen with :func:`setconn`, then :func:`main` serves until SIGTERM/SIGINT or :func:`stop`.
Each connection's callbacks run in order on that connection's own thread, as under libmilter.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from typing import Any

from .. import runtime
from .bridge import Bridge, Registry
from .constants import *  # noqa: F403 - the module's constants, as pymilter's
from .constants import ACCEPT, CONTINUE, REJECT, TEMPFAIL, VERSION
from .context import error as error
from .context import milterContext as milterContext

#: The callbacks and settings registered so far (libmilter's smfiDesc and smfi_set* state).
_registry = Registry()
_settings: dict[str, Any] = {"conn": None, "timeout": None, "backlog": None, "dbg": 0}
_running: dict[str, Any] = {}
_lock = threading.Lock()

#: The name pymilter's C context type has.
Context = milterContext


def _setter(name: str) -> Callable[[Callable[..., Any] | None], Callable[..., Any] | None]:
    def set_callback(cb: Callable[..., Any] | None) -> Callable[..., Any] | None:
        if cb is not None and not callable(cb):
            raise TypeError("callback parameter must be callable")
        old = _registry.callbacks.get(name)
        _registry.callbacks[name] = cb
        return old

    set_callback.__name__ = f"set_{name}_callback"
    set_callback.__doc__ = f"Set the {name} callback (None removes it); returns the old one."
    return set_callback


set_connect_callback = _setter("connect")
set_helo_callback = _setter("helo")
set_envfrom_callback = _setter("envfrom")
set_envrcpt_callback = _setter("envrcpt")
set_header_callback = _setter("header")
set_eoh_callback = _setter("eoh")
set_body_callback = _setter("body")
set_eom_callback = _setter("eom")
set_abort_callback = _setter("abort")
set_close_callback = _setter("close")


def set_flags(flags: int) -> None:
    """The actions the milter may use (libmilter's xxfi_flags); all by default."""
    _registry.flags = int(flags)


def set_exception_policy(code: int) -> None:
    """What a callback's untrapped exception answers: TEMPFAIL (default), REJECT, CONTINUE or
    ACCEPT. The traceback goes to stderr."""
    if code not in (TEMPFAIL, REJECT, CONTINUE, ACCEPT):
        raise ValueError("exception policy must be TEMPFAIL, REJECT, CONTINUE or ACCEPT")
    _registry.exception_policy = code


def register(
    name: str, negotiate: Callable[..., Any] | None = None,
    unknown: Callable[..., Any] | None = None, data: Callable[..., Any] | None = None,
) -> None:
    """Register the milter as ``name``, with the three newer callbacks as keywords."""
    if not isinstance(name, str):
        raise TypeError("milter name must be a str")
    _registry.name = name
    _registry.callbacks["negotiate"] = negotiate
    _registry.callbacks["unknown"] = unknown
    _registry.callbacks["data"] = data


def setconn(spec: str) -> None:
    """Where to listen: ``unix:/path``, ``local:/path``, ``inet:PORT@HOST``, ``inet6:...``,
    ``fd:N``. Checked when the milter starts, as libmilter does."""
    _settings["conn"] = spec


def settimeout(secs: int) -> None:
    """The MTA inactivity timeout in seconds (libmilter's default 7210)."""
    _settings["timeout"] = secs


def setbacklog(n: int) -> None:
    """The listen backlog."""
    _settings["backlog"] = n


def setdbg(level: int) -> None:
    """libmilter's debug level; kept for compatibility (milterkit logs through logging)."""
    _settings["dbg"] = level


def getdiag() -> tuple[int, int]:
    """(contexts created, contexts deleted), for leak hunting."""
    return (_registry.created, _registry.deleted)


def getversion() -> tuple[int, int, int]:
    """The "libmilter" version this runtime speaks like: (1, 0, 1)."""
    return (VERSION >> 24, (VERSION >> 8) & 0xFFFF, VERSION & 0xFF)


def _client() -> Any:
    from ...server import Client
    from ...server.spec import SpecError
    from ...status import Status

    spec = runtime.OPTIONS.listen or _settings["conn"]
    if not spec:
        raise error("no connection spec: call milter.setconn() first")
    run = runtime.OPTIONS
    timeout = run.timeout if run.timeout is not None else _settings["timeout"]
    policy = {TEMPFAIL: Status.TEMPORARY_FAILURE, REJECT: Status.REJECT,
              CONTINUE: Status.CONTINUE, ACCEPT: Status.ACCEPT}[_registry.exception_policy]
    options: dict[str, Any] = {}
    if _settings["backlog"]:
        options["backlog"] = int(_settings["backlog"])
    try:
        client = Client(
            spec, timeout=float(timeout) if timeout else 7210.0, exception_policy=policy,
            max_connections=run.max_connections, shutdown_timeout=run.shutdown_timeout,
            **options,
        )
    except (SpecError, ValueError) as exc:
        raise error(f"cannot use connection spec {spec!r}: {exc}") from None
    Bridge(_registry).attach(client)

    def started(client: Any, address: Any) -> None:
        _running["loop"] = asyncio.get_running_loop()

    client.connect("listen-started", started)
    return client


def opensocket(rmsock: bool = False) -> None:
    """Create the listening socket now, so errors show before :func:`main` (a stale unix socket
    is removed either way, as milterkit always does)."""
    from ...server import ListenError

    with _lock:
        client = _running.get("client") or _client()
        try:
            client.bind()
        except (ListenError, OSError) as exc:
            raise error(f"cannot open socket: {exc}") from None
        _running["client"] = client


def main() -> None:
    """Serve until SIGTERM/SIGINT or :func:`stop` (libmilter's smfi_main)."""
    from ...server import ListenError

    with _lock:
        client = _running.pop("client", None) or _client()
    _running["active"] = client
    try:
        client.run(workers=runtime.OPTIONS.workers, loop=runtime.OPTIONS.loop)
    except (ListenError, OSError) as exc:
        raise error(f"cannot serve: {exc}") from None
    finally:
        _running.pop("active", None)
        _running.pop("loop", None)


def stop() -> None:
    """Stop :func:`main` gracefully, from any thread (libmilter's smfi_stop)."""
    client = _running.get("active")
    loop = _running.get("loop")
    if client is not None and loop is not None:
        loop.call_soon_threadsafe(client.request_shutdown)
