"""Errors of the wire protocol. Each message says what was wrong and where."""

from __future__ import annotations


class ProtocolError(Exception):
    """The peer broke the milter protocol; the connection cannot go on.

    ``command`` is the command byte of the offending packet when one is known.
    """

    def __init__(self, message: str, command: bytes | None = None) -> None:
        super().__init__(message)
        self.command = command


class FramingError(ProtocolError):
    """The length prefix of a packet is unusable."""


class ZeroLengthPacket(FramingError):
    """A packet claims length 0: not even a command byte."""


class PacketTooLarge(FramingError):
    """A packet claims more payload than the configured maximum."""

    def __init__(self, message: str, length: int, limit: int) -> None:
        super().__init__(message)
        self.length = length
        self.limit = limit


class TruncatedStream(FramingError):
    """The stream ended inside a packet."""


class MalformedPacket(ProtocolError):
    """A packet's payload does not have the shape its command requires."""


class MissingNul(MalformedPacket):
    """A string in the payload is not NUL-terminated."""


class ShortPayload(MalformedPacket):
    """The payload is shorter than the command requires."""


class TrailingData(MalformedPacket):
    """The payload carries bytes after what the command defines."""


class EmptyPayload(MalformedPacket):
    """A command that needs a payload arrived without one."""


class EmptyName(MalformedPacket):
    """A name that must not be empty (macro, header, address) is empty."""


class MalformedStage(MalformedPacket):
    """A ``D`` packet names a stage that is not a command."""


class UnknownCommand(ProtocolError):
    """The command byte is not one of the protocol's."""


class UnknownFamily(MalformedPacket):
    """A connect packet names an address family other than U, L, 4 or 6."""


class InvalidAddress(MalformedPacket):
    """A connect packet's address is not a valid IPv4 or IPv6 literal."""


class UnexpectedCommand(ProtocolError):
    """A well-formed command arrived where the session state does not allow it."""


class NegotiationError(ProtocolError):
    """The option negotiation cannot succeed."""
