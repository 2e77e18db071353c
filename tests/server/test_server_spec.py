"""Connection specs: every form libmilter and milter-manager accept, and clear errors."""

from __future__ import annotations

import pytest

from milterkit.server.spec import ConnectionSpec, SpecError, parse_spec


@pytest.mark.parametrize(
    ("text", "expected", "canonical"),
    [
        ("unix:/run/m.sock", ConnectionSpec("unix", path="/run/m.sock"), "unix:/run/m.sock"),
        ("local:/run/m.sock", ConnectionSpec("unix", path="/run/m.sock"), "unix:/run/m.sock"),
        ("/run/m.sock", ConnectionSpec("unix", path="/run/m.sock"), "unix:/run/m.sock"),
        ("inet:10025", ConnectionSpec("inet", port=10025), "inet:10025"),
        ("inet:10025@localhost", ConnectionSpec("inet", port=10025, host="localhost"),
         "inet:10025@localhost"),
        ("inet:10025@127.0.0.1", ConnectionSpec("inet", port=10025, host="127.0.0.1"),
         "inet:10025@[127.0.0.1]"),
        ("inet:10025@[127.0.0.1]", ConnectionSpec("inet", port=10025, host="127.0.0.1"),
         "inet:10025@[127.0.0.1]"),
        ("inet6:10025", ConnectionSpec("inet6", port=10025), "inet6:10025"),
        ("inet6:10025@[::1]", ConnectionSpec("inet6", port=10025, host="::1"),
         "inet6:10025@[::1]"),
        ("inet6:0@[0:0:0:0:0:0:0:1]", ConnectionSpec("inet6", port=0, host="::1"),
         "inet6:0@[::1]"),
        ("INET:25", ConnectionSpec("inet", port=25), "inet:25"),
        ("fd:5", ConnectionSpec("fd", fd=5), "fd:5"),
        ("FD:0", ConnectionSpec("fd", fd=0), "fd:0"),
    ],
)
def test_forms(text: str, expected: ConnectionSpec, canonical: str) -> None:
    spec = parse_spec(text)
    assert spec == expected
    assert str(spec) == canonical
    assert parse_spec(str(spec)) == spec


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("10025", "doesn't have a colon"),
        ("inet:", "doesn't have content"),
        ("tcp:25", "protocol must be"),
        ("inet:25x", "invalid character 'x'"),
        ("inet:70000", "over 65535"),
        ("inet:@host", "no port"),
        ("inet:25@", "no host"),
        ("inet:25@[127.0.0.1", "unbalanced"),
        ("inet:25@[example.com]", "not an IP address"),
        ("inet:25@[::1]", "IPv6 address in an inet spec"),
        ("inet6:25@[127.0.0.1]", "IPv4 address in an inet6 spec"),
        ("fd:", "doesn't have content"),
        ("fd:x", "descriptor number has invalid character 'x'"),
        ("fd:-1", "descriptor number has invalid character '-'"),
        ("fd:5@host", "descriptor number has invalid character '@'"),
    ],
)
def test_errors_say_what_is_wrong(text: str, message: str) -> None:
    with pytest.raises(SpecError, match=None) as info:
        parse_spec(text)
    assert message in str(info.value)
    assert repr(text) in str(info.value)


def test_resolve() -> None:
    assert parse_spec("inet:25").resolve() == ("0.0.0.0", 25)
    assert parse_spec("inet6:25").resolve() == ("::", 25)
    assert parse_spec("inet:25@[127.0.0.1]").resolve() == ("127.0.0.1", 25)
    assert parse_spec("inet:25@localhost").resolve() == ("127.0.0.1", 25)
    assert parse_spec("unix:/x").resolve() == "/x"
    # An inherited socket has no address to bind or connect to.
    with pytest.raises(SpecError, match="fd:5 is an inherited socket"):
        parse_spec("fd:5").resolve()
    with pytest.raises(SpecError, match="cannot resolve"):
        parse_spec("inet:25@no-such-host.invalid").resolve()
