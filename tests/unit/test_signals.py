"""Signal tables: ordered receivers, a parent that runs first, loud typos."""

from __future__ import annotations

import gc
from typing import Any

import pytest
from pytest_mock import MockerFixture

from milterkit import ClientContext, SignalTable

NAMES = ("header", "body", "end-of-message")


def test_receivers_run_in_connection_order() -> None:
    table = SignalTable(NAMES)
    calls: list[int] = []
    handlers = [lambda _sender, n=n: calls.append(n) for n in range(10)]
    for handler in handlers:
        table.connect("header", handler)
    for receiver in table.receivers("header", object()):
        receiver(None)
    assert calls == list(range(10))


def test_parent_receivers_come_first() -> None:
    parent = SignalTable(NAMES)
    child = SignalTable(NAMES, parent=parent)

    def mine(_: Any) -> None: ...

    def theirs(_: Any) -> None: ...

    child.connect("body", mine)
    parent.connect("body", theirs)
    assert child.receivers("body", None) == (theirs, mine)
    assert parent.receivers("body", None) == (theirs,)


def test_has_receivers_sees_the_parent() -> None:
    parent = SignalTable(NAMES)
    child = SignalTable(NAMES, parent=parent)
    assert not child.has_receivers("body")
    parent.connect("body", print)
    assert child.has_receivers("body")
    assert not child.has_receivers("header")


def test_disconnect(mocker: MockerFixture) -> None:
    table = SignalTable(NAMES)
    stub = mocker.stub()
    table.connect("header", stub)
    table.disconnect("header", stub)
    assert table.receivers("header", None) == ()
    assert not table.has_receivers("header")


def test_typo_fails_loudly_with_a_hint() -> None:
    table = SignalTable(NAMES)
    with pytest.raises(ValueError, match=r"unknown signal 'end_of_message'.*'end-of-message'"):
        table.connect("end_of_message", print)
    # A near miss gets a guess, and every unknown name the list of valid ones.
    with pytest.raises(
        ValueError,
        match=r"unknown signal 'hedaer' \(did you mean 'header'\?\); valid: body, end-of-message, "
        r"header$",
    ):
        table.signal("hedaer")


def test_handler_must_be_callable() -> None:
    table = SignalTable(NAMES)
    with pytest.raises(TypeError, match="not callable"):
        table.connect("header", "nope")  # type: ignore[type-var]


def test_connect_keeps_a_strong_reference_by_default() -> None:
    table = SignalTable(NAMES)
    calls: list[str] = []
    table.connect("header", lambda _s: calls.append("strong"))
    table.connect("header", lambda _s: calls.append("weak"), weak=True)
    gc.collect()
    for receiver in table.receivers("header", None):
        receiver(None)
    assert calls == ["strong"]


def test_context_connect_returns_the_handler_and_on_decorates(mocker: MockerFixture) -> None:
    context = ClientContext(lambda data: None)
    stub = mocker.stub()
    assert context.connect("helo", stub) is stub

    @context.on("header")
    def handler(_context: ClientContext, name: str, value: str) -> None: ...

    assert context.handles("header") and context.handles("helo")
    assert not context.handles("body")
    context.disconnect("helo", stub)
    assert not context.handles("helo")


def test_client_table_reaches_its_contexts(mocker: MockerFixture) -> None:
    from milterkit.context import SIGNAL_NAMES

    client = SignalTable(SIGNAL_NAMES)
    stub = mocker.stub()
    client.connect("finished", stub)
    first = ClientContext(lambda data: None, signals=client)
    second = ClientContext(lambda data: None, signals=client)
    first.connection_lost()
    second.connection_lost()
    assert stub.call_args_list == [mocker.call(first), mocker.call(second)]


def test_receiver_cache_sees_later_connections() -> None:
    # Receivers are cached per name; a connect or disconnect on the table or its parent must
    # make the next emission see the change.
    parent = SignalTable(NAMES)
    child = SignalTable(NAMES, parent=parent)

    def first(_: Any) -> None: ...

    def second(_: Any) -> None: ...

    child.connect("body", first)
    assert child.receivers("body", None) == (first,)
    parent.connect("body", second)
    assert child.receivers("body", None) == (second, first)
    child.disconnect("body", first)
    assert child.receivers("body", None) == (second,)


def test_weak_receiver_is_not_kept_alive_by_the_cache() -> None:
    table = SignalTable(NAMES)

    class Handler:
        def __call__(self, _: Any) -> None: ...

    handler = Handler()
    table.connect("body", handler, weak=True)
    assert table.receivers("body", None) == (handler,)
    del handler
    import gc

    gc.collect()
    assert table.receivers("body", None) == ()
