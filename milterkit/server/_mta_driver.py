"""Moved to :mod:`milterkit.testing.raw_mta` (an MTA side belongs with the test tools); this
name stays for code that imported it from here. ``Step`` is now :class:`Answer`."""

from ..testing.raw_mta import MTA, Answer, MTAError, Outcome

Step = Answer

__all__ = ["MTA", "Answer", "MTAError", "Outcome", "Step"]
