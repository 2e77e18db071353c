"""Errors, split by whose fault they are (h11's ``LocalProtocolError``/``RemoteProtocolError``).

- :class:`LocalError`: *this* side was wrong (our filter, our configuration, our use of the API).
  It is raised where the mistake is made and nothing is sent for it.
- :class:`RemoteProtocolError`: the *peer* broke the milter protocol (the MTA for
  ``ClientContext.feed``, the milter for ``ServerContext.receive``); the connection cannot go on.

Both derive from :class:`MilterkitError`. Each message says what was wrong and where.
"""

from __future__ import annotations


class MilterkitError(Exception):
    """Anything milterkit raises on purpose."""


class LocalError(MilterkitError):
    """This side used the protocol or the API wrongly; raised locally, nothing is sent."""


class RemoteProtocolError(MilterkitError):
    """The peer broke the milter protocol; the connection cannot go on.

    ``command`` is the command (or reply) byte of the offending packet when one is known.
    """

    def __init__(self, message: str, command: bytes | None = None) -> None:
        super().__init__(message)
        self.command = command


#: The older name of :class:`RemoteProtocolError`, kept for existing code.
ProtocolError = RemoteProtocolError


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


class BacklogOverflow(ProtocolError):
    """The MTA sent more than the context may queue while a handler's reply is owed.

    ``packets`` and ``size`` are what was queued; ``limit`` is the ``(packets, bytes)`` bound.
    """

    def __init__(self, message: str, packets: int, size: int, limit: tuple[int, int]) -> None:
        super().__init__(message)
        self.packets = packets
        self.size = size
        self.limit = limit


class NegotiationError(MilterkitError):
    """The option negotiation cannot succeed; the subclass says whose fault it is."""


class UnsupportedOffer(NegotiationError, RemoteProtocolError):
    """The MTA's offer is one no milter can take (a protocol version below 2)."""


class RequirementsNotOffered(NegotiationError, LocalError):
    """Our own requirements (actions, protocol steps) are more than the MTA offers."""


class InvalidValue(LocalError, ValueError):
    """A command or reply was built with a value the protocol cannot carry (a header name with
    a colon, an address with CR). A decoder that meets one turns it into a
    :class:`MalformedPacket`: in bytes that came in, it is the peer's fault."""
