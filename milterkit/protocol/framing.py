"""Packet framing: a uint32 big-endian length, one command byte, ``length - 1`` payload bytes."""

from __future__ import annotations

from .constants import DEFAULT_MAX_PAYLOAD, STRICT_MAX_PAYLOAD
from .errors import PacketTooLarge, TruncatedStream, ZeroLengthPacket

_LENGTH = 4
_HEADER = 5


def encode_packet(command: bytes, payload: bytes = b"") -> bytes:
    """Frame ``command`` (one byte) and ``payload`` as one packet."""
    return (len(payload) + 1).to_bytes(4, "big") + command + payload


class PacketDecoder:
    """Incremental decoder: takes bytes in any split or coalescing, yields whole packets.

    The length prefix is checked as soon as its four bytes are in, so a zero length or a length over
    ``max_payload`` raises before any payload is waited for or allocated. After an error the
    decoder stays failed: every later :meth:`feed` raises the same error again.
    """

    __slots__ = ("max_payload", "_buffer", "_error", "_consumed")

    def __init__(self, max_payload: int = DEFAULT_MAX_PAYLOAD) -> None:
        if not 1 <= max_payload <= 0x7FFFFFFE:
            raise ValueError(f"max_payload must be between 1 and 2**31 - 2, not {max_payload}")
        self.max_payload = max_payload
        self._buffer = bytearray()
        self._error: Exception | None = None
        # Bytes of the stream before the buffer's start: error messages say where a packet began.
        self._consumed = 0

    @classmethod
    def strict(cls) -> PacketDecoder:
        """A decoder with libmilter's 65535-byte payload limit."""
        return cls(STRICT_MAX_PAYLOAD)

    @property
    def buffered(self) -> int:
        """How many bytes of an unfinished packet are held."""
        return len(self._buffer)

    @property
    def error(self) -> Exception | None:
        """The error that stopped the decoder, if any."""
        return self._error

    def feed(self, data: bytes) -> list[tuple[bytes, bytes]]:
        """Add ``data`` and return ``(command, payload)`` for every packet now complete.

        Raises the framing error if the stream is broken (packets before the break are lost to
        the caller; use :meth:`decode` to keep them).
        """
        packets = self.decode(data)
        if self._error is not None:
            raise self._error
        return packets

    def decode(self, data: bytes) -> list[tuple[bytes, bytes]]:
        """Like :meth:`feed`, but never raises: the packets before a break are returned and the
        break is left in :attr:`error`.

        A list, not a generator: the buffer is settled before any packet is handled, so a handler
        that raises cannot make a packet be decoded twice.
        """
        packets: list[tuple[bytes, bytes]] = []
        if self._error is not None:
            return packets
        if type(data) is not bytes:
            data = bytes(data)
        buffer = self._buffer
        if buffer:
            buffer += data
            view: bytes | bytearray = buffer
        else:
            # Fast path: nothing buffered, parse straight from the caller's bytes.
            view = data
        offset = 0
        end = len(view)
        max_payload = self.max_payload
        while end - offset >= _LENGTH:
            length = int.from_bytes(view[offset : offset + _LENGTH], "big")
            if length == 0:
                self._error = ZeroLengthPacket(
                    f"packet at stream offset {self._consumed + offset} has length 0 "
                    "(not even a command byte)"
                )
                break
            if length - 1 > max_payload:
                self._error = PacketTooLarge(
                    f"packet at stream offset {self._consumed + offset} claims {length - 1} "
                    f"payload bytes, over the limit of {max_payload}",
                    length - 1,
                    max_payload,
                )
                break
            stop = offset + _LENGTH + length
            if stop > end:
                break
            # Slices of the bytearray buffer are bytearrays; _as_bytes below fixes them up.
            packets.append(
                (view[offset + _LENGTH : offset + _HEADER], view[offset + _HEADER : stop])  # type: ignore[arg-type]
            )
            offset = stop
        if self._error is not None:
            buffer.clear()
            return _as_bytes(packets)
        self._consumed += offset
        if view is buffer:
            del buffer[:offset]
            return _as_bytes(packets)
        if offset < end:
            buffer += view[offset:]
        return packets  # slices of ``bytes`` are already bytes

    def end(self) -> None:
        """Say the stream ended; raise :class:`TruncatedStream` if a packet is unfinished."""
        if self._buffer:
            held = len(self._buffer)
            self._buffer.clear()
            if held < _HEADER:
                raise TruncatedStream(f"stream ended inside a length prefix ({held} of 5 bytes)")
            raise TruncatedStream(f"stream ended inside a packet ({held} bytes held)")


def _as_bytes(packets: list[tuple[bytes, bytes]]) -> list[tuple[bytes, bytes]]:
    # Slices of the bytearray buffer are bytearrays; hand out immutable bytes.
    return [(bytes(c), bytes(p)) for c, p in packets]
