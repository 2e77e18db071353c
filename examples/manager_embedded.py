"""A milter manager built in Python: a child milter and an in-process filter behind one socket.

What it shows, in the order the program does it:

- a child milter: here a small milterkit filter served in this very process on its own unix
  socket (in real life OpenDKIM, ClamAV... anywhere a connection spec reaches);
- probing it as the MTA would, with :mod:`milterkit.mta`: ``open_spec`` to see that something
  listens, a ``MilterChannel`` to negotiate and send one CONNECT (its ``Answer``);
- the ``[[milter]]`` tables of a configuration file read with ``parse_milters`` into
  ``ChildSpec`` objects (one more child, "gone", that nobody serves: its fallback answers);
- a ``Manager`` of those children and one in-process filter, with the verdict header, served by
  a ``Client``; its ``ChildMilter`` members listed;
- one message through the manager, with what came back: the child's reply text when it
  refuses, every member's verdict in the header when it does not;
- a child whose command cannot start is a ``ChildStartError`` at set-up.

Run it:  python examples/manager_embedded.py
"""

from __future__ import annotations

import asyncio
import logging
import sys
import tempfile
from pathlib import Path

from milterkit import Client, ClientContext, Status
from milterkit.compose import FilterSpec, unit_from_object
from milterkit.manager import (
    DEFAULT_CONNECT_ATTEMPTS,
    DEFAULT_CONNECT_TIMEOUT,
    DEFAULT_RECONNECT_DELAY,
    ChildMilter,
    ChildSpec,
    ChildStartError,
    Manager,
    parse_milters,
)
from milterkit.mta import Answer, MilterChannel, MTAError, ReplyTimeoutError, open_spec
from milterkit.protocol import Connect, Mail, SocketAddress
from milterkit.testing import Message, run_session_async

#: What the ``[[milter]]`` tables of a configuration file hold once TOML is read: one child
#: that nobody serves (its fallback answers for it).
CHILD_TABLES = [
    {"name": "gone", "connection": "inet:1@127.0.0.1", "fallback": "accept",
     "connect-attempts": 1},
]


def child_setup(client: Client) -> None:
    """The child: refuses senders of spam.example, stamps everything else."""

    @client.on("envelope-from")
    def envelope_from(context: ClientContext, address: str) -> Status | None:
        if address.strip("<>").endswith("@spam.example"):
            return context.reject("550", "5.7.1", "child: no spam.example here")
        return None

    @client.on("end-of-message")
    def end_of_message(context: ClientContext, chunk: bytes) -> None:
        context.add_header("X-Child", "seen")


def stamp_setup(client: Client) -> None:
    """The in-process filter: stamps every message after the children's changes."""

    @client.on("end-of-message")
    def end_of_message(context: ClientContext, chunk: bytes) -> None:
        context.add_header("X-Python-Filter", "yes")


async def probe(spec: str) -> None:
    """Talk to the child as an MTA: is it there, what does it ask for, what does it say?"""
    _reader, writer = await open_spec(spec, DEFAULT_CONNECT_TIMEOUT)  # something listens
    writer.close()
    channel = await MilterChannel.open(spec, timeout=5.0)
    try:
        reply = await channel.negotiate()
        print(f"probe: the child asks for actions {reply.actions!r}")
        for command in (Connect("client.example", SocketAddress("4", "192.0.2.1", 25)),
                        Mail("<alice@example.net>")):
            answer: Answer = await channel.step(command)
            said = type(answer.final).__name__ if answer.final else "nothing (not asked)"
            print(f"probe: {command.label} answered {said}")
        await channel.quit()
    except (MTAError, ReplyTimeoutError) as exc:
        print(f"probe: the child failed: {exc}")
        await channel.close()


async def main(directory: Path) -> None:
    child_spec = f"unix:{directory / 'child.sock'}"
    child = Client(child_spec)
    child_setup(child)
    async with child:
        await probe(child_spec)
        children = [ChildSpec("child", child_spec, timeout=5.0,
                              connect_timeout=DEFAULT_CONNECT_TIMEOUT,
                              connect_attempts=DEFAULT_CONNECT_ATTEMPTS,
                              reconnect_delay=DEFAULT_RECONNECT_DELAY),
                    *parse_milters(CHILD_TABLES, "example")]
        filters = [FilterSpec(unit_from_object("stamp", stamp_setup, "example"))]
        manager = Manager(children, filters, verdict_header="X-Milter-Verdicts")
        manager_spec = f"unix:{directory / 'manager.sock'}"
        server = Client(manager_spec)
        manager.setup(server)
        member: ChildMilter
        for member in manager.children:
            print(f"child milter {member.name} at {member.spec.connection}, "
                  f"fallback {member.spec.fallback.nick}")
        async with server:
            for sender in ("alice@example.net", "bob@spam.example"):
                result = await run_session_async(manager_spec, Message.build(
                    sender=sender, headers=[("Subject", "hello")], body="Hi.\n"))
                (outcome,) = result.messages
                print(f"{sender}: {outcome.status.nick} {outcome.reply or ''}".rstrip())
                for name, value in outcome.message.headers:
                    print(f"  {name}:{value}")
    try:
        Manager([ChildSpec("never", f"unix:{directory / 'never.sock'}",
                           command=[sys.executable, "-c", "pass"], start_timeout=2.0)]
                ).setup(Client(f"unix:{directory / 'unused.sock'}"))
    except ChildStartError as exc:
        print(f"start-up error: {exc}")


if __name__ == "__main__":
    logging.basicConfig(level=logging.CRITICAL)  # the manager logs the unreachable child
    with tempfile.TemporaryDirectory() as tmp:
        asyncio.run(main(Path(tmp)))
