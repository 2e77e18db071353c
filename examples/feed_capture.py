"""Feed a captured Postfix session into a ClientContext and print what happened.

The session below is what Postfix sends a milter for one SMTP client that delivers one message
to two recipients: macros (``D``) before every event, the headers one by one, the body, the end of
the message, then ``ABORT`` and ``QUIT``. It is built from :mod:`milterkit.protocol` command
objects, so it is exactly the byte stream a capture of the wire holds.

The filter rejects one recipient with its own SMTP reply and adds a header at end-of-message.
Every signal the context emits and every reply it writes are printed, in order. Run it with::

    python examples/feed_capture.py
"""

from __future__ import annotations

from typing import Any

from milterkit import SIGNAL_NAMES, ClientContext, MessageResult, Option, State, Status
from milterkit.protocol import (
    Abort,
    ActionFlag,
    AnyCommand,
    Body,
    Connect,
    Data,
    DefineMacro,
    EndOfHeader,
    EndOfMessage,
    Header,
    Helo,
    Mail,
    Negotiate,
    NegotiateReply,
    PacketDecoder,
    ProtocolFlag,
    Quit,
    Rcpt,
    SocketAddress,
    decode_reply,
)

#: One Postfix SMTP session, as the MTA sends it (Postfix 3.x defaults, protocol version 6).
SESSION: list[AnyCommand] = [
    Negotiate(6, ActionFlag.ALL, ProtocolFlag.ALL),
    DefineMacro(b"C", {"j": "mx.example.org", "{daemon_name}": "mx.example.org",
                       "v": "Postfix 3.8.5", "_": "client.example.net [192.0.2.10]"}),
    Connect("client.example.net", SocketAddress("4", "192.0.2.10", 49152)),
    DefineMacro(b"H", {}),
    Helo("client.example.net"),
    DefineMacro(b"M", {"{mail_addr}": "alice@example.net", "{mail_host}": "example.net"}),
    Mail("<alice@example.net>", ("SIZE=2048", "BODY=8BITMIME")),
    DefineMacro(b"R", {"{rcpt_addr}": "bob@example.org"}),
    Rcpt("<bob@example.org>"),
    DefineMacro(b"R", {"{rcpt_addr}": "spam-trap@example.org"}),
    Rcpt("<spam-trap@example.org>"),
    DefineMacro(b"T", {"i": "4XYZ1234AB"}),
    Data(),
    DefineMacro(b"L", {}),
    Header("From", "Alice <alice@example.net>"),
    DefineMacro(b"L", {}),
    Header("To", "Bob <bob@example.org>"),
    DefineMacro(b"L", {}),
    Header("Subject", "Lunch on Friday?"),
    DefineMacro(b"N", {"i": "4XYZ1234AB"}),
    EndOfHeader(),
    DefineMacro(b"B", {}),
    Body(b"Hi Bob,\r\n\r\nlunch on Friday at noon?\r\n\r\nAlice\r\n"),
    DefineMacro(b"E", {"i": "4XYZ1234AB"}),
    EndOfMessage(),
    Abort(),
    Quit(),
]

#: The captured byte stream: what a capture of the milter socket would hold.
CAPTURE = b"".join(command.to_bytes() for command in SESSION)


def show(value: object) -> str:
    """One argument or reply, printed the same way on every Python version.

    Flag enums print as hex because their ``repr`` changed between Python 3.10 and 3.11.
    """
    if isinstance(value, (Option, NegotiateReply)):
        return (f"{type(value).__name__}(version={value.version}, "
                f"actions=0x{int(value.actions):x}, protocol=0x{int(value.protocol):x})")
    if isinstance(value, SocketAddress):
        return str(value)
    if isinstance(value, State):
        return value.nick
    return repr(value)


def print_replies(data: bytes, decoder: PacketDecoder) -> None:
    """The context's ``write``: decode the reply packets it writes and print them."""
    for code, payload in decoder.feed(data):
        print(f"  <- {show(decode_reply(code, payload))}")


def trace(name: str) -> Any:
    """A handler that prints the signal ``name`` and its arguments, and has no opinion."""

    def handler(context: ClientContext, *args: Any) -> None:
        shown = ", ".join(show(arg) for arg in args)
        print(f"{name}({shown})")

    return handler


def on_recipient(context: ClientContext, address: str) -> Status | None:
    """Refuse mail to the spam trap with our own reply; no opinion on other recipients."""
    if address == "<spam-trap@example.org>":
        return context.reject("550", "5.1.1", f"{address} does not accept mail")
    return None


def on_end_of_message(context: ClientContext, chunk: bytes) -> Status:
    """Stamp the message with its queue id (a macro Postfix sends with end-of-message)."""
    context.add_header("X-Filtered", f"yes (queue id {context['i']})")
    return Status.CONTINUE


def on_message_processed(context: ClientContext, result: MessageResult) -> None:
    """Summarise the message once its verdict is written."""
    print(
        f"message-processed: {result.status.name}, from {result.envelope_from}, "
        f"{len(result.recipients)} recipients, {result.header_count} headers, "
        f"{result.body_size} body bytes, {len(result.modifications)} modification(s)"
    )


def build_context() -> ClientContext:
    """A context whose every event is traced, with the filter's own handlers after the tracer."""
    decoder = PacketDecoder()
    context = ClientContext(lambda data: print_replies(data, decoder))
    # Trace every event and notification (not the *-response signals: the replies are printed
    # as they hit the wire, which is what matters).
    for name in SIGNAL_NAMES:
        if not name.endswith("-response") and name != "message-processed":
            context.signals.connect(name, trace(name))  # a name known only at run time
    context.connect("envelope-recipient", on_recipient)
    context.connect("end-of-message", on_end_of_message)
    context.connect("message-processed", on_message_processed)
    return context


def main() -> int:
    """Feed :data:`CAPTURE` in one call, exactly as a socket read might deliver it."""
    context = build_context()
    print(f"-- feeding {len(CAPTURE)} bytes ({len(SESSION)} packets)")
    context.feed(CAPTURE)
    print(f"-- finished={context.finished}, messages={context.messages}, "
          f"state={context.state.nick}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
