"""Macro tables (per stage, merged, cleared where libmilter clears) and macro requests."""

from __future__ import annotations

import pytest

from milterkit import MacrosRequests, MacroTable
from milterkit.protocol import MacroStage


def test_braces_are_optional_in_storage_and_lookup() -> None:
    table = MacroTable()
    table.define(b"M", {"{mail_addr}": "a@example.org", "i": "4QX"})
    assert table["mail_addr"] == "a@example.org"
    assert table["{mail_addr}"] == "a@example.org"
    assert table.get("{i}") == "4QX"
    assert table.by_stage(b"M") == {"mail_addr": "a@example.org", "i": "4QX"}


def test_short_braced_names_are_left_alone() -> None:
    table = MacroTable()
    table.define(b"C", {"{}": "odd", "{": "brace"})
    assert table["{}"] == "odd"
    assert table["{"] == "brace"


def test_later_stages_shadow_earlier_ones() -> None:
    table = MacroTable()
    table.define(b"C", {"j": "mx", "i": "from-connect"})
    table.define(b"M", {"i": "from-mail"})
    assert table["i"] == "from-mail"
    assert table["j"] == "mx"
    assert dict(table) == {"j": "mx", "i": "from-mail"}
    assert len(table) == 2
    assert list(table) == ["j", "i"]


def test_define_replaces_a_stage() -> None:
    table = MacroTable()
    table.define(b"H", {"a": "1"})
    table.define(b"H", {"b": "2"})
    assert table.by_stage(b"H") == {"b": "2"}
    assert "a" not in table


def test_missing_macro() -> None:
    table = MacroTable()
    assert table.get("x") is None
    assert table.get("x", "default") == "default"
    assert "x" not in table
    number: object = 42
    assert number not in table
    with pytest.raises(KeyError):
        table["x"]


@pytest.mark.parametrize(
    ("command", "left"),
    [
        (b"C", b"C"),
        (b"H", b"CH"),
        (b"M", b"CHM"),
        (b"R", b"CHMR"),
        (b"T", b"CHMRTLNBE"),
        (b"E", b"CHMRTLNBE"),
        # UNKNOWN's macros last until the next command: only another U keeps them.
        (b"U", b"CHMRTLNBEU"),
    ],
)
def test_clear_after_forgets_later_stages(command: bytes, left: bytes) -> None:
    table = MacroTable()
    for stage in b"CHMRTLNBEU":
        table.define(bytes([stage]), {"s": chr(stage)})
    table.clear_after(command)
    assert table.stages() == [bytes([s]) for s in left]


def test_clear_message_keeps_connection_and_helo() -> None:
    table = MacroTable()
    for stage in b"CHMRTLNBEU":
        table.define(bytes([stage]), {chr(stage): "v"})
    table.clear_message()
    assert table.stages() == [b"C", b"H", b"U"]
    table.clear()
    assert table.stages() == []
    assert repr(table) == "MacroTable({})"


def test_requests_by_enum_number_or_name() -> None:
    requests = MacrosRequests()
    requests.set_symbols(MacroStage.HELO, "G", "N")
    requests.set_symbols(2, "{mail_addr}")
    requests.set_symbols("end-of-message", "i")
    assert requests == {
        MacroStage.HELO: ["G", "N"],
        MacroStage.ENVELOPE_FROM: ["{mail_addr}"],
        MacroStage.END_OF_MESSAGE: ["i"],
    }
    assert requests.get_symbols("helo") == ["G", "N"]
    assert requests.get_symbols(MacroStage.DATA) == []


def test_requests_refuse_unknown_stages() -> None:
    requests = MacrosRequests()
    with pytest.raises(ValueError, match="unknown macro stage 'body'"):
        requests.set_symbols("body", "x")
    with pytest.raises(ValueError):
        requests.set_symbols(7, "x")


def test_requests_merge_without_duplicates() -> None:
    requests = MacrosRequests()
    requests.set_symbols(MacroStage.HELO, "G", "N")
    requests.merge({MacroStage.HELO: ["N", "U"], MacroStage.CONNECT: ["j"]})
    assert requests == {MacroStage.HELO: ["G", "N", "U"], MacroStage.CONNECT: ["j"]}
