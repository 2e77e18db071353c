"""The status the MTA gets from two composed filters: every pair of statuses at every stage.

The expected value is computed from the rules as the issue states them (milter-manager's
ranking DISCARD > REJECT > TEMPORARY_FAILURE > CONTINUE > SKIP > ACCEPT; ACCEPT only when every
filter still attached accepted; SKIP only when every one still working skips), written here
independently of milterkit.compose.ranking.
"""

from __future__ import annotations

import itertools

import pytest
from composelib import Composed, returning, spec

from milterkit import Status
from milterkit.compose import RANK, combine
from milterkit.compose.ranking import ALLOWED, STAGE_NAMES, stronger, strongest
from milterkit.testing import Message
from milterkit.testing.server import Submission

S = Status
ORDER = [S.DISCARD, S.REJECT, S.TEMPORARY_FAILURE, S.CONTINUE, S.SKIP, S.ACCEPT]


def expected(stage: str, first: Status, second: Status) -> Status:
    pair = (first, second)
    for refusal in (S.DISCARD, S.REJECT, S.TEMPORARY_FAILURE):
        if refusal in pair:
            return refusal
    still = [status for status in pair if status is not S.ACCEPT]
    if not still:
        return S.ACCEPT
    if all(status is S.SKIP for status in still):
        return S.SKIP
    return S.CONTINUE


CASES = [
    (stage, first, second)
    for stage in STAGE_NAMES
    for first, second in itertools.product(sorted(ALLOWED[stage]), repeat=2)
]


def submission(stage: str) -> Submission:
    message = Message.build(headers=[("Subject", "x")], body=b"body\r\n")
    return Submission(message, unknown="XYZZY" if stage == "unknown" else None)


@pytest.mark.parametrize(("stage", "first", "second"), CASES,
                         ids=[f"{s}-{a.nick}-{b.nick}" for s, a, b in CASES])
def test_two_filters_at_every_stage(stage: str, first: Status, second: Status) -> None:
    reply_a = ("550" if first is S.REJECT else "451", None, "from a")
    reply_b = ("550" if second is S.REJECT else "451", None, "from b")
    composed = Composed([
        spec("a", returning(stage, first, reply=reply_a if first in (S.REJECT, S.TEMPFAIL)
                            else None)),
        spec("b", returning(stage, second, reply=reply_b if second in (S.REJECT, S.TEMPFAIL)
                            else None)),
    ])
    composed.session.run([submission(stage)], check=False)
    want = expected(stage, first, second)
    assert composed.answer(stage) is want
    context = composed.session.context
    assert context is not None


def test_reply_text_comes_from_the_deciding_filter() -> None:
    """a tempfails with its text, b rejects with its own: REJECT wins, with b's text."""
    composed = Composed([
        spec("a", returning("envelope-recipient", S.TEMPFAIL, reply=("451", "4.7.1", "later"))),
        spec("b", returning("envelope-recipient", S.REJECT, reply=("550", "5.1.1", "nobody"))),
        spec("c", returning("envelope-recipient", S.REJECT, reply=("554", "5.7.1", "c too"))),
    ])
    result = composed.run()
    (rejected,) = result.last.rejected_recipients
    assert rejected.status is S.REJECT
    assert rejected.reply == "550 5.1.1 nobody"


def test_ranking_functions_follow_milter_manager_order() -> None:
    for stronger_status, weaker in itertools.combinations(ORDER, 2):
        assert RANK[stronger_status] > RANK[weaker]
        assert stronger(weaker, stronger_status) is stronger_status
        assert stronger(stronger_status, weaker) is stronger_status
    assert strongest([S.ACCEPT, S.SKIP, S.CONTINUE]) is S.CONTINUE
    assert strongest([]) is None
    assert combine([], [], accepted=True) is S.ACCEPT
    assert combine([], [], accepted=False) is S.CONTINUE
    assert combine([], [S.SKIP, S.CONTINUE], accepted=True) is S.CONTINUE
    assert combine([S.TEMPFAIL, S.REJECT], [S.CONTINUE], accepted=False) is S.REJECT


def test_accept_at_rcpt_does_not_stop_another_filters_end_of_message() -> None:
    """a accepts at RCPT, b adds a header at end-of-message: the MTA gets CONTINUE at RCPT
    and b's header at the end."""

    def header_at_end(client: object) -> None:
        def add(context: object, chunk: bytes) -> None:
            context.add_header("X-B", "done")  # type: ignore[attr-defined]

        client.connect("end-of-message", add)  # type: ignore[attr-defined]

    composed = Composed([spec("a", returning("envelope-recipient", S.ACCEPT)),
                         spec("b", header_at_end)])
    result = composed.run()
    assert composed.answer("envelope-recipient") is S.CONTINUE
    assert result.last.message.header("X-B") == "done"
    assert result.last.status is S.CONTINUE
