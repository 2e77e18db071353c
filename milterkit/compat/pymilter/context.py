"""``milter.milterContext``: the per-connection object pymilter's callbacks receive.

Its methods are libmilter's ``smfi_*`` calls, made on milterkit's
:class:`~milterkit.ClientContext`. They run on the connection's worker thread while the context
waits for that callback's answer, so the event loop does not touch the context meanwhile; the
one call that writes to the socket (:meth:`progress`) is handed to the loop.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

from ...context import ClientContext, MilterError
from ...reply import ReplyError, format_reply


class error(Exception):
    """pymilter's ``milter.error``: a libmilter call failed (MI_FAILURE)."""


def _text(value: str | bytes) -> str:
    if isinstance(value, bytes):
        return value.decode("utf-8", "surrogateescape")
    if not isinstance(value, str):
        raise TypeError(f"expected str or bytes, not {type(value).__name__}")
    return value


class milterContext:
    """One MTA connection, as pymilter's C extension presents it."""

    def __init__(self, context: ClientContext, loop: asyncio.AbstractEventLoop | None) -> None:
        self._context = context
        self._loop = loop
        self._priv: Any = None
        #: The reply set by setreply; libmilter sends it with the next verdict of its class
        #: (5xx with REJECT, 4xx with TEMPFAIL) and then forgets it.
        self._reply: str | None = None
        self._reply_args: tuple[str, str | None, list[str] | None] = ("", None, None)

    # -------------------------------------------------------------- private data

    def setpriv(self, priv: Any) -> Any:
        """Attach ``priv`` to the connection; returns the old value."""
        old, self._priv = self._priv, priv
        return old

    def getpriv(self) -> Any:
        """The object attached with :meth:`setpriv` (None if none)."""
        return self._priv

    # -------------------------------------------------------------- macros and replies

    def getsymval(self, sym: str) -> str | None:
        """The value of macro ``sym`` (``"j"``, ``"{auth_authen}"``), or None."""
        return self._context.get_macro(_text(sym))

    def setreply(
        self, rcode: str, xcode: str | None = None, msg: str | None = None, *more: str
    ) -> None:
        """smfi_setreply / smfi_setmlreply: the SMTP reply of the next REJECT or TEMPFAIL."""
        lines: list[str] = [] if msg is None else [_text(msg)]
        lines.extend(_text(line) for line in more)
        args = (_text(rcode), None if xcode is None else _text(xcode), lines or None)
        try:
            self._reply = format_reply(*args)
            self._reply_args = args
        except (ReplyError, ValueError, TypeError) as exc:
            raise error(f"cannot set reply: {exc}") from None

    def setsymlist(self, stage: int, macros: str | bytes) -> None:
        """smfi_setsymlist: the macros the MTA should send at ``stage`` (negotiate only)."""
        names = _text(macros).split()
        try:
            self._context.request_macros(stage, *names)
        except (MilterError, ValueError) as exc:
            raise error(f"cannot set macro list: {exc}") from None

    # -------------------------------------------------------------- modifications

    def _do(self, what: str, call: Any, *args: Any) -> None:
        try:
            call(*args)
        except (MilterError, ValueError, TypeError) as exc:
            raise error(f"cannot {what}: {exc}") from None

    def addheader(self, field: str, value: str | bytes, idx: int = -1) -> None:
        """smfi_addheader, or smfi_insheader when ``idx`` >= 0."""
        if idx is None or idx < 0:
            self._do("add header", self._context.add_header, _text(field), _text(value))
        else:
            self._do("insert header", self._context.insert_header, idx, _text(field),
                     _text(value))

    def chgheader(self, field: str, idx: int, value: str | bytes | None) -> None:
        """smfi_chgheader: change the ``idx``-th ``field`` header; None (or "") deletes it."""
        text = None if value is None else _text(value)
        # libmilter reads index 0 as the first header, as Sendmail and Postfix do.
        self._do("change header", self._context.change_header, _text(field), max(idx, 1), text)

    def addrcpt(self, rcpt: str, params: str | Sequence[str] | None = None) -> None:
        """smfi_addrcpt, or smfi_addrcpt_par with ESMTP ``params``."""
        self._do("add recipient", self._context.add_recipient, _text(rcpt), params)

    def delrcpt(self, rcpt: str) -> None:
        """smfi_delrcpt."""
        self._do("delete recipient", self._context.delete_recipient, _text(rcpt))

    def replacebody(self, body: bytes | str) -> None:
        """smfi_replacebody: append ``body`` to the new body."""
        data = body.encode("utf-8", "surrogateescape") if isinstance(body, str) else body
        self._do("replace body", self._context.replace_body, data)

    def chgfrom(self, sender: str, params: str | None = None) -> None:
        """smfi_chgfrom."""
        self._do("change sender", self._context.change_from, _text(sender), params)

    def quarantine(self, reason: str) -> None:
        """smfi_quarantine."""
        self._do("quarantine", self._context.quarantine, _text(reason))

    def progress(self) -> None:
        """smfi_progress: a keep-alive to the MTA while a long callback runs."""
        context = self._context
        if context.pending is None:
            raise error("cannot send progress: no reply is owed")
        if self._loop is None:
            self._do("send progress", context.progress)
        else:
            self._loop.call_soon_threadsafe(_progress, context)


def _progress(context: ClientContext) -> None:
    try:
        context.progress()
    except MilterError:
        pass  # the stage was answered meanwhile: nothing to keep alive
