"""``Milter.testctx.TestCtx``: drive a ``Milter.Base`` filter offline, through the same
callbacks :func:`Milter.runmilter` wires, as pymilter's TestCtx does.

Set ``Milter.factory``, then ``ctx = TestCtx()``, ``ctx._setsymval(name, value)``,
``ctx._connect(host, helo, ip)``, ``ctx._feedFile(fp, sender, rcpt, ...)``; ``ctx.getpriv()`` is
the milter; ``ctx._close()`` ends the connection. Negotiation is run (offering every action and
step), ``P_NO*`` steps are honoured, ``getsymval`` hides macros a ``@symlist`` did not ask for,
and modifications outside ``eom`` raise OSError. A ``@noreply`` callback's NOREPLY counts as
CONTINUE, as an MTA reads it (pymilter's TestCtx stopped the message there). ``hostaddr`` is
passed to ``connect`` as the bare IP string, as pymilter's TestCtx passes it.
"""

from __future__ import annotations

import socket
import time
from io import BytesIO
from typing import IO, Any, ClassVar

from .. import constants as C
from . import utils
from ._offline import Recorder, header_bytes, macro_names, read_message, split_message


class TestCtx(Recorder):
    """A stand-in for the per-connection milter context, with drivers named ``_feed*``."""

    default_opts: ClassVar[list[int]] = [C.CURR_ACTS, 0x1FFFFF, 0, 0]

    def __init__(self, logfile: str = "test/milter.log") -> None:
        self._priv: Any = None
        self._macros: dict[str, str] = {}
        self._symlist: list[set[bytes] | None] = [None] * 7
        self._opts = list(TestCtx.default_opts)
        self._protocol = 0
        self._stage: int | None = None
        self._sender: str | None = None
        self._activity = time.time()
        self._reset_recording()

    # -------------------------------------------------------------- the context API

    def getpriv(self) -> Any:
        return self._priv

    def setpriv(self, priv: Any) -> None:
        self._priv = priv

    def getsymval(self, name: str) -> str | None:
        stage = self._stage
        if stage is not None and stage >= 0:
            wanted = self._symlist[stage]
            if wanted is not None and name.encode("utf8") not in wanted:
                return None
        return self._macros.get(name)

    def _setsymval(self, name: str, val: str) -> None:
        self._macros[name] = val

    def setsymlist(self, stage: int, macros: str | bytes) -> None:
        if self._stage != -1:
            raise RuntimeError("setsymlist may only be called from negotiate")
        names = macro_names(macros)
        if len(names) > 5:
            raise ValueError("setsymlist limited to 5 macros by MTA")
        if self._symlist[stage] is not None:
            raise ValueError(f"setsymlist already called for stage: {stage}")
        if not names:
            raise ValueError(f"setsymlist with empty list for stage: {stage}")
        self._symlist[stage] = names

    def progress(self) -> None:
        self._activity = time.time()

    # -------------------------------------------------------------- drivers

    def _milter(self) -> Any:
        return self._priv

    def _negotiate(self) -> int:
        from . import negotiate_callback

        self._body = None
        self._bodyreplaced = False
        self._priv = None
        self._symlist = [None] * 7
        self._opts = list(TestCtx.default_opts)
        self._stage = -1
        rc = negotiate_callback(self, self._opts)
        if rc == C.ALL_OPTS:
            self._opts = list(TestCtx.default_opts)
        elif rc != C.CONTINUE:
            self._abort()
        self._protocol = self._opts[1]
        self._stage = None
        return rc

    def _connect(self, host: str = "localhost", helo: str = "spamrelay",
                 ip: str = "1.2.3.4") -> int:
        from . import connect_callback

        self._negotiate()
        if self._protocol & C.P_NOCONNECT:
            return C.CONTINUE
        if utils.ip4re.match(ip):
            family = socket.AF_INET
        elif utils.ip6re.match(ip):
            family = socket.AF_INET6
        else:
            raise ValueError(f"TestCtx.connect: invalid ip address: {ip}")
        rc = self._call(C.M_CONNECT, connect_callback, self, host, family, ip)
        if rc != C.CONTINUE:
            self._close()
            return rc
        return self._helo(helo)

    def _call(self, stage: int | None, function: Any, *args: Any) -> int:
        self._stage = stage
        try:
            rc = int(function(*args))
            # An MTA reads a @noreply callback's NOREPLY as "go on"; so does this harness.
            return C.CONTINUE if rc == C.NOREPLY else rc
        finally:
            self._stage = None

    def _helo(self, helo: str) -> int:
        if self._protocol & C.P_NOHELO:
            return C.CONTINUE
        rc = self._call(C.M_HELO, self._priv.hello, helo)
        if rc != C.CONTINUE:
            self._close()
        return rc

    def _envfrom(self, *s: str) -> int:
        self._sender = s[0]
        if self._protocol & C.P_NOMAIL:
            return C.CONTINUE
        return self._call(C.M_ENVFROM, self._priv.envfrom, *s)

    def _envrcpt(self, s: str) -> int:
        if self._protocol & C.P_NORCPT:
            return C.CONTINUE
        return self._call(C.M_ENVRCPT, self._priv.envrcpt, s)

    def _data(self) -> int:
        if self._protocol & C.P_NODATA:
            return C.CONTINUE
        return self._call(C.M_DATA, self._priv.data)

    def _header(self, fld: str, val: Any) -> int:
        if self._protocol & C.P_NOHDRS:
            return C.CONTINUE
        return self._call(None, self._priv.header_bytes, fld, header_bytes(val))

    def _eoh(self) -> int:
        if self._protocol & C.P_NOEOH:
            return C.CONTINUE
        return self._call(C.M_EOH, self._priv.eoh)

    def _feed_body(self, bfp: IO[bytes]) -> int:
        if self._protocol & C.P_NOBODY:
            return C.CONTINUE
        while True:
            buf = bfp.read(8192)
            if not buf:
                return C.CONTINUE
            rc = self._call(None, self._priv.body, buf)
            if rc != C.CONTINUE:
                return rc

    def _eom(self) -> int:
        self._body = BytesIO()
        return self._call(C.M_EOM, self._priv.eom)

    def _feedFile(self, fp: IO[bytes], sender: str = "spam@adv.com",
                  rcpt: str = "victim@lamb.com", *rcpts: str) -> int:
        """One message from the file ``fp`` (bytes), through envfrom ... eom."""
        self._reset_recording()
        msg = read_message(fp)
        self._msg = msg
        rc = self._envfrom(f"<{sender}>")
        if rc != C.CONTINUE:
            return rc
        for address in (rcpt, *rcpts):
            rc = self._envrcpt(f"<{address}>")
            if rc != C.CONTINUE:
                return rc
        rc = self._data()
        if rc != C.CONTINUE:
            return rc
        for name, value in msg.items():
            rc = self._header(name, value)
            if rc != C.CONTINUE:
                return rc
        rc = self._eoh()
        if rc != C.CONTINUE:
            return rc
        head, body = split_message(msg)
        rc = self._feed_body(BytesIO(body))
        if rc != C.CONTINUE:
            return rc
        rc = self._eom()
        assert self._body is not None
        if self._bodyreplaced:
            body = self._body.getvalue()
        head, _ = split_message(msg)  # headers as the filter left them
        self._body = BytesIO(head + b"\n\n" + body)
        return rc

    def _feedMsg(self, fname: str, sender: str = "spam@adv.com",
                 *rcpts: str) -> int:
        """:meth:`_feedFile` on ``test/FNAME``."""
        with open("test/" + fname, "rb") as fp:
            return self._feedFile(fp, sender, *rcpts)

    def _abort(self) -> None:
        """What the MTA's ABORT does: the milter's abort(), then close."""
        if self._priv is not None:
            self._priv.abort()
        self._close()

    def _close(self) -> None:
        from . import close_callback

        close_callback(self)
