"""``PurePythonMilter``: an application made of hooks, served by a :class:`milterkit.Client`.

Negotiation follows purepythonmilter: a hook that is not set is not called (``NO_*``) and not
answered; a hook whose return annotation is ``None`` is called without a reply (``NR_*``);
SKIP is always requested; the ``can_*`` flags become the actions asked for. ``restrict_symbols``
(default: an empty list for every configurable stage) says which macros the application sees.
"""

from __future__ import annotations

import asyncio
import importlib
import ipaddress
import logging
import typing
from collections.abc import Awaitable, Callable, Mapping
from types import MappingProxyType, NoneType
from typing import Any

from .... import ActionFlag
from .... import MacroStage as KitMacroStage
from .... import ProtocolFlag as P
from ....protocol.steps import STEP_OF_SIGNAL
from ..protocol import commands, responses
from ..protocol.definitions import MacroStage
from ..session import HookRunner, PurePythonMilterContext
from .logger import ConnectionContextLogger

if typing.TYPE_CHECKING:
    from ....server.client import Client

log = logging.getLogger("purepythonmilter.server.milterserver")

#: Hook name -> the milterkit signal it answers.
_SIGNALS: dict[str, str] = {
    "hook_on_connect": "connect", "hook_on_helo": "helo", "hook_on_mail_from": "envelope-from",
    "hook_on_rcpt_to": "envelope-recipient", "hook_on_data": "data", "hook_on_header": "header",
    "hook_on_end_of_headers": "end-of-header", "hook_on_body_chunk": "body",
    "hook_on_unknown": "unknown",
}
#: Hook name -> (the event it skips when unset, the reply it does without), from the steps table.
_STAGE_FLAGS: dict[str, tuple[P, P]] = {
    hook: (STEP_OF_SIGNAL[signal].no_event, STEP_OF_SIGNAL[signal].no_reply)
    for hook, signal in _SIGNALS.items()
}
#: Command byte of each macro stage (as the define-macro signal names it).
_STAGE_COMMANDS: dict[MacroStage, str] = {
    MacroStage.CONNECT: "C", MacroStage.HELO: "H", MacroStage.MAIL_FROM: "M",
    MacroStage.RCPT_TO: "R", MacroStage.DATA: "T", MacroStage.HEADER: "L",
    MacroStage.END_OF_HEADERS: "N", MacroStage.BODY: "B", MacroStage.END_OF_MESSAGE: "E",
    MacroStage.UNKNOWN: "U",
}
#: purepythonmilter's default: no macros at any stage a milter may configure.
DEFAULT_RESTRICT_SYMBOLS: Mapping[MacroStage, frozenset[str]] = MappingProxyType(
    {stage: frozenset() for stage in MacroStage if stage.value <= 6}
)


class ProgrammingError(BaseException):
    """A hook without a return annotation (negotiation cannot be decided)."""


def hook_needs_reply(hook: Callable[..., Any]) -> bool:
    """Whether the MTA must wait for this hook's answer: its return annotation is not None."""
    hints = typing.get_type_hints(hook)
    if "return" not in hints:
        name = getattr(hook, "__name__", repr(hook))
        raise ProgrammingError(f"Please annotate the return type for hook {name}().")
    return hints["return"] is not NoneType


Hook = Callable[[Any], Awaitable[Any]]


class PurePythonMilter:
    """purepythonmilter's application object: hooks, flags, ``run_server`` and ``logger``."""

    def __init__(
        self,
        *,
        name: str = "PurePythonMilter",
        hook_on_connect: Callable[[commands.Connect], Awaitable[responses.VerdictOrContinue | None]]
        | None = None,
        hook_on_helo: Callable[[commands.Helo], Awaitable[responses.VerdictOrContinue | None]]
        | None = None,
        hook_on_mail_from: Callable[
            [commands.MailFrom], Awaitable[responses.VerdictOrContinue | None]
        ] | None = None,
        hook_on_rcpt_to: Callable[[commands.RcptTo], Awaitable[responses.VerdictOrContinue | None]]
        | None = None,
        on_rcpt_to_include_rejected: bool = False,
        hook_on_data: Callable[[commands.Data], Awaitable[responses.VerdictOrContinue | None]]
        | None = None,
        hook_on_header: Callable[[commands.Header], Awaitable[responses.VerdictOrContinue | None]]
        | None = None,
        hook_on_end_of_headers: Callable[
            [commands.EndOfHeaders], Awaitable[responses.VerdictOrContinue | None]
        ] | None = None,
        hook_on_body_chunk: Callable[
            [commands.BodyChunk],
            Awaitable[responses.VerdictOrContinue | responses.SkipToNextStage | None],
        ] | None = None,
        hook_on_end_of_message: Callable[
            [commands.EndOfMessage], Awaitable[responses.AbstractResponse | None]
        ] | None = None,
        hook_on_abort: Callable[[commands.Abort], Awaitable[None]] | None = None,
        hook_on_quit: Callable[[commands.Quit], Awaitable[None]] | None = None,
        hook_on_unknown: Callable[
            [commands.Unknown], Awaitable[responses.VerdictOrContinue | None]
        ] | None = None,
        restrict_symbols: Mapping[MacroStage, set[str] | frozenset[str]]
        | None = DEFAULT_RESTRICT_SYMBOLS,
        headers_with_leading_space: bool = False,
        can_add_headers: bool = False,
        can_add_recipients: bool = False,
        can_add_recipients_with_esmtp_args: bool = False,
        can_change_body: bool = False,
        can_change_headers: bool = False,
        can_change_mail_from: bool = False,
        can_remove_recipients: bool = False,
        can_quarantine: bool = False,
    ) -> None:
        self.name = name
        self.hooks: dict[str, Hook | None] = {
            "hook_on_connect": hook_on_connect, "hook_on_helo": hook_on_helo,
            "hook_on_mail_from": hook_on_mail_from, "hook_on_rcpt_to": hook_on_rcpt_to,
            "hook_on_data": hook_on_data, "hook_on_header": hook_on_header,
            "hook_on_end_of_headers": hook_on_end_of_headers,
            "hook_on_body_chunk": hook_on_body_chunk,
            "hook_on_end_of_message": hook_on_end_of_message, "hook_on_abort": hook_on_abort,
            "hook_on_quit": hook_on_quit, "hook_on_unknown": hook_on_unknown,
        }
        for hook_name, hook in self.hooks.items():
            setattr(self, hook_name, hook)
        self.on_rcpt_to_include_rejected = on_rcpt_to_include_rejected
        self.restrict_symbols: dict[MacroStage, set[str]] | None = (
            None if restrict_symbols is None
            else {MacroStage(stage): set(names) for stage, names in restrict_symbols.items()}
        )
        self.headers_with_leading_space = headers_with_leading_space
        self.can_add_headers = can_add_headers
        self.can_add_recipients = can_add_recipients
        self.can_add_recipients_with_esmtp_args = can_add_recipients_with_esmtp_args
        self.can_change_body = can_change_body
        self.can_change_headers = can_change_headers
        self.can_change_mail_from = can_change_mail_from
        self.can_remove_recipients = can_remove_recipients
        self.can_quarantine = can_quarantine
        #: A logger whose lines start with the current connection's short id.
        self.logger: logging.LoggerAdapter[logging.Logger] = ConnectionContextLogger().get(name)
        #: The protocol steps asked for, decided now from the hooks' annotations.
        self.protocol_flags = self._protocol_flags()
        self._client: Client | None = None

    # ------------------------------------------------------------------ negotiation

    def _protocol_flags(self) -> P:
        flags = P.SKIP
        for hook_name, (no_event, no_reply) in _STAGE_FLAGS.items():
            hook = self.hooks[hook_name]
            if hook is None:
                flags |= no_event | no_reply
            elif not hook_needs_reply(hook):
                flags |= no_reply
        if self.hooks["hook_on_rcpt_to"] is not None and self.on_rcpt_to_include_rejected:
            flags |= P.ENVELOPE_RECIPIENT_REJECTED
        if self.headers_with_leading_space:
            flags |= P.HEADER_LEADING_SPACE
        return flags

    def _no_reply_signals(self) -> frozenset[str]:
        silent = set()
        for hook_name, signal in _SIGNALS.items():
            hook = self.hooks[hook_name]
            if hook is not None and not hook_needs_reply(hook):
                silent.add(signal)
        return frozenset(silent)

    @property
    def action_flags(self) -> ActionFlag:
        """The actions asked for, from the ``can_*`` flags."""
        actions = ActionFlag.NONE
        for wanted, flag in (
            (self.can_add_headers, ActionFlag.ADD_HEADERS),
            (self.can_add_recipients, ActionFlag.ADD_RECIPIENT),
            (self.can_add_recipients_with_esmtp_args, ActionFlag.ADD_RECIPIENT_WITH_PARAMETERS),
            (self.can_change_body, ActionFlag.CHANGE_BODY),
            (self.can_change_headers, ActionFlag.CHANGE_HEADERS),
            (self.can_change_mail_from, ActionFlag.CHANGE_FROM),
            (self.can_remove_recipients, ActionFlag.DELETE_RECIPIENT),
            (self.can_quarantine, ActionFlag.QUARANTINE),
        ):
            if wanted:
                actions |= flag
        return actions

    @property
    def macro_requests(self) -> dict[KitMacroStage, list[str]]:
        """The macro lists sent to the MTA: the stages with names in ``restrict_symbols``."""
        requests: dict[KitMacroStage, list[str]] = {}
        for stage, names in (self.restrict_symbols or {}).items():
            if not names:
                continue  # an empty list is honoured milter-side, see hidden_macro_stages
            if stage.value > 6:
                log.warning("%s: restrict_symbols for %s is ignored: no MTA lets a milter "
                            "choose the macros of that stage", self.name, stage.name)
                continue
            requests[KitMacroStage(stage.value)] = sorted(names)
        return requests

    @property
    def hidden_macro_stages(self) -> frozenset[str]:
        """Command bytes of the stages whose macros the application asked not to see."""
        return frozenset(
            _STAGE_COMMANDS[stage]
            for stage, names in (self.restrict_symbols or {}).items()
            if not names and stage.value <= 6
        )

    # ------------------------------------------------------------------ serving

    def build_client(self, spec: str) -> Client:
        """A :class:`milterkit.Client` listening on ``spec`` that serves this application."""
        from ....server.client import Client

        client = Client(
            spec,
            # A hook that raises ends its connection, as in purepythonmilter; the MTA then
            # applies its default action (Postfix: milter_default_action).
            exception_policy=None,
            actions=self.action_flags,
            protocol=self.protocol_flags,
            macro_requests=self.macro_requests,
            context_class=PurePythonMilterContext,
        )
        runner = HookRunner(self.hooks, self.hidden_macro_stages, self._no_reply_signals())
        for signal, handler in runner.signal_handlers().items():
            client.connect(signal, handler)
        client.connect("listen-started", self._listen_started)
        return client

    def _listen_started(self, client: Client, address: Any) -> None:
        host, port = (address[0], address[1]) if isinstance(address, tuple) else (address, "")
        log.info("Server started, awaiting connections on %s:%s...", host, port)

    async def start_server(self, *, host: str, port: int) -> None:
        """Serve on ``host``:``port`` until SIGINT or SIGTERM (or the task is cancelled)."""
        if self._client is not None:
            raise RuntimeError("You can only start this app once.")
        client = self._client = self._configured_client(host, port)
        try:
            await client.start()
            client.install_signal_handlers()
            await client.serve_forever()
        except asyncio.CancelledError:
            await client.shutdown(0.0)
            raise
        finally:
            self._client = None

    def run_server(self, *, host: str, port: int) -> None:
        """Blocking: serve on ``host``:``port`` until SIGINT or SIGTERM."""
        if self._client is not None:
            raise RuntimeError("You can only start this app once.")
        client = self._client = self._configured_client(host, port)
        options = _runtime_options()
        try:
            if options is None:
                client.run()
            else:
                client.run(workers=options.workers, loop=options.loop)
        finally:
            self._client = None

    def _configured_client(self, host: str, port: int) -> Client:
        """The client for ``run_server``, with ``milterkit compat``'s run options if it set
        any (``--listen`` overrides the application's address)."""
        options = _runtime_options()
        if options is None:
            return self.build_client(_spec(host, port))
        client = self.build_client(options.listen or _spec(host, port))
        if options.timeout is not None:
            client.timeout = options.timeout
            client.context_options["timeout"] = options.timeout
        if options.max_connections is not None:
            client.max_connections = options.max_connections
        client.shutdown_timeout = options.shutdown_timeout
        return client


def _runtime_options() -> Any:
    """``milterkit.compat.runtime.OPTIONS`` where the ``milterkit compat`` command provides
    them (workers, loop, listen, timeout...), else None."""
    try:
        runtime = importlib.import_module("milterkit.compat.runtime")
    except ImportError:
        return None
    return getattr(runtime, "OPTIONS", None)


def _spec(host: str, port: int) -> str:
    """purepythonmilter's (host, port) as a milterkit connection spec."""
    try:
        family = "inet6" if ipaddress.ip_address(host).version == 6 else "inet"
    except ValueError:
        family = "inet"  # a host name
    return f"{family}:{int(port)}@{host}"
