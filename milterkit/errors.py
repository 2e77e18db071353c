"""The errors a milter sees, by whose fault they are.

:class:`LocalError` (also called :class:`MilterError`) and its subclasses mean *our* filter or
our use of the API was wrong: a status a stage does not take, an action outside end-of-message or
not negotiated, a reply an MTA would refuse, requirements the MTA does not offer. They are raised
where the mistake is made, and nothing is sent for them. :class:`RemoteProtocolError` (also called
:class:`ProtocolError`) means the MTA broke the protocol: :meth:`ClientContext.feed
<milterkit.ClientContext.feed>` raises it, and the connection cannot go on.
"""

from __future__ import annotations

from .protocol.errors import InvalidValue as InvalidValue
from .protocol.errors import LocalError as LocalError
from .protocol.errors import MilterkitError as MilterkitError
from .protocol.errors import NegotiationError as NegotiationError
from .protocol.errors import ProtocolError as ProtocolError
from .protocol.errors import RemoteProtocolError as RemoteProtocolError
from .protocol.errors import RequirementsNotOffered as RequirementsNotOffered
from .protocol.errors import UnsupportedOffer as UnsupportedOffer

#: The milter-side name of :class:`LocalError`: our filter (or our use of milterkit) was wrong.
MilterError = LocalError


class StatusError(LocalError):
    """A handler returned a status that is not valid for the stage (or not a Status at all)."""


class ActionError(LocalError):
    """An action was called where it is not allowed or was not negotiated."""


class StateError(LocalError):
    """A call that does not fit the context's state (a response with no reply owed)."""


class ReplyError(LocalError, ValueError):
    """A reply code, enhanced code or text that an MTA would refuse."""


class SignalError(LocalError, ValueError):
    """An unknown signal name, or a handler whose signature cannot take the signal's arguments."""


# The names defined here (the others are re-exported from milterkit.protocol.errors).
__all__ = ["ActionError", "MilterError", "ReplyError", "SignalError", "StateError", "StatusError"]
