"""Bytes <-> text. The protocol declares no charset: UTF-8 with surrogateescape keeps every byte."""

from __future__ import annotations


def decode_text(data: bytes) -> str:
    """Decode wire bytes to ``str`` without losing any byte (invalid UTF-8 becomes surrogates)."""
    return data.decode("utf-8", "surrogateescape")


def encode_text(text: str) -> bytes:
    """Encode ``str`` back to the exact wire bytes :func:`decode_text` came from."""
    return text.encode("utf-8", "surrogateescape")
