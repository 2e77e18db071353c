"""Shared helpers of the unit tests: a recording ``write``, a signal log and packet builders.

Kept deliberately small and independent of ``milterkit.testing`` so the unit suite checks the
core with nothing but the codec it ships.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from milterkit import ClientContext
from milterkit.protocol import (
    ActionFlag,
    AnyReply,
    Negotiate,
    PacketDecoder,
    ProtocolFlag,
    decode_reply,
    encode_packet,
)

#: What a modern MTA offers: every action, every step except the internal size/test bits.
FULL_ACTIONS = ActionFlag.ALL
FULL_PROTOCOL = ProtocolFlag(ProtocolFlag.ALL & ~ProtocolFlag.INTERNAL)

#: Every signal a context emits that is not a ``*-response``.
EVENT_SIGNALS = (
    "negotiate", "define-macro", "connect", "helo", "envelope-from", "envelope-recipient",
    "data", "unknown", "header", "end-of-header", "body", "end-of-message", "abort", "timeout",
    "message-processed", "finished", "error", "reset",
)

# Byte-exact reply packets, written out by hand so the tests do not trust the encoder.
C = b"\x00\x00\x00\x01c"
R = b"\x00\x00\x00\x01r"
T = b"\x00\x00\x00\x01t"
A = b"\x00\x00\x00\x01a"
D = b"\x00\x00\x00\x01d"
S = b"\x00\x00\x00\x01s"
P = b"\x00\x00\x00\x01p"


def packet(command: bytes, payload: bytes = b"") -> bytes:
    """A packet framed by hand (length counts the command byte)."""
    return (len(payload) + 1).to_bytes(4, "big") + command + payload


def optneg(
    version: int = 6,
    actions: int = FULL_ACTIONS,
    protocol: int = FULL_PROTOCOL,
) -> bytes:
    """An ``O`` packet as an MTA sends it."""
    return packet(
        b"O", version.to_bytes(4, "big") + actions.to_bytes(4, "big") + protocol.to_bytes(4, "big")
    )


def optneg_reply(
    version: int, actions: int, protocol: int, lists: Iterable[tuple[int, bytes]] = ()
) -> bytes:
    """The milter's ``O`` reply, framed by hand."""
    payload = version.to_bytes(4, "big") + actions.to_bytes(4, "big") + protocol.to_bytes(4, "big")
    for stage, names in lists:
        payload += stage.to_bytes(4, "big") + names + b"\0"
    return packet(b"O", payload)


def y(text: bytes) -> bytes:
    """A ``y`` (reply text) packet."""
    return packet(b"y", text + b"\0")


def strings(*parts: bytes) -> bytes:
    """NUL-terminated strings, concatenated."""
    return b"".join(part + b"\0" for part in parts)


class Wire:
    """The ``write`` callable of a context: keeps every write, in order."""

    def __init__(self) -> None:
        self.writes: list[bytes] = []

    def __call__(self, data: bytes) -> None:
        assert isinstance(data, bytes), f"write got {type(data).__name__}, not bytes"
        self.writes.append(data)

    @property
    def data(self) -> bytes:
        """Everything written so far, as one byte string."""
        return b"".join(self.writes)

    def take(self) -> bytes:
        """Everything written since the last ``take``; forgets it."""
        data = self.data
        self.writes.clear()
        return data

    def replies(self) -> list[AnyReply]:
        """Everything written, decoded as the MTA would."""
        decoder = PacketDecoder()
        return [decode_reply(code, payload) for code, payload in decoder.feed(self.data)]


class SignalLog:
    """Records ``(signal, args)`` for every event signal of a context, in emission order."""

    def __init__(self, context: ClientContext, names: Iterable[str] = EVENT_SIGNALS) -> None:
        self.events: list[tuple[str, tuple[Any, ...]]] = []
        for name in names:
            context.signals.connect(name, self._recorder(name))  # names known at run time

    def _recorder(self, name: str) -> Callable[..., None]:
        def record(_context: ClientContext, *args: Any) -> None:
            self.events.append((name, args))

        return record

    @property
    def names(self) -> list[str]:
        """The signal names only."""
        return [name for name, _ in self.events]

    def take(self) -> list[tuple[str, tuple[Any, ...]]]:
        """Everything recorded since the last ``take``; forgets it."""
        events = list(self.events)
        self.events.clear()
        return events


def stable(events: list[tuple[str, tuple[Any, ...]]]) -> list[tuple[str, tuple[Any, ...]]]:
    """Events with the timing of message results left out, so two runs compare equal."""
    out: list[tuple[str, tuple[Any, ...]]] = []
    for name, args in events:
        if name == "message-processed":
            (result,) = args
            args = ((result.status, result.envelope_from, tuple(result.recipients),
                     result.header_count, result.body_size, tuple(result.modifications),
                     result.reply, result.quarantine_reason),)
        elif name == "error":
            args = tuple((type(arg), str(arg)) for arg in args)
        out.append((name, args))
    return out


def new_context(**kwargs: Any) -> tuple[ClientContext, Wire]:
    """A context writing to a fresh :class:`Wire`."""
    wire = Wire()
    return ClientContext(wire, **kwargs), wire


def negotiated(
    context: ClientContext,
    wire: Wire,
    *,
    actions: int = FULL_ACTIONS,
    protocol: int = FULL_PROTOCOL,
    version: int = 6,
) -> bytes:
    """Feed an offer and return the ``O`` reply written for it."""
    context.feed(optneg(version, actions, protocol))
    return wire.take()


def full_session() -> bytes:
    """One connection with one complete message and a QUIT, as a Postfix would send it."""
    return b"".join(
        [
            optneg(),
            packet(b"D", b"C" + strings(b"j", b"mx.example", b"{daemon_name}", b"smtpd")),
            packet(b"C", b"client.example\x004\x04\xd2192.0.2.7\0"),
            packet(b"D", b"H"),
            packet(b"H", b"client.example\0"),
            packet(b"D", b"M" + strings(b"i", b"4QX", b"{mail_addr}", b"a@example.org")),
            packet(b"M", strings(b"<a@example.org>", b"SIZE=120")),
            packet(b"D", b"R" + strings(b"{rcpt_addr}", b"b@example.net")),
            packet(b"R", b"<b@example.net>\0"),
            packet(b"T"),
            packet(b"L", strings(b"From", b"a@example.org")),
            packet(b"L", strings(b"Subject", b"folded\n\tline")),
            packet(b"N"),
            packet(b"B", b"hello\r\n"),
            packet(b"B", b"\xffbinary\0\r\n"),
            packet(b"E"),
            packet(b"A"),
            packet(b"Q"),
        ]
    )


def offer(
    actions: int = FULL_ACTIONS, protocol: int = FULL_PROTOCOL, version: int = 6
) -> Negotiate:
    """An offer as a command object."""
    return Negotiate(version, ActionFlag(actions), ProtocolFlag(protocol))


__all__ = [
    "A", "C", "D", "EVENT_SIGNALS", "FULL_ACTIONS", "FULL_PROTOCOL", "P", "R", "S", "SignalLog",
    "T", "Wire", "encode_packet", "full_session", "negotiated", "new_context", "offer", "optneg",
    "optneg_reply", "packet", "stable", "strings", "y",
]
