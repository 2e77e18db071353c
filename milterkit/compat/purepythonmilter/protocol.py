"""``purepythonmilter.protocol``: the command, response and definition modules under their
original names (``exceptions`` holds :class:`ProtocolViolationCommandData`, as ``commands``)."""

from __future__ import annotations

from . import commands, definitions, responses
from . import commands as exceptions

__all__ = ["commands", "definitions", "exceptions", "responses"]
