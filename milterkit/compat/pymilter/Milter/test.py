"""``Milter.test.TestBase``: pymilter's older offline harness, a mixin combined with the milter
class under test (``class T(TestBase, MyMilter)``). Deprecated in pymilter, still used.

Importing it makes ``Milter.NOREPLY`` equal ``Milter.CONTINUE``, as pymilter's does, so that
``@noreply`` methods driven directly return CONTINUE.
"""

from __future__ import annotations

import sys
from io import BytesIO
from typing import IO, Any

from .. import constants as C
from . import Base, DisabledAction
from ._offline import Recorder, header_bytes, macro_names, read_message, split_message

sys.modules[__name__.rsplit(".", 1)[0]].NOREPLY = C.CONTINUE  # type: ignore[attr-defined]


class TestBase(Recorder):
    """Stubs the context so a milter's methods can be called directly; records the results."""

    def __init__(self, logfile: str = "test/milter.log") -> None:
        self._protocol = 0
        self._actions = C.CURR_ACTS
        self._logfile = logfile
        self.logfp: IO[str] | None = None
        self._sender: str | None = None
        self._macros: dict[str, str] = {}
        self._stage: int | None = None
        self._symlist: list[set[bytes] | None] = [None] * 7
        self._reset_recording()

    def _close(self) -> None:
        if self.logfp:
            self.logfp.close()
            self.logfp = None

    def log(self, *msg: Any) -> None:
        if self.logfp is None:
            self.logfp = open(self._logfile, "a")
        print(*msg, file=self.logfp)

    def setsymval(self, name: str, val: str) -> None:
        self._macros[name] = val

    def getsymval(self, name: str) -> str | None:
        stage = self._stage
        if stage is not None and stage >= 0:
            wanted = self._symlist[stage]
            if wanted is not None and name.encode("utf8") not in wanted:
                return None
        return self._macros.get(name)

    def progress(self) -> None:
        pass

    def setsymlist(self, stage: int, *macros: str) -> None:
        if not self._actions & C.SETSYMLIST:
            raise DisabledAction("SETSYMLIST")
        if self._stage != -1:
            raise RuntimeError("setsymlist may only be called from negotiate")
        names = macro_names(list(macros))
        if len(names) > 5:
            raise ValueError("setsymlist limited to 5 macros by MTA")
        if self._symlist[stage] is not None:
            raise ValueError(f"setsymlist already called for stage: {stage}")
        self._symlist[stage] = names

    def _at(self, stage: int | None, method: Any, *args: Any) -> int:
        self._stage = stage
        try:
            return int(method(*args))
        finally:
            self._stage = None

    def connect(self, host: str = "localhost", helo: str = "spamrelay",
                ip: str = "1.2.3.4") -> int:
        """Negotiate, then the milter's connect and hello (family 1, ``(ip, 1234)``, as
        pymilter's TestBase passes them)."""
        self._body = None
        self._bodyreplaced = False
        Base._setctx(self, None)  # type: ignore[arg-type]
        opts = [C.CURR_ACTS, ~0, 0, 0]
        self._stage = -1
        Base.negotiate(self, opts)  # type: ignore[arg-type]
        self._stage = None
        rc = self._at(C.M_CONNECT, super().connect, host, 1, (ip, 1234))  # type: ignore[misc]
        if rc != C.CONTINUE:
            self.close()  # type: ignore[attr-defined]
            return rc
        rc = self._at(C.M_HELO, self.hello, helo)  # type: ignore[attr-defined]
        if rc != C.CONTINUE:
            self.close()  # type: ignore[attr-defined]
        return rc

    def feedFile(self, fp: IO[bytes], sender: str = "spam@adv.com",
                 rcpt: str = "victim@lamb.com", *rcpts: str) -> int:
        """One message from ``fp`` through the milter's methods, then close()."""
        me: Any = self
        self._reset_recording()
        self._sender = f"<{sender}>"
        msg = read_message(fp)
        rc = self._at(C.M_ENVFROM, me.envfrom, self._sender)
        if rc != C.CONTINUE:
            return rc
        for address in (rcpt, *rcpts):
            rc = self._at(C.M_ENVRCPT, me.envrcpt, f"<{address}>")
            if rc != C.CONTINUE:
                return rc
        rc = self._at(C.M_DATA, me.data)
        if rc != C.CONTINUE:
            return rc
        for name, value in msg.items():
            rc = self._at(None, me.header_bytes, name, header_bytes(value))
            if rc != C.CONTINUE:
                return rc
        rc = self._at(C.M_EOH, me.eoh)
        if rc != C.CONTINUE:
            return rc
        head, body = split_message(msg)
        stream = BytesIO(body)
        while buf := stream.read(8192):
            rc = self._at(None, me.body, buf)
            if rc != C.CONTINUE:
                return rc
        self._msg = msg
        self._body = BytesIO()
        rc = self._at(C.M_EOM, me.eom)
        if self._bodyreplaced:
            body = self._body.getvalue()
        head, _ = split_message(msg)
        self._body = BytesIO(head + b"\n\n" + body)
        me.close()
        self._close()
        return rc

    def feedMsg(self, fname: str, sender: str = "spam@adv.com", *rcpts: str) -> int:
        """:meth:`feedFile` on ``test/FNAME``."""
        with open("test/" + fname, "rb") as fp:
            return self.feedFile(fp, sender, *rcpts)
