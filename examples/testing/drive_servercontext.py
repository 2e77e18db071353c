"""Drive the MTA side by hand: a ServerContext against a ClientContext, then against two
broken milters over a real socket.

:class:`~milterkit.testing.ServerContext` is sans-I/O, like the ClientContext it talks to: it
writes commands through a ``write`` callable and takes the milter's bytes in ``receive``. Part 1
moves the bytes between the two with nothing but two buffers (no socket, no event loop) and
reads what the MTA saw from :class:`~milterkit.testing.SessionResult`. Part 2 starts two tiny
raw asyncio servers on 127.0.0.1 that break the protocol, one by answering the wrong thing and
one by never answering, and shows how the MTA side reports each. Run it with::

    python examples/testing/drive_servercontext.py
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

from milterkit import ClientContext, Status
from milterkit.protocol import AddHeader, Continue, NegotiateReply, SocketAddress
from milterkit.protocol.constants import ActionFlag, ProtocolFlag
from milterkit.testing import (
    SENDMAIL,
    Exchange,
    Message,
    MessageOutcome,
    MilterProtocolViolation,
    Profile,
    RejectedRecipient,
    ReplyTimeout,
    ServerContext,
    SessionResult,
    SMTPClient,
    Timeouts,
    run_session_async,
)

# ---------------------------------------------------------------------- part 1: by hand


def make_milter(write: Callable[[bytes], object]) -> ClientContext:
    """The milter side: print what it is told, refuse one recipient, stamp the message."""
    milter = ClientContext(write)

    def on_connect(context: ClientContext, hostname: str, address: SocketAddress) -> None:
        print(f"  milter: connect from {hostname} {address.address}")

    def on_sender(context: ClientContext, address: str) -> None:
        print(f"  milter: MAIL FROM {address}, authenticated as {context['{auth_authen}']}")

    def on_recipient(context: ClientContext, address: str) -> Status | None:
        if address == "<closed@example.org>":
            return context.reject("550", "5.1.1", "This mailbox is closed")
        return None

    def on_end(context: ClientContext, chunk: bytes) -> None:
        context.add_header("X-Checked", f"queue id {context['i']}")

    milter.connect("connect", on_connect)
    milter.connect("envelope-from", on_sender)
    milter.connect("envelope-recipient", on_recipient)
    milter.connect("end-of-message", on_end)
    return milter


def pump(server: ServerContext, milter: ClientContext, to_milter: bytearray,
         to_mta: bytearray) -> None:
    """Move bytes both ways until the MTA is done. Buffers, not direct calls: a write must
    not feed the other side while that side is still inside its own ``feed``/``receive``."""
    while not server.finished:
        if not (to_milter or to_mta):
            raise RuntimeError(f"both sides are idle, the MTA waits for {server.awaiting}")
        if to_milter:
            data = bytes(to_milter)
            to_milter.clear()
            milter.feed(data)
        if to_mta:
            data = bytes(to_mta)
            to_mta.clear()
            server.receive(data)
    if not milter.finished:
        milter.connection_lost()  # Postfix may close without QUIT; Sendmail here sent it


def show_outcome(number: int, outcome: MessageOutcome) -> None:
    """Print one message as the MTA ended it."""
    print(f"  message {number}: {outcome.verdict} at {outcome.stage}, "
          f"delivered={outcome.delivered}")
    refused: RejectedRecipient
    for refused in outcome.rejected_recipients:
        print(f"    refused {refused.recipient.address}: {refused.status.name}, "
              f"code {refused.reply and refused.reply[:3]}, reply {refused.reply!r}")
    for modification in outcome.modifications:
        print(f"    modification: {modification!r}")
    print(f"    delivered to {outcome.message.recipient_addresses}")
    print(f"    delivered headers {outcome.message.header_lines()}")


def show_exchange(exchange: Exchange) -> str:
    """``C -> c``: a command's code and the codes of the replies it got (none for D)."""
    replies = " ".join(reply.code.decode() for reply in exchange.replies)
    code = exchange.command.code.decode()
    return f"{code} -> {replies}" if replies else code


def part_one() -> SessionResult:
    """A Sendmail-style session over two buffers."""
    to_milter, to_mta = bytearray(), bytearray()
    profile: Profile = SENDMAIL
    server = ServerContext(
        to_milter.extend,
        profile=profile,
        connection=SMTPClient(
            hostname="client.example.net",
            address=SocketAddress("6", "2001:db8::25", 52000),
            helo="client.example.net",
        ),
        macros={"M": {"{auth_authen}": "alice"}},
        timeouts=Timeouts(command=10.0, content=60.0),
    )
    milter = make_milter(to_mta.extend)
    print(f"-- part 1: ServerContext as {profile.name}, by hand")
    print(f"  timeouts: command {server.timeouts.for_stage('helo')} s, "
          f"body {server.timeouts.for_stage('body')} s (a driver arms them; none here)")
    server.send_message(Message.build(
        sender="alice@example.net",
        recipients=["bob@example.org", "closed@example.org"],
        headers=[("From", "alice@example.net"), ("Subject", "figures")],
        body="See attached.\n",
    ))
    server.close()  # QUIT after the queued message
    server.start()  # sends the option negotiation
    print(f"  after start: awaiting {server.awaiting}, {len(to_milter)} bytes to send")
    pump(server, milter, to_milter, to_mta)

    result = server.result
    assert result.negotiation is not None
    print(f"  negotiated: version {server.version}, actions 0x{int(server.actions):x}, "
          f"leading space {server.leading_space}")
    print(f"  connect {result.connect_status.name}, helo {result.helo_status.name}, "
          f"ok={result.ok}, quit sent={result.quit_sent}")
    for number, outcome in enumerate(result.messages, 1):
        show_outcome(number, outcome)
    print("  wire: " + ", ".join(show_exchange(e) for e in result.exchanges))
    return result


# ---------------------------------------------------------------------- part 2: broken milters

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


async def wrong_reply(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Answers the option negotiation with CONTINUE, which is no negotiation reply."""
    await reader.read(1024)
    writer.write(Continue().to_bytes())
    await writer.drain()
    await reader.read()  # until the MTA hangs up
    writer.close()


async def early_change(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Negotiates properly, then adds a header in answer to CONNECT: modifications belong to
    end-of-message, and an MTA refuses them anywhere else."""
    await reader.read(1024)
    writer.write(NegotiateReply(6, ActionFlag.ADD_HEADERS, ProtocolFlag.NONE).to_bytes())
    await reader.read(1024)
    writer.write(AddHeader("X-Too", "early").to_bytes())
    await writer.drain()
    await reader.read()
    writer.close()


async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Reads everything and never answers."""
    await reader.read()
    writer.close()


async def against(handler: Handler, timeouts: Timeouts, check: bool) -> SessionResult | None:
    """One session against ``handler`` served on a free port of 127.0.0.1."""
    listener = await asyncio.start_server(handler, "127.0.0.1", 0)
    port = listener.sockets[0].getsockname()[1]
    try:
        return await run_session_async(f"inet:{port}@127.0.0.1", Message.build(),
                                       timeouts=timeouts, check=check)
    finally:
        listener.close()
        await listener.wait_closed()


async def part_two() -> None:
    """Each broken milter, first raising (``check=True``) then recorded (``check=False``)."""
    print("-- part 2: broken milters over 127.0.0.1")
    quick = Timeouts(connect=5.0, command=0.2, content=0.2)
    for handler in (wrong_reply, early_change):
        try:
            await against(handler, quick, check=True)
        except MilterProtocolViolation as violation:
            print(f"  {handler.__name__}: MilterProtocolViolation: {violation}")
    try:
        await against(silent, quick, check=True)
    except ReplyTimeout as timeout:
        print(f"  silent: ReplyTimeout: {timeout}")
    result = await against(silent, quick, check=False)
    assert result is not None
    print(f"  silent, check=False: ok={result.ok}, error={type(result.error).__name__}, "
          f"commands sent={len(result.exchanges)}, messages={len(result.messages)}")


def main() -> int:
    """Run both parts; exit 0 when each went as described."""
    result = part_one()
    asyncio.run(part_two())
    return 0 if result.ok and len(result.messages) == 1 else 1


if __name__ == "__main__":
    raise SystemExit(main())
