"""``purepythonmilter.protocol.exceptions``: the error a command payload that cannot be decoded
raises (it ends the connection)."""

from __future__ import annotations


class ProtocolViolation(Exception):
    """The MTA broke the protocol."""


class ProtocolViolationCommandData(ProtocolViolation, ValueError):
    """A command's payload cannot be decoded."""
