"""Moved to :mod:`milterkit.mta.channel`; this
name stays for code that imported it from here. ``Step`` is now :class:`Answer`."""

from ..mta.channel import MTA, Answer, MTAError, Outcome

Step = Answer

__all__ = ["MTA", "Answer", "MTAError", "Outcome", "Step"]
