"""Connection-level state: verdicts at connect/helo hold for the connection, and a new SMTP
client on the same milter connection (QUIT_NC) starts over."""

from __future__ import annotations

from typing import Any

from composelib import Composed, recording, returning, spec

from milterkit import Client, Status
from milterkit.compose import Composer, RemoteNetwork
from milterkit.protocol import (
    ActionFlag,
    AnyCommand,
    Connect,
    Data,
    EndOfHeader,
    EndOfMessage,
    Header,
    Helo,
    Mail,
    Negotiate,
    ProtocolFlag,
    QuitNewConnection,
    Rcpt,
    SocketAddress,
)


def test_accept_at_connect_holds_for_the_connection() -> None:
    calls: list[str] = []

    def done_early(client: Any) -> None:
        returning("connect", Status.ACCEPT, calls)(client)
        recording(calls, ["header"])(client)

    composed = Composed([spec("early", done_early), spec("late", recording(calls, ["header"]))])
    result = composed.run()
    assert composed.answer("connect") is Status.CONTINUE  # late still works
    assert calls == ["early:connect", "late:header", "late:header"]
    assert composed.results[-1].filter_verdicts == {"early": "accept", "late": "continue"}
    assert result.last.status is Status.CONTINUE


def session(address: str) -> bytes:
    commands: list[AnyCommand] = [
        Connect("client.example.net", SocketAddress("4", address, 40000)),
        Helo("client.example.net"), Mail("<a@example.net>", ()), Rcpt("<b@example.org>", ()),
        Data(), Header("Subject", " hi"), EndOfHeader(), EndOfMessage(b""),
    ]
    return b"".join(command.to_bytes() for command in commands)


def test_a_new_smtp_client_on_the_connection_starts_over() -> None:
    """QUIT_NC ends the first client (trusted, so the filter was detached for it); the second
    client (remote) gets the filter again."""
    calls: list[str] = []
    client = Client()
    Composer([spec("guarded", recording(calls, ["header"]),
                   conditions=[RemoteNetwork(["192.0.2.0/24"])])]).setup(client)
    written: list[bytes] = []
    context = client.create_context(written.append)
    context.feed(Negotiate(6, ActionFlag.ALL, ProtocolFlag.NONE).to_bytes())
    context.feed(session("192.0.2.5"))
    assert calls == []
    context.feed(QuitNewConnection().to_bytes())
    context.feed(session("198.51.100.5"))
    assert calls == ["guarded:header"]
    assert context.messages == 2
