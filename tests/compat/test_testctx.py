"""``Milter.testctx.TestCtx`` and ``Milter.test.TestBase`` drive a Milter.Base filter offline,
as pymilter's do (no socket, no runtime)."""

from __future__ import annotations

import io
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from milterkit.compat import shadow
from milterkit.compat.pymilter import SHADOWED

MESSAGE = (
    b"From: Alice <alice@example.net>\n"
    b"To: bob@example.org\n"
    b"Subject: offline\n"
    b"\n"
    b"the body, with a virus signature EICAR\n"
)


@pytest.fixture
def Milter() -> Iterator[Any]:
    finder = shadow.install(SHADOWED)
    try:
        import Milter as module

        yield module
    finally:
        shadow.uninstall(finder)


def _sample(Milter: Any) -> Any:
    class Sample(Milter.Base):  # type: ignore[misc]
        def __init__(self) -> None:
            self.user: str | None = None
            self.auth_type: str | None = None
            self.seen: list[str] = []
            self.chunks: list[bytes] = []

        @Milter.symlist("{auth_authen}")  # type: ignore[untyped-decorator]
        def envfrom(self, f: str, *s: str) -> int:
            self.user = self.getsymval("{auth_authen}")
            self.auth_type = self.getsymval("{auth_type}")
            self.seen.append(f)
            return int(Milter.CONTINUE)

        @Milter.noreply  # type: ignore[untyped-decorator]
        def header(self, name: str, value: str) -> int:
            self.seen.append(f"{name}:{value}")
            return int(Milter.CONTINUE)

        def body(self, chunk: bytes) -> int:
            self.chunks.append(chunk)
            return int(Milter.CONTINUE)

        def eom(self) -> int:
            if b"EICAR" in b"".join(self.chunks):
                self.replacebody(b"removed\n")
                self.addheader("X-Scanned", "infected")
                return int(Milter.ACCEPT)
            return int(Milter.CONTINUE)

    return Sample


def test_testctx_negotiates_connects_and_feeds_a_message(Milter: Any) -> None:
    from Milter.testctx import TestCtx

    Milter.factory = _sample(Milter)
    ctx = TestCtx()
    ctx._setsymval("{auth_authen}", "batman")
    ctx._setsymval("{auth_type}", "batcomputer")
    assert ctx._connect(helo="client.example") == Milter.CONTINUE
    milter = ctx.getpriv()
    # Only the overridden callbacks were requested: no P_NOMAIL, P_NOHDRS, P_NOBODY...
    assert not ctx._protocol & (Milter.P_NOMAIL | Milter.P_NOHDRS | Milter.P_NOBODY)
    assert ctx._protocol & Milter.P_NOHELO and ctx._protocol & Milter.P_NOCONNECT
    assert ctx._protocol & Milter.P_NR_HDR  # @noreply on header
    rc = ctx._feedFile(io.BytesIO(MESSAGE), "alice@example.net", "bob@example.org")
    assert rc == Milter.ACCEPT
    assert milter.user == "batman"
    assert milter.auth_type is None, "@symlist did not hide an unrequested macro"
    assert milter.seen[:2] == ["<alice@example.net>", "From:Alice <alice@example.net>"]
    assert ctx._bodyreplaced and ctx._headerschanged
    delivered = ctx._body.getvalue()
    assert delivered.endswith(b"\n\nremoved\n") and b"X-Scanned: infected" in delivered
    ctx._close()
    assert ctx.getpriv() is None


def test_testctx_refuses_modifications_outside_eom(Milter: Any) -> None:
    from Milter.testctx import TestCtx

    class Early(Milter.Base):  # type: ignore[misc]
        def envfrom(self, f: str, *s: str) -> int:
            self.addheader("X-Too", "early")
            return int(Milter.CONTINUE)

    Milter.factory = Early
    ctx = TestCtx()
    ctx._connect()
    with pytest.raises(OSError, match="addheader not called from eom"):
        ctx._feedFile(io.BytesIO(MESSAGE))


def test_testbase_mixin_drives_the_filter_and_logs(
    Milter: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.chdir(tmp_path)
    # Importing Milter.test sets Milter.NOREPLY = CONTINUE for the process, as pymilter's does:
    # import it afresh and put NOREPLY back afterwards, so other tests see the real value.
    monkeypatch.setattr(Milter, "NOREPLY", Milter.NOREPLY)
    monkeypatch.delitem(sys.modules, "milterkit.compat.pymilter.Milter.test", raising=False)
    (tmp_path / "test").mkdir()
    (tmp_path / "test" / "virus").write_bytes(MESSAGE)
    from Milter.test import TestBase

    sample = _sample(Milter)

    class T(TestBase, sample):  # type: ignore[misc, valid-type]
        def __init__(self) -> None:
            TestBase.__init__(self)
            sample.__init__(self)

    milter = T()
    milter.setsymval("{auth_authen}", "robin")
    assert milter.connect() == Milter.CONTINUE
    assert milter.feedMsg("virus") == Milter.ACCEPT
    assert milter._bodyreplaced and milter.user == "robin"
    assert Milter.NOREPLY == Milter.CONTINUE  # as pymilter's Milter.test makes it
