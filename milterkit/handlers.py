"""Handlers checked where they are written: typed ``connect``/``on``, signatures, ``do_*`` names.

- :meth:`ConnectMixin.connect` and :meth:`ConnectMixin.on` have one overload per signal name, so
  mypy checks a ``header`` handler's parameters (``(context, name: str, value: str)``).
- At connect time a handler whose signature cannot take the signal's arguments is refused with
  an error that names them (:class:`~milterkit.errors.SignalError`), not at the first message.
- A :class:`~milterkit.ClientContext` subclass with a ``do_*`` method that matches no signal
  (``do_envelope_form``) is refused when the class is created, with a "did you mean".
"""

from __future__ import annotations

import difflib
import inspect
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Literal, TypeVar, overload

from .errors import SignalError

if TYPE_CHECKING:
    from .macros import MacrosRequests
    from .protocol.commands import SocketAddress
    from .protocol.negotiation import Option
    from .result import MessageResult
    from .signals import SignalTable
    from .status import State, Status

    #: What a stage handler returns: a Status, None (no opinion), or an awaitable of either.
    Verdict = Status | Awaitable[Status | None] | None

#: The arguments each signal's handlers get after the context, by name (milter-manager's).
SIGNAL_ARGUMENTS: Mapping[str, tuple[str, ...]] = {
    "negotiate": ("option", "macros_requests"),
    "connect": ("host_name", "address"),
    "helo": ("fqdn",),
    "envelope-from": ("address",),
    "envelope-recipient": ("address",),
    "data": (),
    "unknown": ("command",),
    "header": ("name", "value"),
    "end-of-header": (),
    "body": ("chunk",),
    "end-of-message": ("chunk",),
    "abort": ("state",),
    "negotiate-response": ("option", "macros_requests", "status"),
    **{f"{name}-response": ("status",) for name in (
        "connect", "helo", "envelope-from", "envelope-recipient", "data", "unknown", "header",
        "end-of-header", "body", "end-of-message", "abort")},
    "define-macro": ("command", "macros"),
    "timeout": (),
    "message-processed": ("result",),
    "finished": (),
    "error": ("error",),
    "reset": (),
}


#: Handlers already checked, by what their signature is made of: the signal, whether bound, the
#: code object and the defaults. The runtime and the message log connect bound methods and
#: closures per connection, all sharing code objects, and inspect.signature was a large part
#: of a connection's set-up (issue 15).
_CHECKED: set[tuple[Any, ...]] = set()


def _signature_key(name: str, handler: Callable[..., Any]) -> tuple[Any, ...] | None:
    bound = inspect.ismethod(handler)
    function = handler.__func__ if bound else handler  # type: ignore[attr-defined]
    if (not inspect.isfunction(function) or hasattr(function, "__wrapped__")
            or hasattr(function, "__signature__")):
        return None
    kwdefaults = function.__kwdefaults__
    key = (name, bound, function.__code__, function.__defaults__,
           tuple(sorted(kwdefaults.items())) if kwdefaults else None)
    try:
        hash(key)
    except TypeError:  # an unhashable default value
        return None
    return key


def check_signature(name: str, handler: Callable[..., Any], arguments: Sequence[str]) -> None:
    """Raise :class:`SignalError` unless ``handler(context, *arguments)`` can be called."""
    key = _signature_key(name, handler)
    if key is not None:
        key += (tuple(arguments),)
    if key is not None and key in _CHECKED:
        return
    try:
        signature = inspect.signature(handler)
    except (TypeError, ValueError):
        return  # a builtin or C callable without a signature: nothing to check
    try:
        signature.bind(None, *arguments)
    except TypeError:
        call = ", ".join(("context", *arguments))
        raise SignalError(
            f"{name} handlers are called as handler({call}); "
            f"{getattr(handler, '__qualname__', handler)!r} takes {signature}"
        ) from None
    if key is not None and len(_CHECKED) < 4096:
        _CHECKED.add(key)


def unknown_signal(name: str, names: frozenset[str]) -> SignalError:
    """The error for a name that is no signal: a "did you mean" and the valid names."""
    hint = name.replace("_", "-")
    guesses = [hint] if hint in names else difflib.get_close_matches(hint, sorted(names), 1)
    extra = f" (did you mean {guesses[0]!r}?)" if guesses else ""
    return SignalError(f"unknown signal {name!r}{extra}; valid: {', '.join(sorted(names))}")


def check_class_handlers(cls: type) -> None:
    """Refuse a ``do_*`` method of ``cls`` that matches no stage signal (a typo never fires)."""
    from .stages import STAGES

    methods = {stage.method: stage.name for stage in STAGES.values()}
    for attribute in vars(cls):
        if attribute.startswith("do_") and attribute not in methods:
            guess = difflib.get_close_matches(attribute, list(methods), 1, 0.6)
            hint = f"; did you mean {guess[0]!r}?" if guess else ""
            raise SignalError(
                f"{cls.__name__}.{attribute} matches no signal{hint} "
                f"(class handlers: {', '.join(methods)})"
            )
    for method, signal in methods.items():
        handler = vars(cls).get(method)
        if handler is not None and callable(handler):
            try:
                signature = inspect.signature(handler)
            except (TypeError, ValueError):
                continue
            try:
                signature.bind(None, *SIGNAL_ARGUMENTS[signal])
            except TypeError:
                call = ", ".join(("self", *SIGNAL_ARGUMENTS[signal]))
                raise SignalError(
                    f"{cls.__name__}.{method} is called as {method}({call}); it takes {signature}"
                ) from None


# --------------------------------------------------------------------------- handler types
# The context parameter is Any: a handler may annotate it with its own ClientContext subclass.

NoArgs = TypeVar("NoArgs", bound="Callable[[Any], Verdict]")
Notified = TypeVar("Notified", bound="Callable[[Any], object]")
OneText = TypeVar("OneText", bound="Callable[[Any, str], Verdict]")
TwoTexts = TypeVar(
    "TwoTexts", bound="Callable[[Any, str, str], Verdict]"
)
Chunk = TypeVar("Chunk", bound="Callable[[Any, bytes], Verdict]")
OnConnect = TypeVar(
    "OnConnect",
    bound="Callable[[Any, str, SocketAddress], Verdict]",
)
OnNegotiate = TypeVar(
    "OnNegotiate",
    bound="Callable[[Any, Option, MacrosRequests], Verdict]",
)
OnAbort = TypeVar("OnAbort", bound="Callable[[Any, State], Verdict]")
OnResponse = TypeVar("OnResponse", bound="Callable[[Any, Status], object]")
OnNegotiateResponse = TypeVar(
    "OnNegotiateResponse", bound="Callable[[Any, Option | None, MacrosRequests, Status], object]"
)
OnDefineMacro = TypeVar("OnDefineMacro", bound="Callable[[Any, str, dict[str, str]], object]")
OnMessageProcessed = TypeVar("OnMessageProcessed", bound="Callable[[Any, MessageResult], object]")
OnError = TypeVar("OnError", bound="Callable[[Any, BaseException], object]")

StageResponse = Literal[
    "connect-response", "helo-response", "envelope-from-response",
    "envelope-recipient-response", "data-response", "unknown-response", "header-response",
    "end-of-header-response", "body-response", "end-of-message-response", "abort-response",
]
H = TypeVar("H", bound=Callable[..., Any])


class ConnectMixin:
    """``connect``, ``on`` and ``disconnect`` of a context, typed per signal name."""

    signals: SignalTable

    @overload
    def connect(self, name: Literal["negotiate"], handler: OnNegotiate, *,
                weak: bool = ...) -> OnNegotiate: ...
    @overload
    def connect(self, name: Literal["connect"], handler: OnConnect, *,
                weak: bool = ...) -> OnConnect: ...
    @overload
    def connect(self, name: Literal["helo", "envelope-from", "envelope-recipient", "unknown"],
                handler: OneText, *, weak: bool = ...) -> OneText: ...
    @overload
    def connect(self, name: Literal["header"], handler: TwoTexts, *,
                weak: bool = ...) -> TwoTexts: ...
    @overload
    def connect(self, name: Literal["data", "end-of-header"], handler: NoArgs, *,
                weak: bool = ...) -> NoArgs: ...
    @overload
    def connect(self, name: Literal["body", "end-of-message"], handler: Chunk, *,
                weak: bool = ...) -> Chunk: ...
    @overload
    def connect(self, name: Literal["abort"], handler: OnAbort, *,
                weak: bool = ...) -> OnAbort: ...
    @overload
    def connect(self, name: StageResponse, handler: OnResponse, *,
                weak: bool = ...) -> OnResponse: ...
    @overload
    def connect(self, name: Literal["negotiate-response"], handler: OnNegotiateResponse, *,
                weak: bool = ...) -> OnNegotiateResponse: ...
    @overload
    def connect(self, name: Literal["define-macro"], handler: OnDefineMacro, *,
                weak: bool = ...) -> OnDefineMacro: ...
    @overload
    def connect(self, name: Literal["message-processed"], handler: OnMessageProcessed, *,
                weak: bool = ...) -> OnMessageProcessed: ...
    @overload
    def connect(self, name: Literal["error"], handler: OnError, *,
                weak: bool = ...) -> OnError: ...
    @overload
    def connect(self, name: Literal["timeout", "finished", "reset"], handler: Notified, *,
                weak: bool = ...) -> Notified: ...

    def connect(self, name: str, handler: H, *, weak: bool = False) -> H:
        """Connect ``handler(context, *args)`` to the signal ``name``; returns the handler.

        A handler that cannot take the signal's arguments is refused here, with an error that
        names them. For a name known only at run time use ``context.signals.connect``.
        """
        return self.signals.connect(name, handler, weak=weak)

    def disconnect(self, name: str, handler: Callable[..., Any]) -> None:
        """Disconnect ``handler`` from the signal ``name``."""
        self.signals.disconnect(name, handler)

    @overload
    def on(self, name: Literal["negotiate"]) -> Callable[[OnNegotiate], OnNegotiate]: ...
    @overload
    def on(self, name: Literal["connect"]) -> Callable[[OnConnect], OnConnect]: ...
    @overload
    def on(self, name: Literal["helo", "envelope-from", "envelope-recipient", "unknown"]
           ) -> Callable[[OneText], OneText]: ...
    @overload
    def on(self, name: Literal["header"]) -> Callable[[TwoTexts], TwoTexts]: ...
    @overload
    def on(self, name: Literal["data", "end-of-header"]) -> Callable[[NoArgs], NoArgs]: ...
    @overload
    def on(self, name: Literal["body", "end-of-message"]) -> Callable[[Chunk], Chunk]: ...
    @overload
    def on(self, name: Literal["abort"]) -> Callable[[OnAbort], OnAbort]: ...
    @overload
    def on(self, name: StageResponse) -> Callable[[OnResponse], OnResponse]: ...
    @overload
    def on(self, name: Literal["negotiate-response"]
           ) -> Callable[[OnNegotiateResponse], OnNegotiateResponse]: ...
    @overload
    def on(self, name: Literal["define-macro"]) -> Callable[[OnDefineMacro], OnDefineMacro]: ...
    @overload
    def on(self, name: Literal["message-processed"]
           ) -> Callable[[OnMessageProcessed], OnMessageProcessed]: ...
    @overload
    def on(self, name: Literal["error"]) -> Callable[[OnError], OnError]: ...
    @overload
    def on(self, name: Literal["timeout", "finished", "reset"]
           ) -> Callable[[Notified], Notified]: ...

    def on(self, name: str) -> Callable[[H], H]:
        """Decorator form of :meth:`connect`: ``@context.on("header")``."""
        return lambda handler: self.signals.connect(name, handler)
