"""Connecting to a milter's connection spec (``unix:/path``, ``inet:PORT@HOST``,
``inet6:PORT@[ADDR]``) as the MTA does: :func:`open_spec`."""

from __future__ import annotations

import asyncio

from ..server.spec import ConnectionSpec, SpecError, parse_spec

#: The stream buffer of a milter connection (a BODY chunk is at most 64 KiB).
READ_SIZE = 256 * 1024


async def open_spec(
    spec: str | ConnectionSpec, timeout: float
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """Connect to a milter's connection spec within ``timeout`` seconds."""
    parsed = parse_spec(spec) if isinstance(spec, str) else spec
    if parsed.family == "fd":
        raise SpecError(f"{parsed} names an inherited listening socket; a milter cannot be "
                        "reached through it (give its unix: or inet: address)")
    if parsed.family == "unix":
        assert parsed.path is not None
        opening = asyncio.open_unix_connection(parsed.path, limit=READ_SIZE)
    else:
        host = parsed.host or ("127.0.0.1" if parsed.family == "inet" else "::1")
        opening = asyncio.open_connection(host, parsed.port, limit=READ_SIZE)
    return await asyncio.wait_for(opening, timeout)
