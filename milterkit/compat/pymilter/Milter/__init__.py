"""A clean-room ``Milter`` package: pymilter's object layer over the ``milter`` module.

Subclass :class:`Base`, override the callbacks you need (overriding one is what asks the MTA
for that event), set :data:`factory` and call :func:`runmilter`. Everything here behaves as
pymilter documents it; it runs on milterkit's runtime through
:mod:`milterkit.compat.pymilter.milter`.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable, Iterable
from typing import Any, TypeVar

from ....protocol.steps import STEP_OF_SIGNAL
from .. import milter
from ..constants import *  # noqa: F403 - pymilter re-exports every milter constant
from ..constants import (
    ADDHDRS,
    ADDRCPT,
    ADDRCPT_PAR,
    ALL_OPTS,
    CHGFROM,
    CHGHDRS,
    CONTINUE,
    CURR_ACTS,
    DELRCPT,
    MODBODY,
    NOREPLY,
    P_HDR_LEADSPC,
    P_RCPT_REJ,
    QUARANTINE,
    SETSYMLIST,
)
from ..milter import (  # noqa: F401 - part of Milter's namespace in pymilter
    error,
    getdiag,
    getversion,
    set_exception_policy,
    set_flags,
    setdbg,
)
from ..milter import milterContext as milterContext
from ._helpers import dictfromlist as dictfromlist
from ._helpers import envcallback as envcallback
from ._helpers import param2dict as param2dict
from ._helpers import uniqueID as uniqueID

__version__ = "1.0.6"

F = TypeVar("F", bound=Callable[..., Any])
K = TypeVar("K", bound=type)

#: Milter.Base's callback names for milterkit's signals: pymilter's naming, the one fact this
#: module adds; the steps and macro stages are read from the steps table.
_SIGNAL_OF_CALLBACK: dict[str, str] = {
    "connect": "connect", "hello": "helo", "envfrom": "envelope-from",
    "envrcpt": "envelope-recipient", "data": "data", "unknown": "unknown", "eoh": "end-of-header",
    "body": "body", "header": "header", "eom": "end-of-message",
}
#: Optional callback -> (its no-reply step, its no-event step).
OPTIONAL_CALLBACKS: dict[str, tuple[int, int]] = {
    name: (int(STEP_OF_SIGNAL[signal].no_reply), int(STEP_OF_SIGNAL[signal].no_event))
    for name, signal in _SIGNAL_OF_CALLBACK.items() if STEP_OF_SIGNAL[signal].no_event
}
#: Callback -> the macro stage its @symlist names are requested for.
MACRO_CALLBACKS: dict[str, int] = {
    name: int(stage) for name, signal in _SIGNAL_OF_CALLBACK.items()
    if (stage := STEP_OF_SIGNAL[signal].macro_stage) is not None
}


class DisabledAction(RuntimeError):
    """An action that was not negotiated with the MTA (or disabled by set_flags) was called."""


# ---------------------------------------------------------------------- decorators


def _steps(name: str, decorator: str) -> tuple[int, int]:
    steps = OPTIONAL_CALLBACKS.get(name)
    if steps is None:
        raise ValueError(f"@{decorator} applied to non-optional method: {name}")
    return steps


def nocallback(func: F) -> F:
    """Ask the MTA not to call this method (it must still return CONTINUE)."""
    step = _steps(func.__name__, "nocallback")[1]

    @functools.wraps(func)
    def wrapper(self: Any, *args: Any) -> int:
        if func(self, *args) != CONTINUE:
            raise RuntimeError(f"{func.__name__} return code must be CONTINUE with @nocallback")
        return CONTINUE

    wrapper.milter_protocol = step  # type: ignore[attr-defined]
    return wrapper  # type: ignore[return-value]


def noreply(func: F) -> F:
    """Ask the MTA not to wait for this method's reply; it must return CONTINUE, which becomes
    NOREPLY when the MTA agreed."""
    step = _steps(func.__name__, "noreply")[0]

    @functools.wraps(func)
    def wrapper(self: Any, *args: Any) -> Any:
        result = func(self, *args)
        if self._protocol & step:
            if result != CONTINUE:
                raise RuntimeError(f"{func.__name__} return code must be CONTINUE with @noreply")
            return NOREPLY
        return result

    wrapper.milter_protocol = step  # type: ignore[attr-defined]
    return wrapper  # type: ignore[return-value]


def decode(strategy: str) -> Callable[[F], F]:
    """How envfrom/envrcpt/header values are decoded: 'bytes' (not at all), 'strict' (bytes
    when not UTF-8), 'ignore', 'replace'; the default is 'surrogateescape'."""

    def mark(func: F) -> F:
        func.error_strategy = strategy  # type: ignore[attr-defined]
        return func

    return mark


def symlist(*syms: str) -> Callable[[F], F]:
    """The macros (at most 5) the MTA should send for this callback's stage."""

    def mark(func: F) -> F:
        if len(syms) > 5:
            raise ValueError(f"@symlist limited to 5 macros by MTA: {func.__name__}")
        if func.__name__ not in MACRO_CALLBACKS:
            raise ValueError(f"@symlist applied to non-symlist method: {func.__name__}")
        func._symlist = syms  # type: ignore[attr-defined]
        return func

    return mark


def enable_protocols(klass: K, mask: int) -> K:
    """Class decorator helper: request the protocol steps in ``mask`` (P_RCPT_REJ, ...)."""
    klass._protocol_mask = klass.protocol_mask() & ~mask  # type: ignore[attr-defined]
    return klass


def rejected_recipients(klass: K) -> K:
    """Class decorator: see recipients the MTA already rejected (P_RCPT_REJ)."""
    return enable_protocols(klass, P_RCPT_REJ)


def header_leading_space(klass: K) -> K:
    """Class decorator: header values keep their folding whitespace (P_HDR_LEADSPC)."""
    return enable_protocols(klass, P_HDR_LEADSPC)


_PERCENTS = re.compile(r"%+")


def _decoded(method: Callable[..., Any], values: Iterable[bytes]) -> list[Any] | None:
    """Decode per the method's @decode strategy; None means "pass the bytes"."""
    strategy = getattr(method, "error_strategy", "surrogateescape")
    if strategy == "bytes":
        return None
    try:
        return [value.decode("utf-8", strategy) for value in values]
    except UnicodeDecodeError:  # 'strict' with bytes that are not UTF-8
        return None


class Base:
    """A milter that does nothing: one instance per MTA connection, made by :data:`factory`."""

    _ctx: Any = None
    _actions: int = CURR_ACTS
    _protocol: int = 0

    def _setctx(self, ctx: Any) -> None:
        self._ctx = ctx
        self._actions = CURR_ACTS
        self._protocol = 0
        if ctx:
            ctx.setpriv(self)

    def log(self, *msg: Any) -> None:
        """Overridden by subclasses to log."""

    # ------------------------------------------------------------------ callbacks

    @nocallback
    def connect(self, hostname: str, family: int, hostaddr: Any) -> int:
        return CONTINUE

    @nocallback
    def hello(self, hostname: str) -> int:
        return CONTINUE

    def envfrom_bytes(self, *b: bytes) -> int:
        """The raw MAIL FROM arguments; decodes them for :meth:`envfrom`."""
        args = _decoded(self.envfrom, b)
        return self.envfrom(*(b if args is None else args))

    @nocallback
    def envfrom(self, f: str, *s: str) -> int:
        return CONTINUE

    def envrcpt_bytes(self, *b: bytes) -> int:
        """The raw RCPT TO arguments; decodes them for :meth:`envrcpt`."""
        args = _decoded(self.envrcpt, b)
        return self.envrcpt(*(b if args is None else args))

    @nocallback
    def envrcpt(self, to: str, *s: str) -> int:
        return CONTINUE

    @nocallback
    def data(self) -> int:
        return CONTINUE

    def header_bytes(self, fld: str, val: bytes) -> int:
        """The raw header value; decodes it for :meth:`header`."""
        value = _decoded(self.header, (val,))
        return self.header(fld, val if value is None else value[0])  # type: ignore[arg-type]

    @nocallback
    def header(self, field: str, value: str) -> int:
        return CONTINUE

    @nocallback
    def eoh(self) -> int:
        return CONTINUE

    @nocallback
    def body(self, blk: bytes) -> int:
        return CONTINUE

    @nocallback
    def unknown(self, cmd: str) -> int:
        return CONTINUE

    def eom(self) -> int:
        return CONTINUE

    def abort(self) -> int:
        return CONTINUE

    def close(self) -> int:
        return CONTINUE

    # ------------------------------------------------------------------ negotiation

    @classmethod
    def protocol_mask(cls) -> int:
        """The protocol steps this class refuses: the NO/NR steps of callbacks it does not
        override or decorate, plus P_RCPT_REJ and P_HDR_LEADSPC unless enabled."""
        cached = cls.__dict__.get("_protocol_mask")
        if cached is not None:
            return int(cached)
        mask = P_RCPT_REJ | P_HDR_LEADSPC
        for name, (no_reply, no_event) in OPTIONAL_CALLBACKS.items():
            wanted = getattr(getattr(cls, name), "milter_protocol", 0)
            mask |= (no_reply | no_event) & ~wanted
        cls._protocol_mask = mask  # type: ignore[attr-defined]
        return mask

    def negotiate(self, opts: list[int]) -> int:
        """Take the offered actions, request the offered steps this class wants."""
        try:
            self._actions, offered = opts[0], opts[1]
            for name, stage in MACRO_CALLBACKS.items():
                names = getattr(getattr(self, name), "_symlist", None)
                if names is not None:
                    self.setsymlist(stage, *names)
            self._protocol = offered & ~self.protocol_mask()
            opts[1] = self._protocol
            opts[2] = 0
            opts[3] = 0
        except Exception:
            return ALL_OPTS
        return CONTINUE

    # ------------------------------------------------------------------ actions

    def _need(self, flag: int, name: str) -> None:
        if not self._actions & flag:
            raise DisabledAction(name)

    def getsymval(self, sym: str) -> str | None:
        """A macro's value, or None."""
        return self._ctx.getsymval(sym)  # type: ignore[no-any-return]

    def setreply(self, rcode: str, xcode: str | None = None, msg: str | None = None,
                 *ml: str) -> None:
        """The SMTP reply of the next REJECT/TEMPFAIL; several lines make a multi-line one.
        A ``%`` must be doubled (libmilter would silently drop the reply)."""
        for line in (msg, *ml):
            if line is None:
                continue
            if any(len(run) % 2 for run in _PERCENTS.findall(line)):
                raise ValueError("'%' must be doubled: " + line)
        self._ctx.setreply(rcode, xcode, msg, *ml)

    def setsymlist(self, stage: int, *macros: str) -> None:
        """Request macros for ``stage`` (from negotiate only; at most 5)."""
        self._need(SETSYMLIST, "SETSYMLIST")
        if len(macros) > 5:
            raise ValueError("setsymlist limited to 5 macros by MTA")
        names: list[str] = []
        for macro in macros:
            text = macro.decode() if isinstance(macro, bytes) else macro
            names.extend(text.split(" "))
        self._ctx.setsymlist(stage, " ".join(names))

    def addheader(self, field: str, value: str, idx: int = -1) -> None:
        """Add a header (at position ``idx`` when >= 0)."""
        self._need(ADDHDRS, "ADDHDRS")
        self._ctx.addheader(field, value, idx)

    def chgheader(self, field: str, idx: int, value: str | None) -> None:
        """Change (None/'': delete) the ``idx``-th header named ``field``."""
        self._need(CHGHDRS, "CHGHDRS")
        self._ctx.chgheader(field, idx, value)

    def addrcpt(self, rcpt: str, params: str | None = None) -> None:
        """Add a recipient, with ESMTP ``params`` if given."""
        self._need(ADDRCPT, "ADDRCPT")
        if params:
            self._need(ADDRCPT_PAR, "ADDRCPT_PAR")
        self._ctx.addrcpt(rcpt, params)

    def delrcpt(self, rcpt: str) -> None:
        """Remove a recipient."""
        self._need(DELRCPT, "DELRCPT")
        self._ctx.delrcpt(rcpt)

    def replacebody(self, body: bytes) -> None:
        """Append ``body`` to the replacement body."""
        self._need(MODBODY, "MODBODY")
        self._ctx.replacebody(body)

    def chgfrom(self, sender: str, params: str | None = None) -> None:
        """Change the envelope sender."""
        self._need(CHGFROM, "CHGFROM")
        self._ctx.chgfrom(sender, params)

    def quarantine(self, reason: str) -> None:
        """Quarantine the message with ``reason``."""
        self._need(QUARANTINE, "QUARANTINE")
        self._ctx.quarantine(reason)

    def progress(self) -> None:
        """Tell the MTA we are still working."""
        self._ctx.progress()


class Milter(Base):
    """pymilter's logging example class, kept for applications that subclass it."""

    def log(self, *msg: Any) -> None:
        print("Milter:", *msg)

    @noreply
    def connect(self, hostname: str, family: int, hostaddr: Any) -> int:
        self.log(f"connect from {hostname} at {hostaddr}")
        return CONTINUE

    @noreply
    def hello(self, hostname: str) -> int:
        self.log(f"hello from {hostname}")
        return CONTINUE

    @noreply
    def envfrom(self, f: str, *s: str) -> int:
        self.log("mail from", f, s)
        return CONTINUE

    @noreply
    def envrcpt(self, to: str, *s: str) -> int:
        self.log("rcpt to", to, s)
        return CONTINUE

    @noreply
    def header(self, field: str, value: str) -> int:
        self.log(f"{field}: {value}")
        return CONTINUE

    @noreply
    def eoh(self) -> int:
        self.log("eoh")
        return CONTINUE

    def eom(self) -> int:
        self.log("eom")
        return CONTINUE

    def abort(self) -> int:
        self.log("abort")
        return CONTINUE

    def close(self) -> int:
        self.log("close")
        return CONTINUE


#: Called (no arguments) once per connection to make its milter object; assign your class.
factory: Callable[[], Base] = Milter


# ---------------------------------------------------------------------- the glue callbacks


def _milter_of(ctx: Any) -> Base:
    instance = ctx.getpriv()
    if not instance:
        instance = factory()
        instance._setctx(ctx)
    return instance  # type: ignore[no-any-return]


def negotiate_callback(ctx: Any, opts: list[int]) -> int:
    """Make the connection's milter and let it negotiate."""
    instance = factory()
    instance._setctx(ctx)
    return instance.negotiate(opts)


def connect_callback(ctx: Any, hostname: str, family: int, hostaddr: Any) -> int:
    """The connect callback (makes the milter if negotiate did not)."""
    return _milter_of(ctx).connect(hostname, family, hostaddr)


def close_callback(ctx: Any) -> int:
    """Call close() and detach the milter from the connection."""
    instance = ctx.getpriv()
    if not instance:
        return CONTINUE
    try:
        return instance.close()  # type: ignore[no-any-return]
    finally:
        instance._setctx(None)
        ctx.setpriv(None)


def _with_milter(method: str) -> Callable[..., Any]:
    def callback(ctx: Any, *args: Any) -> Any:
        return getattr(ctx.getpriv(), method)(*args)

    callback.__name__ = f"{method}_callback"
    return callback


def runmilter(name: str, socketname: str, timeout: float = 0, rmsock: bool = True) -> None:
    """Serve :data:`factory`'s milters as ``name`` on ``socketname`` until stopped."""
    milter.set_connect_callback(connect_callback)
    milter.set_helo_callback(_with_milter("hello"))
    milter.set_envfrom_callback(_with_milter("envfrom_bytes"))
    milter.set_envrcpt_callback(_with_milter("envrcpt_bytes"))
    milter.set_header_callback(_with_milter("header_bytes"))
    milter.set_eoh_callback(_with_milter("eoh"))
    milter.set_body_callback(_with_milter("body"))
    milter.set_eom_callback(_with_milter("eom"))
    milter.set_abort_callback(_with_milter("abort"))
    milter.set_close_callback(close_callback)
    milter.setconn(socketname)
    if timeout > 0:
        milter.settimeout(int(timeout))
    milter.register(name, negotiate=negotiate_callback, data=_with_milter("data"),
                    unknown=_with_milter("unknown"))
    milter.opensocket(rmsock)
    milter.main()
