"""One line for a filter that cannot start: where the mistake is, what it is, what to do.

``milterkit run`` loads the filter file and calls its ``setup(client)``; an exception there is
the filter author's mistake, not milterkit's, so the user gets ``FILE:LINE: what`` (the line in
*their* code, found in the traceback past milterkit's own frames) and exit status 2 instead of a
traceback through milterkit's internals. ``--log-level debug`` prints the traceback too.
"""

from __future__ import annotations

import sys
import traceback
from pathlib import Path

from ..errors import SignalError

_PACKAGE = str(Path(__file__).resolve().parents[1])


def user_frame(exc: BaseException) -> str | None:
    """``FILE:LINE`` of the innermost frame of ``exc``'s traceback outside milterkit (and the
    import machinery), or None."""
    found = None
    for frame in traceback.extract_tb(exc.__traceback__):
        name = frame.filename
        if name.startswith(_PACKAGE) or name.startswith("<frozen"):
            continue
        found = f"{_short(name)}:{frame.lineno}"
    return found


def _short(name: str) -> str:
    try:
        return str(Path(name).resolve().relative_to(Path.cwd()))
    except ValueError:
        return name


def describe(exc: BaseException) -> str:
    """The one line for a failure while loading or setting up a filter."""
    if isinstance(exc, SyntaxError):
        where = f"{_short(exc.filename or '?')}:{exc.lineno}"
        return f"{where}: syntax error: {exc.msg} (the filter file is not valid Python)"
    frame = user_frame(exc)
    prefix = f"{frame}: " if frame else ""
    if isinstance(exc, ModuleNotFoundError):
        return (f"{prefix}the filter imports {exc.name!r}, which is not installed for this "
                f"Python ({sys.executable}): pip install it, or fix the name")
    if isinstance(exc, SignalError):
        text = str(exc)
        if "(did you mean" in text:
            text = text.split("; valid:", 1)[0]  # the guess says enough; the list is long
        return f"{prefix}{text}"
    what = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
    return f"{prefix}{what} (raised while loading the filter or in its setup)"
