"""``Milter.utils`` behaves as pymilter's doctests say; the decorators negotiate as pymilter's."""

from __future__ import annotations

import io

import pytest

from milterkit.compat.pymilter import Milter
from milterkit.compat.pymilter.Milter import testctx, utils


@pytest.mark.parametrize(("text", "parts"), [
    ("user@example.com", ["user", "example.com"]),
    ('"user@example.com"', ["user@example.com"]),
    ('"user@bar"@example.com', ["user@bar", "example.com"]),
    ("foo", ["foo"]),
    ("@mx.example.com:user@example.com", ["user", "example.com"]),
    ("@user@example.com", ["@user", "example.com"]),
    ("<user@example.com>", ["user", "example.com"]),
])
def test_parse_addr_splits_an_envelope_address(text: str, parts: list[str]) -> None:
    assert utils.parse_addr(text) == parts


@pytest.mark.parametrize(("text", "pair"), [
    ("user@example.com", ("", "user@example.com")),
    ('"Full Name" <foo@example.com>', ("Full Name", "foo@example.com")),
    ("spam@spammer.com <foo@example.com>", ("spam@spammer.com", "foo@example.com")),
    ("God@heaven <@hop1.org,@hop2.net:jeff@spec.org>", ("God@heaven", "jeff@spec.org")),
    ("Real Name ((comment)) <addr...@example.com>", ("Real Name (comment)", "addr...@example.com")),
])
def test_parseaddr_keeps_odd_display_names(text: str, pair: tuple[str, str]) -> None:
    assert utils.parseaddr(text) == pair


def test_iniplist_matches_addresses_blocks_and_globs() -> None:
    assert utils.iniplist("66.179.26.146", ["127.0.0.1", "66.179.26.128/26"])
    assert utils.iniplist("127.0.0.1", ["127.0.0.1", "66.179.26.128/26"])
    assert utils.iniplist("192.168.0.45", ["192.168.0.*"])
    assert utils.iniplist("2001:610:779:0:223:6cff:fe9a:9cf3", ["2001:610:779::/48"])
    assert not utils.iniplist("10.0.0.1", ["127.0.0.1", "192.168.0.*"])
    with pytest.raises(ValueError):
        utils.iniplist("2G01:610:779::1", ["127.0.0.1"])


def test_parse_header_decodes_encoded_words() -> None:
    assert utils.parse_header("=?utf-8?q?caf=C3=A9?= au lait") == "café au lait"
    assert utils.parse_header("plain text") == "plain text"


class Decoding(Milter.Base):
    def __init__(self) -> None:
        self.values: list[object] = []

    @Milter.decode("bytes")
    def envfrom(self, f: object, *s: object) -> int:
        self.values.append(f)
        return Milter.CONTINUE

    @Milter.decode("strict")
    def header(self, name: str, value: object) -> int:
        self.values.append(value)
        return Milter.CONTINUE

    def eom(self) -> int:
        return Milter.CONTINUE


def test_decode_strategies_pass_bytes_or_text() -> None:
    milter = Decoding()
    milter._setctx(None)
    assert milter.envfrom_bytes(b"<a@example.net>") == Milter.CONTINUE
    milter.header_bytes("Subject", b"caf\xc3\xa9")
    milter.header_bytes("Subject", b"caf\xe9")  # not UTF-8: strict passes the bytes
    assert milter.values == [b"<a@example.net>", "café", b"caf\xe9"]


def test_overriding_a_method_requests_its_event_and_nocallback_refuses_it() -> None:
    class Parent(Milter.Base):
        def hello(self, name: str) -> int:
            return Milter.CONTINUE

    class Child(Parent):
        @Milter.nocallback
        def hello(self, name: str) -> int:
            return Milter.CONTINUE

    # The mask is what negotiate removes from the MTA's offer: a masked P_NOHELO is not
    # requested, so the MTA sends HELO.
    assert Parent.protocol_mask() & Milter.P_NOHELO
    assert not Child.protocol_mask() & Milter.P_NOHELO
    opts = [Milter.CURR_ACTS, 0x1FFFFF, 0, 0]
    child = Child()
    child._setctx(None)
    assert child.negotiate(opts) == Milter.CONTINUE and opts[1] & Milter.P_NOHELO
    assert Milter.Base.protocol_mask() & Milter.P_RCPT_REJ
    assert not Milter.rejected_recipients(Parent).protocol_mask() & Milter.P_RCPT_REJ


def test_decorators_refuse_methods_they_cannot_apply_to() -> None:
    with pytest.raises(ValueError, match="non-optional"):
        Milter.noreply(lambda self: 0)
    with pytest.raises(ValueError, match="limited to 5"):
        Milter.symlist("a", "b", "c", "d", "e", "f")(Milter.Base.envfrom)


def test_actions_not_negotiated_raise_disabled_action() -> None:
    Milter.factory = Decoding
    ctx = testctx.TestCtx()
    ctx._connect()
    milter = ctx.getpriv()
    milter._actions = Milter.ADDHDRS
    with pytest.raises(Milter.DisabledAction, match="CHGFROM"):
        milter.chgfrom("<x@example.net>")
    with pytest.raises(ValueError, match="must be doubled"):
        milter.setreply("550", "5.7.1", "100% sure")
    assert ctx._feedFile(io.BytesIO(b"Subject: x\n\nbody\n")) == Milter.CONTINUE


MILTER_NAMES = (
    "Base Milter noreply nocallback symlist decode header_leading_space rejected_recipients "
    "enable_protocols factory runmilter uniqueID set_flags set_exception_policy setdbg getdiag "
    "getversion dictfromlist param2dict envcallback DisabledAction negotiate_callback "
    "connect_callback close_callback CONTINUE REJECT DISCARD ACCEPT TEMPFAIL SKIP NOREPLY "
    "ALL_OPTS ADDHDRS CHGBODY MODBODY ADDRCPT ADDRCPT_PAR DELRCPT CHGHDRS QUARANTINE CHGFROM "
    "SETSYMLIST CURR_ACTS P_NR_HDR P_SKIP P_RCPT_REJ P_HDR_LEADSPC M_EOM error milterContext"
).split()
BASE_METHODS = (
    "connect hello envfrom envrcpt data header eoh body eom abort close unknown negotiate "
    "header_bytes envfrom_bytes envrcpt_bytes getsymval setreply addheader chgheader "
    "addrcpt delrcpt replacebody chgfrom quarantine progress setsymlist"
).split()
LOW_LEVEL_NAMES = (
    "register setconn main stop opensocket settimeout setbacklog set_flags setdbg "
    "set_connect_callback set_helo_callback set_envfrom_callback set_envrcpt_callback "
    "set_header_callback set_eoh_callback set_body_callback set_eom_callback "
    "set_abort_callback set_close_callback set_exception_policy getdiag getversion "
    "milterContext error CONTINUE NOREPLY ALL_OPTS VERSION CURR_ACTS P_NOHDRS M_CONNECT"
).split()
CONTEXT_METHODS = (
    "getsymval setreply addheader chgheader addrcpt delrcpt replacebody chgfrom quarantine "
    "progress setsymlist setpriv getpriv"
).split()


def test_every_name_of_pymilters_api_is_there() -> None:
    from milterkit.compat.pymilter import milter

    missing = [n for n in MILTER_NAMES if not hasattr(Milter, n)]
    missing += [f"Base.{n}" for n in BASE_METHODS if not hasattr(Milter.Base, n)]
    missing += [f"milter.{n}" for n in LOW_LEVEL_NAMES if not hasattr(milter, n)]
    missing += [f"milterContext.{n}" for n in CONTEXT_METHODS
                if not hasattr(milter.milterContext, n)]
    assert missing == []
    assert (Milter.CONTINUE, Milter.REJECT, Milter.DISCARD, Milter.ACCEPT, Milter.TEMPFAIL,
            Milter.SKIP, Milter.NOREPLY, Milter.ALL_OPTS) == (0, 1, 2, 3, 4, 5, 6, 10)
