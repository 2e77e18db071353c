"""GObject-style signals on blinker: ordered receivers, strong references, a parent table.

blinker keeps receivers in sets, which do not keep order; milter-manager's contract ("the first
decisive status wins") needs connection order, so :class:`Signal` swaps in an insertion-ordered
set (blinker's documented ``set_class`` hook). A :class:`SignalTable` maps signal names to signals;
a context's table may have a parent (its Client's), whose receivers run first, so handlers
connected on a Client reach every context it creates.
"""

from __future__ import annotations

import functools
import weakref
from collections.abc import Callable, Hashable, Iterable, Iterator, Mapping, MutableSet, Sequence
from typing import Any, TypeVar

import blinker
from blinker.base import ANY_ID

from .handlers import check_signature, unknown_signal

F = TypeVar("F", bound=Callable[..., Any])


class OrderedSet(MutableSet[Any]):
    """A set that iterates in insertion order (backed by a dict)."""

    __slots__ = ("_items",)

    def __init__(self, items: Iterable[Any] = ()) -> None:
        self._items: dict[Any, None] = dict.fromkeys(items)

    def __contains__(self, item: object) -> bool:
        return item in self._items

    def __iter__(self) -> Iterator[Any]:
        return iter(self._items)

    def __len__(self) -> int:
        return len(self._items)

    def add(self, value: Any) -> None:
        self._items[value] = None

    def discard(self, value: Any) -> None:
        self._items.pop(value, None)

    def copy(self) -> OrderedSet:
        return OrderedSet(self._items)

    def __repr__(self) -> str:
        return f"OrderedSet({list(self._items)!r})"


class _Epoch:
    """How many times any :class:`Signal` changed (connect, disconnect, a weak receiver that
    died): a table's cached receiver list is good while this has not moved, one comparison
    where walking the parent chain for a sum of versions took a call per level (issue 15)."""

    __slots__ = ("value",)

    def __init__(self) -> None:
        self.value = 0


_epoch = _Epoch()


class Signal(blinker.NamedSignal):
    """A blinker signal whose receivers run in the order they were connected.

    Every connect and disconnect (weak receivers that die included) moves the epoch shared by
    all signals, so a :class:`SignalTable` can cache receiver lists and know when they went
    stale.
    """

    set_class = OrderedSet  # type: ignore[assignment]

    def connect(self, receiver: F, sender: Any = blinker.ANY, weak: bool = True) -> F:
        try:
            return super().connect(receiver, sender, weak)
        finally:
            _epoch.value += 1  # after the change: a list cached during it is stale too

    def _disconnect(self, receiver_id: Hashable, sender_id: Hashable) -> None:
        try:
            super()._disconnect(receiver_id, sender_id)
        finally:
            _epoch.value += 1

    def cacheable(self) -> bool:
        """Whether the receivers are the same for every sender and all held strongly."""
        if any(isinstance(r, weakref.ref) for r in self.receivers.values()):
            return False
        return all(key == ANY_ID or not ids for key, ids in self._by_sender.items())


@functools.lru_cache(maxsize=32)
def _frozen(names: tuple[str, ...]) -> frozenset[str]:
    return frozenset(names)


class SignalTable:
    """Named signals, created on first use, with an optional parent table.

    ``names`` is the set of valid signal names; connecting to any other name raises
    :class:`~milterkit.errors.SignalError` (a ``ValueError``) that lists the valid ones, so a
    typo (``"envelope_from"``) fails loudly instead of never firing. A handler of a context
    signal whose signature cannot take the signal's arguments is refused the same way.
    """

    __slots__ = ("names", "parent", "arguments", "_signals", "_cache")

    def __init__(
        self, names: Iterable[str], parent: SignalTable | None = None,
        arguments: Mapping[str, Sequence[str]] | None = None,
    ) -> None:
        # Every context's table is made from the same tuple: one set for all (issue 15).
        self.names = _frozen(names) if type(names) is tuple else frozenset(names)
        self.parent = parent
        #: The arguments each signal's handlers take after the sender, when the table checks
        #: handlers' signatures at connect time (a context's table does).
        self.arguments = arguments
        self._signals: dict[str, Signal] = {}
        # name -> (stamp, receivers): emission happens for every packet, connection rarely.
        self._cache: dict[str, tuple[int, tuple[Callable[..., Any], ...]]] = {}

    def _check(self, name: str) -> None:
        if name not in self.names:
            raise unknown_signal(name, self.names)

    def signal(self, name: str) -> Signal:
        """The blinker signal called ``name`` in this table (created if needed)."""
        self._check(name)
        sig = self._signals.get(name)
        if sig is None:
            sig = self._signals[name] = Signal(name)
        return sig

    def connect(self, name: str, handler: F, *, weak: bool = False) -> F:
        """Connect ``handler`` to ``name``; kept alive by a strong reference unless ``weak``."""
        if not callable(handler):
            raise TypeError(f"handler for {name!r} is not callable: {handler!r}")
        signal = self.signal(name)
        if self.arguments is not None and name in self.arguments:
            check_signature(name, handler, self.arguments[name])
        signal.connect(handler, weak=weak)
        return handler

    def disconnect(self, name: str, handler: Callable[..., Any]) -> None:
        """Disconnect ``handler`` from ``name``."""
        self.signal(name).disconnect(handler)

    def _cacheable(self, name: str) -> bool:
        sig = self._signals.get(name)
        if sig is not None and not sig.cacheable():
            return False
        return self.parent is None or self.parent._cacheable(name)

    def has_receivers(self, name: str) -> bool:
        """Whether anything, here or in a parent, listens to ``name``."""
        table: SignalTable | None = self
        while table is not None:
            sig = table._signals.get(name)
            if sig is not None and sig.receivers:
                return True
            table = table.parent
        return False

    def receivers(self, name: str, sender: Any) -> tuple[Callable[..., Any], ...]:
        """The receivers of ``name`` for ``sender``: the parent's first, then this table's."""
        table = self
        sig = table._signals.get(name)
        while sig is None or not sig.receivers:
            # Nothing connected here (the usual case for a context's own table, and for the
            # runtime's below the Client's): the nearest parent's list as it is, from its
            # cache, which every context of a Client shares (issue 15: a fresh context used to
            # miss its own cache for every stage). A loop, not a call per level.
            parent = table.parent
            if parent is None:
                return ()
            table = parent
            sig = table._signals.get(name)
        epoch = _epoch.value
        cached = table._cache.get(name)
        if cached is not None and cached[0] == epoch:
            return cached[1]
        found = tuple(table.parent.receivers(name, sender)) if table.parent is not None else ()
        found += tuple(sig.receivers_for(sender))
        if table._cacheable(name):
            table._cache[name] = (epoch, found)
        return found
