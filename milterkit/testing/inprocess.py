"""Run a filter in-process: a :class:`ServerContext` wired to a :class:`~milterkit.ClientContext`.

No socket: the MTA's bytes go straight into ``ClientContext.feed`` and the replies into
``ServerContext.receive``, on the same code path a live connection takes. The pump runs inside an
asyncio loop, so coroutine handlers, ``loop.call_later`` answers after PROGRESS and keep-alives
behave as under the real runtime; a filter with plain handlers never waits on the loop.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from typing import Any

from ..context import ClientContext
from ..errors import RequirementsNotOffered
from ..protocol.errors import ProtocolError
from ..server.awaiting import await_hook
from ..server.client import Client
from .message import Message
from .results import SessionResult
from .server import ServerContext, Submission
from .target import Target, load_client

#: Makes the milter side of one connection, given its ``write``.
ContextFactory = Callable[[Callable[[bytes], object]], ClientContext]
#: What :class:`InProcess` does with a handler's exception (see its ``handler_errors``).
HANDLER_ERRORS = ("policy", "raise")
# The ``error`` signal also carries the MTA's protocol errors and refused negotiations: those
# are the session's error (``result.error``), not a handler's.
_NOT_HANDLER_ERRORS = (ProtocolError, RequirementsNotOffered)

#: One message, or several (plain or with sending options).
Messages = Sequence[Message | Submission] | Message


class InProcess:
    """Sessions against one filter without sockets.

    ``target`` is a ``setup(client)`` function, a file or module defining one, a
    :class:`~milterkit.server.client.Client`; or, instead, ``context_factory(write)`` making
    the ClientContext (a subclass with ``do_*`` methods, say). ``server_options`` go to every
    :class:`ServerContext` (``profile``, ``version``, ``connection``, ``macros``,
    ``timeouts`` …). ``tap`` sees every write of either side, as a capture of the wire would.

    ``handler_errors`` says what an exception raised by a handler does: ``"policy"`` (the
    default here) lets the context's exception policy answer it, as in production, and records
    it in the result's ``handler_errors``; ``"raise"`` (the pytest ``milter`` fixture's default)
    also re-raises the first one from :meth:`run` once the session is over, so a test cannot
    pass over a crashing handler.
    """

    def __init__(self, target: Target | None = None, *,
                 context_factory: ContextFactory | None = None,
                 tap: Callable[[str, bytes], object] | None = None,
                 handler_errors: str = "policy",
                 **server_options: Any) -> None:
        if handler_errors not in HANDLER_ERRORS:
            raise ValueError(f"handler_errors must be 'policy' or 'raise', not {handler_errors!r}")
        self.handler_errors = handler_errors
        self.client: Client | None = None
        if context_factory is not None:
            self._factory: ContextFactory = context_factory
        elif target is not None:
            client = load_client(target)
            self.client = client
            self._factory = client.create_context
        else:
            raise TypeError("InProcess needs a target or a context_factory")
        self.server_options = server_options
        #: Called with ``("mta", bytes)`` and ``("milter", bytes)`` for every write, in order.
        self.tap = tap
        #: The milter-side context of the last session, for a test to look into.
        self.context: ClientContext | None = None

    def run(self, messages: Messages = (), *, check: bool = True,
            **options: Any) -> SessionResult:
        """One connection carrying ``messages``; returns what the MTA saw.

        With ``check`` a protocol error or timeout is raised; else it is in ``result.error``.
        ``options`` override the server options for this session.
        """
        loop = asyncio.new_event_loop()
        try:
            return loop.run_until_complete(self.run_async(messages, check=check, **options))
        finally:
            loop.close()

    async def run_async(self, messages: Messages = (), *, check: bool = True,
                        **options: Any) -> SessionResult:
        """:meth:`run` for a caller already inside an event loop."""
        if isinstance(messages, Message):
            messages = [messages]
        wake = asyncio.Event()
        to_milter = bytearray()
        to_mta = bytearray()

        tap = self.tap

        def write_to_milter(data: bytes) -> None:
            if tap is not None:
                tap("mta", data)
            to_milter.extend(data)
            wake.set()

        def write_to_mta(data: bytes) -> None:
            if tap is not None:
                tap("milter", data)
            to_mta.extend(data)
            wake.set()

        server = ServerContext(write_to_milter, **{**self.server_options, **options})
        context = self._factory(write_to_mta)
        context.await_hook = await_hook
        self.context = context
        errors: list[tuple[int, str, BaseException]] = []

        def record(ctx: ClientContext, error: BaseException) -> None:
            if not isinstance(error, _NOT_HANDLER_ERRORS):
                stage = ctx.pending or ctx.last_state.name.lower().replace("_", "-")
                errors.append((len(server.result.messages), stage, error))

        context.connect("error", record)
        try:
            server.run(messages)
            await _pump(server, context, to_milter, to_mta, wake)
        except ProtocolError as exc:
            if server.result.error is None:
                server.result.error = exc
            if not context.finished:
                context.connection_lost()
            if check:
                raise
        result = server.result
        for index, stage, error in errors:
            result.handler_errors.append((stage, error))
            if index < len(result.messages):
                result.messages[index].handler_errors.append((stage, error))
        if errors and self.handler_errors == "raise":
            _, stage, error = errors[0]
            _note(error, f"raised by a handler of {stage!r} under milterkit's pytest plugin; "
                  "to test what the exception policy answers instead, use "
                  "milter(target, handler_errors='policy')")
            raise error
        return result


async def _pump(server: ServerContext, context: ClientContext, to_milter: bytearray,
                to_mta: bytearray, wake: asyncio.Event) -> None:
    """Move bytes both ways until the MTA is done; wait on the loop when nobody has any."""
    while True:
        while to_milter or to_mta:
            if to_milter:
                data = bytes(to_milter)
                to_milter.clear()
                if context.finished:
                    break  # the milter hung up (e.g. refused the negotiation)
                context.feed(data)
            if to_mta:
                data = bytes(to_mta)
                to_mta.clear()
                server.receive(data)
        if server.finished:
            if not context.finished:
                context.connection_lost()  # Postfix closes without QUIT after some verdicts
            return
        if context.finished:
            server.connection_lost()  # raises: the milter left in the middle
            return
        wake.clear()
        stage = server.awaiting or "end-of-message"
        try:
            await asyncio.wait_for(wake.wait(), server.timeouts.for_stage(stage))
        except asyncio.TimeoutError:
            context.handle_timeout()
            server.handle_timeout()  # raises ReplyTimeout


def _note(error: BaseException, note: str) -> None:
    add_note = getattr(error, "add_note", None)  # Python 3.11+
    if add_note is not None and note not in getattr(error, "__notes__", ()):
        add_note(note)


def run_in_process(target: Target, messages: Messages = (), *,
                   check: bool = True, **server_options: Any) -> SessionResult:
    """One in-process session: ``run_in_process(setup, Message.build(...)).last.status``."""
    return InProcess(target, **server_options).run(messages, check=check)
