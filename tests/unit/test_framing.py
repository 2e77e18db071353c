"""Packet framing: the length prefix, splits and coalescing, and every framing error."""

from __future__ import annotations

import pytest

from milterkit.protocol import (
    DEFAULT_MAX_PAYLOAD,
    STRICT_MAX_PAYLOAD,
    FramingError,
    PacketDecoder,
    PacketTooLarge,
    ProtocolError,
    TruncatedStream,
    ZeroLengthPacket,
    encode_packet,
)


def test_encode_packet_is_length_command_payload() -> None:
    assert encode_packet(b"c") == b"\x00\x00\x00\x01c"
    assert encode_packet(b"H", b"mx\0") == b"\x00\x00\x00\x04Hmx\0"
    assert encode_packet(b"B", b"x" * 300) == b"\x00\x00\x01\x2dB" + b"x" * 300


def test_one_packet_decodes_to_command_and_payload() -> None:
    decoder = PacketDecoder()
    assert decoder.feed(b"\x00\x00\x00\x04Hmx\0") == [(b"H", b"mx\0")]
    assert decoder.buffered == 0
    assert decoder.error is None


def test_packets_are_bytes_even_when_buffered() -> None:
    decoder = PacketDecoder()
    assert decoder.feed(b"\x00\x00") == []
    packets = decoder.feed(b"\x00\x02Bx\x00\x00\x00\x01N")
    assert packets == [(b"B", b"x"), (b"N", b"")]
    for command, payload in packets:
        assert type(command) is bytes and type(payload) is bytes


def test_accepts_bytearray_and_memoryview() -> None:
    decoder = PacketDecoder()
    # Typed as bytes, but a runtime may hand over what its transport gives: both are copied.
    assert decoder.feed(bytearray(b"\x00\x00\x00\x01Q")) == [(b"Q", b"")]  # type: ignore[arg-type]
    assert decoder.feed(memoryview(b"\x00\x00\x00\x01A")) == [(b"A", b"")]  # type: ignore[arg-type]


@pytest.mark.parametrize("cut", range(1, 9))
def test_every_split_point_gives_the_same_packets(cut: int) -> None:
    stream = b"\x00\x00\x00\x04Hmx\0" + b"\x00\x00\x00\x01T"
    decoder = PacketDecoder()
    packets = decoder.feed(stream[:cut]) + decoder.feed(stream[cut:])
    assert packets == [(b"H", b"mx\0"), (b"T", b"")]
    assert decoder.buffered == 0


def test_one_byte_at_a_time() -> None:
    stream = b"".join(encode_packet(b"L", b"Subject\0hi %d\0" % n) for n in range(20))
    decoder = PacketDecoder()
    packets = [p for i in range(len(stream)) for p in decoder.feed(stream[i : i + 1])]
    assert packets == [(b"L", b"Subject\0hi %d\0" % n) for n in range(20)]


def test_buffered_counts_an_unfinished_packet() -> None:
    decoder = PacketDecoder()
    decoder.feed(b"\x00\x00\x00\x05Habc")
    assert decoder.buffered == 8
    assert decoder.feed(b"\0") == [(b"H", b"abc\0")]
    assert decoder.buffered == 0


def test_empty_feed_is_harmless() -> None:
    decoder = PacketDecoder()
    assert decoder.feed(b"") == []
    decoder.end()


def test_zero_length_packet_raises_and_says_where() -> None:
    decoder = PacketDecoder()
    with pytest.raises(ZeroLengthPacket) as info:
        decoder.feed(b"\x00\x00\x00\x01N" + b"\x00\x00\x00\x00" + b"\x00\x00\x00\x01Q")
    assert isinstance(info.value, FramingError) and isinstance(info.value, ProtocolError)
    assert "offset 5" in str(info.value)
    assert "length 0" in str(info.value)


def test_decode_keeps_packets_before_the_break() -> None:
    decoder = PacketDecoder()
    packets = decoder.decode(b"\x00\x00\x00\x01N\x00\x00\x00\x00\x00\x00\x00\x01Q")
    assert packets == [(b"N", b"")]
    assert isinstance(decoder.error, ZeroLengthPacket)


def test_decoder_stays_failed() -> None:
    decoder = PacketDecoder()
    with pytest.raises(ZeroLengthPacket) as first:
        decoder.feed(b"\x00\x00\x00\x00")
    with pytest.raises(ZeroLengthPacket) as second:
        decoder.feed(b"\x00\x00\x00\x01Q")
    assert second.value is first.value
    assert decoder.decode(b"\x00\x00\x00\x01Q") == []
    assert decoder.buffered == 0


def test_offset_counts_the_whole_stream() -> None:
    decoder = PacketDecoder()
    decoder.feed(b"\x00\x00\x00\x01N\x00\x00")
    with pytest.raises(ZeroLengthPacket, match="offset 5"):
        decoder.feed(b"\x00\x00")


def test_too_large_raises_before_the_payload_arrives() -> None:
    decoder = PacketDecoder(max_payload=10)
    with pytest.raises(PacketTooLarge) as info:
        decoder.feed((12).to_bytes(4, "big") + b"B")
    assert info.value.length == 11
    assert info.value.limit == 10
    assert "claims 11 payload bytes" in str(info.value)
    assert "limit of 10" in str(info.value)
    assert decoder.buffered == 0


def test_payload_at_the_limit_is_fine() -> None:
    decoder = PacketDecoder(max_payload=10)
    assert decoder.feed(encode_packet(b"B", b"x" * 10)) == [(b"B", b"x" * 10)]


@pytest.mark.parametrize("prefix", [b"\xff\xff\xff\xff", b"\x80\x00\x00\x00", b"\x7f\xff\xff\xff"])
def test_huge_length_is_refused_from_the_prefix_alone(prefix: bytes) -> None:
    decoder = PacketDecoder()
    with pytest.raises(PacketTooLarge) as info:
        decoder.feed(prefix)
    assert info.value.length == int.from_bytes(prefix, "big") - 1
    assert decoder.buffered == 0


def test_default_and_strict_limits() -> None:
    assert PacketDecoder().max_payload == DEFAULT_MAX_PAYLOAD == 1024 * 1024 - 1
    strict = PacketDecoder.strict()
    assert strict.max_payload == STRICT_MAX_PAYLOAD == 65535
    assert strict.feed(encode_packet(b"B", b"x" * 65535)) == [(b"B", b"x" * 65535)]
    with pytest.raises(PacketTooLarge, match="65536"):
        strict.feed(b"\x00\x01\x00\x01B")


@pytest.mark.parametrize("limit", [0, -1, 0x7FFFFFFF])
def test_max_payload_out_of_range(limit: int) -> None:
    with pytest.raises(ValueError, match="max_payload"):
        PacketDecoder(limit)


def test_end_inside_a_length_prefix() -> None:
    decoder = PacketDecoder()
    decoder.feed(b"\x00\x00")
    with pytest.raises(TruncatedStream, match=r"length prefix \(2 of 5 bytes\)"):
        decoder.end()
    decoder.end()  # the held bytes were dropped: a second end is clean


def test_end_inside_a_packet() -> None:
    decoder = PacketDecoder()
    decoder.feed(b"\x00\x00\x00\x04Hm")
    with pytest.raises(TruncatedStream, match=r"inside a packet \(6 bytes held\)"):
        decoder.end()


def test_end_between_packets_is_clean() -> None:
    decoder = PacketDecoder()
    decoder.feed(b"\x00\x00\x00\x01Q")
    decoder.end()
