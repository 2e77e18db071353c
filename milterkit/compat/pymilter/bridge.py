"""The bridge from milterkit's signals to pymilter-style callbacks.

One :class:`Bridge` serves a :class:`~milterkit.Client`: for every MTA connection it makes a
:class:`~.context.milterContext` and a worker thread, and answers each stage by running the
registered callback on that thread, turning its integer result into a milterkit status the way
libmilter reads it. The runtime waits for the thread as it waits for a coroutine handler.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import sys
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ...context import ClientContext
from ...macros import MacrosRequests
from ...protocol.commands import SocketAddress
from ...protocol.constants import ActionFlag, ProtocolFlag
from ...protocol.negotiation import Option, effective_offer
from ...protocol.steps import STEP_OF_SIGNAL
from ...status import Status
from ..threads import ConnectionThread
from . import constants as C
from .context import milterContext

log = logging.getLogger("milterkit.compat.pymilter")

#: pymilter's return codes -> milterkit's statuses.
STATUS_OF: dict[int, Status] = {
    C.CONTINUE: Status.CONTINUE, C.REJECT: Status.REJECT, C.DISCARD: Status.DISCARD,
    C.ACCEPT: Status.ACCEPT, C.TEMPFAIL: Status.TEMPORARY_FAILURE, C.SKIP: Status.SKIP,
    C.NOREPLY: Status.NO_REPLY, C.ALL_OPTS: Status.ALL_OPTIONS,
}
#: pymilter's callback names for milterkit's signals (the one fact this layer adds); the step
#: that stops the MTA sending each event is read from the steps table.
SIGNAL_OF_CALLBACK: dict[str, str] = {
    "connect": "connect", "helo": "helo", "envfrom": "envelope-from",
    "envrcpt": "envelope-recipient", "data": "data", "unknown": "unknown", "header": "header",
    "eoh": "end-of-header", "body": "body",
}
#: Callback name -> the protocol step that stops the MTA sending the event (no callback).
_NO_EVENT: dict[str, int] = {
    name: int(STEP_OF_SIGNAL[signal].no_event) for name, signal in SIGNAL_OF_CALLBACK.items()
}


@dataclass
class Registry:
    """What the application registered through the ``milter`` module (libmilter's smfiDesc)."""

    name: str = "pythonfilter"
    callbacks: dict[str, Callable[..., Any] | None] = field(default_factory=dict)
    flags: int = C.CURR_ACTS
    exception_policy: int = C.TEMPFAIL
    created: int = 0
    deleted: int = 0


@dataclass
class _Connection:
    ctx: milterContext
    thread: ConnectionThread
    reply_args: tuple[Any, ...] | None = None


def _family_and_address(address: SocketAddress | None) -> tuple[int, Any]:
    """CONNECT's address as pymilter passes it: (family, (ip, port)) and friends."""
    if address is None or address.family == "U":
        return 0, None
    if address.family == "4":
        return socket.AF_INET, (address.address, address.port)
    if address.family == "6":
        return socket.AF_INET6, (address.address, address.port, 0, 0)
    return socket.AF_UNIX, address.address


def _raw(text: str) -> bytes:
    return text.encode("utf-8", "surrogateescape")


class Bridge:
    """Connects a :class:`Registry`'s callbacks to a Client's signals."""

    def __init__(self, registry: Registry) -> None:
        self.registry = registry
        self._connections: dict[ClientContext, _Connection] = {}

    def attach(self, client: Any) -> None:
        """Connect the handlers to ``client`` (a :class:`milterkit.Client`)."""
        client.connect("negotiate", self._negotiate)
        # The arguments each pymilter callback takes, from the signal's.
        arguments: dict[str, Callable[..., tuple[Any, ...]]] = {
            "connect": self._connect_args, "helo": lambda c, name: (name,),
            "envfrom": self._envelope_args, "envrcpt": self._envelope_args,
            "data": lambda c: (), "unknown": lambda c, line: (line,),
            "header": lambda c, n, v: (n, _raw(v)), "eoh": lambda c: (),
            "body": lambda c, chunk: (chunk,),
        }
        for name, signal in SIGNAL_OF_CALLBACK.items():
            client.connect(signal, self._stage(name, arguments[name]))
        client.connect("end-of-message", self._end_of_message)
        client.connect("abort", self._abort)
        client.connect("reset", self._reset)
        client.connect("finished", self._finished)

    # -------------------------------------------------------------- connection state

    def _connection(self, context: ClientContext) -> _Connection:
        found = self._connections.get(context)
        if found is None:
            try:
                loop: asyncio.AbstractEventLoop | None = asyncio.get_running_loop()
            except RuntimeError:
                loop = None
            found = _Connection(milterContext(context, loop), ConnectionThread("pymilter"))
            self._connections[context] = found
            self.registry.created += 1
        return found

    def _finished(self, context: ClientContext) -> None:
        found = self._connections.pop(context, None)
        if found is None:
            return
        found.thread.submit(self._close, found)
        found.thread.close()

    def _reset(self, context: ClientContext) -> None:
        # QUIT_NC: libmilter closes the old SMTP client's filter; a CONNECT starts a new one.
        found = self._connections.get(context)
        if found is not None:
            found.thread.submit(self._close, found)

    def _close(self, connection: _Connection) -> None:
        callback = self.registry.callbacks.get("close")
        if callback is not None:
            self._invoke(connection, "close", callback, ())
        self.registry.deleted += 1

    # -------------------------------------------------------------- calling back

    def _invoke(
        self, connection: _Connection, name: str, callback: Callable[..., Any],
        args: tuple[Any, ...],
    ) -> int:
        """Run one callback on the worker thread, with pymilter's exception policy."""
        try:
            result = callback(connection.ctx, *args)
            if not isinstance(result, int) or isinstance(result, bool):
                raise TypeError(f"The {name} callback must return int")
            return result
        except Exception:
            # pymilter prints the traceback (PyErr_Print) and answers by the policy.
            print(f"pymilter (milterkit compat): untrapped exception in {name}",
                  file=sys.stderr)
            traceback.print_exc()
            policy = self.registry.exception_policy
            if policy == C.TEMPFAIL:
                connection.ctx.setreply(
                    "451", "4.3.0", f"pymilter: untrapped exception in {self.registry.name}")
            elif policy == C.REJECT:
                connection.ctx.setreply(
                    "554", "5.3.0", f"pymilter: untrapped exception in {self.registry.name}")
            return policy

    def _answer(self, context: ClientContext, connection: _Connection, code: int) -> Status:
        status = STATUS_OF.get(code)
        if status is None:
            log.error("[%s] a callback returned %r, which is no milter status; answering "
                      "TEMPFAIL", context.tag, code)
            return Status.TEMPORARY_FAILURE
        reply = connection.ctx._reply
        if reply is not None and (
            (status is Status.REJECT and reply[0] == "5")
            or (status is Status.TEMPORARY_FAILURE and reply[0] == "4")
        ):
            # libmilter forgets a reply once it was sent, and keeps one that did not fit the
            # verdict (a 4xx with REJECT) for a later verdict of its class.
            connection.ctx._reply = None
            context.set_reply(*connection.ctx._reply_args)
        return status

    def _run_stage(
        self, context: ClientContext, connection: _Connection, name: str, args: tuple[Any, ...]
    ) -> Status:
        callback = self.registry.callbacks.get(name)
        if callback is None:
            return Status.CONTINUE
        return self._answer(context, connection, self._invoke(connection, name, callback, args))

    def _stage(
        self, name: str, arguments: Callable[..., tuple[Any, ...]]
    ) -> Callable[..., Any]:
        def handler(context: ClientContext, *args: Any) -> Any:
            if self.registry.callbacks.get(name) is None:
                return None
            connection = self._connection(context)
            call_args = arguments(context, *args)
            return connection.thread.run(self._run_stage, context, connection, name, call_args)

        handler.__name__ = f"pymilter_{name}"
        return handler

    @staticmethod
    def _connect_args(context: ClientContext, hostname: str, address: SocketAddress) -> tuple[
        Any, ...
    ]:
        family, hostaddr = _family_and_address(address)
        return hostname, family, hostaddr

    @staticmethod
    def _envelope_args(context: ClientContext, address: str) -> tuple[Any, ...]:
        return tuple(_raw(part) for part in (address, *context.envelope_parameters))

    # -------------------------------------------------------------- special stages

    def _negotiate(self, context: ClientContext, option: Option, requests: MacrosRequests) -> Any:
        connection = self._connection(context)
        assert context.offer is not None
        offered = effective_offer(context.offer)
        return connection.thread.run(self._run_negotiate, context, connection, option, offered)

    def _static_option(self, option: Option, offered: Option) -> None:
        option.actions = ActionFlag(self.registry.flags)
        protocol = 0
        for name, bit in _NO_EVENT.items():
            if self.registry.callbacks.get(name) is None:
                protocol |= bit
        # libmilter takes SKIP whenever the MTA offers it.
        option.protocol = ProtocolFlag(protocol | C.P_SKIP) & offered.protocol

    def _run_negotiate(
        self, context: ClientContext, connection: _Connection, option: Option, offered: Option
    ) -> Status:
        callback = self.registry.callbacks.get("negotiate")
        if callback is None:
            self._static_option(option, offered)
            return Status.CONTINUE
        opts = [int(offered.actions), int(offered.protocol), 0, 0]
        code = self._invoke(connection, "negotiate", callback, (opts,))
        if code == C.CONTINUE:
            option.actions = ActionFlag(opts[0] & int(ActionFlag.ALL))
            option.protocol = ProtocolFlag(opts[1] & 0xFFFFFFFF)
            return Status.CONTINUE
        if code == C.ALL_OPTS:
            self._static_option(option, offered)
            return Status.CONTINUE
        # libmilter: any other answer refuses the MTA ("do not contact us again").
        return Status.REJECT

    def _end_of_message(self, context: ClientContext, chunk: bytes) -> Any:
        connection = self._connection(context)
        return connection.thread.run(self._run_end_of_message, context, connection, chunk)

    def _run_end_of_message(
        self, context: ClientContext, connection: _Connection, chunk: bytes
    ) -> Status:
        # libmilter hands data that came with END_OF_MESSAGE to the body callback first.
        if chunk and self.registry.callbacks.get("body") is not None:
            status = self._run_stage(context, connection, "body", (chunk,))
            if status is not Status.CONTINUE:
                return status
        status = self._run_stage(context, connection, "eom", ())
        return Status.CONTINUE if status is Status.NO_REPLY else status

    def _abort(self, context: ClientContext, state: Any) -> None:
        connection = self._connections.get(context)
        callback = self.registry.callbacks.get("abort")
        if connection is None or callback is None:
            return
        # The MTA waits for no reply to ABORT; the thread keeps it in order with what follows.
        connection.thread.submit(self._invoke, connection, "abort", callback, ())

