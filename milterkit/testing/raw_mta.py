"""A minimal MTA side over a real socket: moved to :mod:`milterkit.mta.channel` (production
code, the milter manager, uses it too); these names stay importable from here."""

from ..mta.channel import MTA, Answer, MilterChannel, MTAError, Outcome

__all__ = ["MTA", "Answer", "MTAError", "MilterChannel", "Outcome"]
