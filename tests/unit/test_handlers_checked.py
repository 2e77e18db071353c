"""Handlers are checked where they are written: at connect time, at class creation, by mypy."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest
from mypy import api as mypy_api
from unitlib import new_context

from milterkit import Client, ClientContext, SignalError, Status


def test_a_handler_that_cannot_take_the_arguments_is_refused_at_connect() -> None:
    context, _wire = new_context()
    with pytest.raises(SignalError, match=r"end-of-message handlers are called as "
                                          r"handler\(context, chunk\)"):
        context.connect("end-of-message", lambda ctx: None)  # type: ignore[call-overload]
    with pytest.raises(SignalError, match=r"header handlers are called as "
                                          r"handler\(context, name, value\)"):
        context.connect("header", lambda ctx, name: None)  # type: ignore[call-overload]
    # Defaults and *args still fit.
    context.connect("header", lambda ctx, name, value, extra=None: None)
    context.connect("header", lambda ctx, *args: None)


def test_a_client_handler_is_checked_too() -> None:
    client = Client("inet:0@127.0.0.1")
    with pytest.raises(SignalError, match=r"handler\(context, address\)"):
        client.connect("envelope-from", lambda ctx: None)


def test_an_unknown_signal_lists_the_valid_ones() -> None:
    context, _wire = new_context()
    with pytest.raises(SignalError) as info:
        context.signals.connect("envelope_form", lambda ctx, address: None)
    message = str(info.value)
    assert "did you mean 'envelope-from'?" in message
    assert "valid: abort, abort-response, body" in message


def test_a_do_method_that_matches_no_signal_is_refused_at_class_creation() -> None:
    with pytest.raises(SignalError, match=r"do_envelope_form matches no signal; did you mean "
                                          r"'do_envelope_from'\?"):
        class Typo(ClientContext):
            def do_envelope_form(self, address: str) -> Status | None:
                return None

    with pytest.raises(SignalError, match=r"Short\.do_eom matches no signal.*class handlers: "
                                          r"do_negotiate, do_connect"):
        class Short(ClientContext):
            def do_eom(self, chunk: bytes) -> Status | None:
                return None

    with pytest.raises(SignalError, match=r"do_header is called as do_header\(self, name, value\)"):
        class Narrow(ClientContext):
            def do_header(self, name: str) -> Status | None:  # type: ignore[override]
                return None


def _mypy(tmp_path: Path, body: str) -> tuple[str, int]:
    source = tmp_path / "handlers.py"
    source.write_text(textwrap.dedent(body))
    out, err, status = mypy_api.run(["--strict", "--no-incremental", "--cache-dir", str(tmp_path),
                                     str(source)])
    return out + err, status


def test_mypy_checks_a_handler_against_its_signal(tmp_path: Path) -> None:
    good, status = _mypy(tmp_path, """
        from milterkit import ClientContext, Status

        def on_header(context: ClientContext, name: str, value: str) -> Status | None:
            return None

        def setup(context: ClientContext) -> None:
            context.connect("header", on_header)
    """)
    assert status == 0, good
    bad, status = _mypy(tmp_path, """
        from milterkit import ClientContext, Status

        def on_header(context: ClientContext, chunk: bytes) -> Status | None:
            return None

        def setup(context: ClientContext) -> None:
            context.connect("header", on_header)
    """)
    assert status == 1 and 'No overload variant of "connect"' in bad, bad
