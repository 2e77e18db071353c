"""Applicable conditions detach a filter for the rest of the message or connection."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from composelib import Composed, recording, spec

from milterkit.compose import (
    Authenticated,
    Condition,
    ConditionError,
    RemoteNetwork,
    Unauthenticated,
    make_condition,
)
from milterkit.protocol import SocketAddress
from milterkit.testing.server import Connection

AUTHENTICATED = {"M": {"{auth_authen}": "alice", "{auth_type}": "PLAIN"}}


def run(condition: Condition, **server: Any) -> list[str]:
    calls: list[str] = []
    composed = Composed([spec("guarded", recording(calls, ["envelope-recipient", "header"]),
                              conditions=[condition]),
                         spec("always", recording(calls, ["header"]))], **server)
    composed.run()
    return calls


def test_authenticated_applies_to_authenticated_senders_only() -> None:
    assert "guarded:header" in run(Authenticated(), macros=AUTHENTICATED)
    calls = run(Authenticated())
    assert "guarded:header" not in calls
    assert "guarded:envelope-recipient" not in calls
    assert "always:header" in calls


def test_unauthenticated_applies_to_unauthenticated_senders_only() -> None:
    assert "guarded:header" in run(Unauthenticated())
    calls = run(Unauthenticated(), macros=AUTHENTICATED)
    assert "guarded:header" not in calls
    assert "always:header" in calls


def client_at(address: str, family: str = "4") -> Connection:
    return Connection(address=SocketAddress(family, address, 25000))


def test_remote_network_skips_trusted_networks() -> None:
    condition = make_condition({"name": "remote-network",
                                "trusted-networks": ["192.0.2.0/24", "2001:db8::/32"]})
    assert isinstance(condition, RemoteNetwork)
    assert "guarded:header" in run(condition, connection=client_at("198.51.100.7"))
    assert "guarded:header" not in run(condition, connection=client_at("192.0.2.44"))
    assert "guarded:header" not in run(condition, connection=client_at("2001:db8::5", "6"))
    assert "guarded:header" in run(condition, connection=client_at("2001:db9::5", "6"))


def test_remote_network_default_trusts_loopback_only() -> None:
    condition = make_condition("remote-network")
    assert "guarded:header" not in run(condition, connection=client_at("127.0.0.1"))
    assert "guarded:header" in run(condition, connection=client_at("10.1.2.3"))


def test_a_message_stopper_detaches_for_that_message_only() -> None:
    class SkipBob(Condition):
        name = "skip-bob"

        def envelope_recipient(self, context: Any, address: str) -> bool:
            return "bob" in address

    from milterkit.testing import Message

    calls: list[str] = []
    composed = Composed([spec("guarded", recording(calls, ["header"]), conditions=[SkipBob()])])
    composed.run([Message.build(recipients=["bob@example.org"], headers=[("A", "1")]),
                  Message.build(recipients=["carol@example.org"], headers=[("A", "1")])])
    assert calls == ["guarded:header"]  # the second message only
    verdicts = [result.filter_verdicts for result in composed.results]
    assert verdicts == [{"guarded": "detached"}, {"guarded": "continue"}]


def test_ones_own_condition_from_a_module(tmp_path: Path) -> None:
    (tmp_path / "my_conditions.py").write_text(
        "from milterkit.compose import Condition\n"
        "class HeloIs(Condition):\n"
        "    name = 'helo-is'\n"
        "    def __init__(self, expected):\n"
        "        self.expected = expected\n"
        "    def helo(self, context, fqdn):\n"
        "        return fqdn != self.expected\n"
    )
    factory = f"{tmp_path / 'my_conditions.py'}:HeloIs"
    with pytest.raises(ConditionError, match="expected"):
        make_condition(factory)  # needs its parameter
    condition = make_condition({"name": factory, "expected": "delian"})
    assert "guarded:header" in run(condition)  # the test server says HELO delian
    condition = make_condition({"name": factory, "expected": "other"})
    assert "guarded:header" not in run(condition)


@pytest.mark.parametrize(("spec_", "message"), [
    ("nosuch", "unknown condition 'nosuch'"),
    ({"trusted-networks": []}, "needs a name"),
    ({"name": "remote-network", "trusted-networks": ["300.1.1.1/8"]}, "remote-network"),
    ({"name": "remote-network", "trusted-networks": "10.0.0.0/8"}, "list of CIDRs"),
    ({"name": "authenticated", "extra": 1}, "condition 'authenticated'"),
    (3, "a name or a table"),
])
def test_bad_conditions_are_clear_errors(spec_: Any, message: str) -> None:
    with pytest.raises(ConditionError, match=message):
        make_condition(spec_)
