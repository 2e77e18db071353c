"""The MTA side of the milter protocol, for testing milters without a mail server.

:class:`ServerContext` speaks the MTA's half of the protocol (sans-I/O, on the same codec as
:class:`~milterkit.ClientContext`; milter-manager's naming: the MTA is the *server*);
:class:`InProcess` and :func:`run_session` run it against a filter in-process or over a socket;
:mod:`milterkit.testing.pytest_plugin` offers both as pytest fixtures and
:mod:`milterkit.testing.assertions` checks verdicts and modifications.
"""

from .assertions import (
    assert_body_replaced,
    assert_from_changed,
    assert_header_added,
    assert_header_changed,
    assert_header_deleted,
    assert_header_inserted,
    assert_not_modified,
    assert_not_quarantined,
    assert_quarantined,
    assert_recipient_added,
    assert_recipient_deleted,
    assert_recipient_rejected,
    assert_verdict,
)
from .inprocess import InProcess, run_in_process
from .message import Message, Recipient, parse_message
from .profile import POSTFIX, SENDMAIL, Profile
from .results import Exchange, MessageOutcome, RejectedRecipient, SessionResult
from .server import Connection as Connection  # the older name of SMTPClient
from .server import (
    MilterProtocolViolation,
    ReplyTimeout,
    ServerContext,
    SMTPClient,
    Submission,
    Timeouts,
)
from .sockets import run_session, run_session_async

__all__ = [
    "Exchange", "InProcess", "Message", "MessageOutcome", "MilterProtocolViolation", "POSTFIX",
    "Profile", "Recipient", "RejectedRecipient", "ReplyTimeout", "SENDMAIL", "SMTPClient",
    "ServerContext", "SessionResult", "Submission", "Timeouts", "assert_body_replaced",
    "assert_from_changed", "assert_header_added", "assert_header_changed", "assert_header_deleted",
    "assert_header_inserted", "assert_not_modified", "assert_not_quarantined",
    "assert_quarantined", "assert_recipient_added", "assert_recipient_deleted",
    "assert_recipient_rejected", "assert_verdict", "parse_message", "run_in_process",
    "run_session", "run_session_async",
]
