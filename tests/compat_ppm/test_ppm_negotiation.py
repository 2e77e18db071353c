"""Negotiation from the hooks' return annotations, bit for bit as purepythonmilter 0.0.1 asks.

The expected masks are computed by the real purepythonmilter (in its own venv) for the same
hook sets, and spelled out for the default case.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest

from milterkit import ActionFlag
from milterkit import ProtocolFlag as P
from milterkit.compat.purepythonmilter import (
    Continue,
    Helo,
    ProgrammingError,
    PurePythonMilter,
    RcptTo,
)


async def helo_no_reply(cmd: Helo) -> None:
    return None


async def helo_reply(cmd: Helo) -> Continue:
    return Continue()


async def rcpt_reply(cmd: RcptTo) -> Continue:
    return Continue()


async def not_annotated(cmd):  # type: ignore[no-untyped-def]
    return None


ALL_NO_EVENT = (P.NO_CONNECT | P.NO_HELO | P.NO_ENVELOPE_FROM | P.NO_ENVELOPE_RECIPIENT
                | P.NO_DATA | P.NO_HEADERS | P.NO_END_OF_HEADER | P.NO_BODY | P.NO_UNKNOWN)
ALL_NO_REPLY = (P.NO_REPLY_CONNECT | P.NO_REPLY_HELO | P.NO_REPLY_ENVELOPE_FROM
                | P.NO_REPLY_ENVELOPE_RECIPIENT | P.NO_REPLY_DATA | P.NO_REPLY_HEADER
                | P.NO_REPLY_END_OF_HEADER | P.NO_REPLY_BODY | P.NO_REPLY_UNKNOWN)


def test_no_hooks_asks_for_nothing_but_end_of_message() -> None:
    milter = PurePythonMilter()
    assert milter.protocol_flags == ALL_NO_EVENT | ALL_NO_REPLY | P.SKIP
    assert int(milter.protocol_flags) == 0xFF7FF
    assert milter.action_flags == ActionFlag.NONE


def test_a_hook_returning_only_none_gets_a_no_reply_step() -> None:
    flags = PurePythonMilter(hook_on_helo=helo_no_reply).protocol_flags
    assert not flags & P.NO_HELO
    assert flags & P.NO_REPLY_HELO


def test_a_hook_returning_a_response_is_answered() -> None:
    flags = PurePythonMilter(hook_on_helo=helo_reply).protocol_flags
    assert not flags & (P.NO_HELO | P.NO_REPLY_HELO)


def test_a_hook_without_return_annotation_is_a_programming_error() -> None:
    with pytest.raises(ProgrammingError, match=r"annotate the return type for hook not_annotated"):
        PurePythonMilter(hook_on_helo=not_annotated)


def test_rejected_recipients_and_leading_space_are_asked_for() -> None:
    flags = PurePythonMilter(hook_on_rcpt_to=rcpt_reply, on_rcpt_to_include_rejected=True,
                             headers_with_leading_space=True).protocol_flags
    assert flags & P.ENVELOPE_RECIPIENT_REJECTED
    assert flags & P.HEADER_LEADING_SPACE
    # Without a RCPT hook the flag means nothing, and purepythonmilter leaves it out.
    assert not PurePythonMilter(on_rcpt_to_include_rejected=True).protocol_flags & (
        P.ENVELOPE_RECIPIENT_REJECTED)


#: Hook sets as (hook name -> "reply" | "none"), with the can_* flags set.
CONFIGURATIONS = [
    {},
    {"hook_on_helo": "none"},
    {"hook_on_helo": "reply", "hook_on_header": "none", "hook_on_body_chunk": "reply"},
    {"hook_on_connect": "reply", "hook_on_helo": "reply", "hook_on_mail_from": "none",
     "hook_on_rcpt_to": "reply", "hook_on_data": "none", "hook_on_header": "reply",
     "hook_on_end_of_headers": "none", "hook_on_body_chunk": "none", "hook_on_unknown": "reply",
     "hook_on_end_of_message": "reply", "hook_on_abort": "none", "hook_on_quit": "none"},
]
FLAGS: dict[str, Any] = {"can_add_headers": True, "can_change_body": True, "can_quarantine": True,
         "can_change_mail_from": True, "can_remove_recipients": True}

_REFERENCE_SCRIPT = """
import json, sys
from purepythonmilter import PurePythonMilter, Continue
hooks = json.loads(sys.argv[1])
async def reply(cmd) -> Continue: ...
async def none(cmd) -> None: ...
app = PurePythonMilter(**{k: reply if v == "reply" else none for k, v in hooks.items()},
                       **json.loads(sys.argv[2]), on_rcpt_to_include_rejected=True)
print(json.dumps(app._request_proto_flags.encode_to_flags_bitmask()))
"""


@pytest.mark.parametrize("hooks", CONFIGURATIONS, ids=lambda hooks: "+".join(hooks) or "none")
def test_flags_equal_purepythonmilters(hooks: dict[str, str], reference: Path) -> None:
    done = subprocess.run([str(reference), "-c", _REFERENCE_SCRIPT, json.dumps(hooks),
                           json.dumps(FLAGS)], capture_output=True, text=True, check=True)
    protocol, actions = json.loads(done.stdout)

    async def reply(cmd: object) -> Continue:
        return Continue()

    async def none(cmd: object) -> None:
        return None

    chosen: dict[str, Any] = {k: reply if v == "reply" else none for k, v in hooks.items()}
    ours = PurePythonMilter(**chosen, **FLAGS, on_rcpt_to_include_rejected=True)
    assert int(ours.protocol_flags) == protocol
    # purepythonmilter always adds SETSYMLIST; milterkit adds it when it sends a list.
    assert int(ours.action_flags) == actions & ~ActionFlag.SET_SYMBOL_LIST
