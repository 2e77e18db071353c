# mypy: ignore-errors
# (a peer library's program, run in that library's own venv: not milterkit's code)
"""The benchmark's job on purepythonmilter (its own venv, bench/peers/run.py): a hook on every
event that answers, an X-Load header at end-of-message.  python ppm_milter.py HOST PORT"""

import logging
import sys

from purepythonmilter import (
    AppendHeader,
    Continue,
    PurePythonMilter,
    VerdictOrContinue,
)


async def on_event(cmd) -> VerdictOrContinue:
    return Continue()


async def on_eom(cmd) -> VerdictOrContinue:
    return Continue(manipulations=[AppendHeader(headername="X-Load", headertext="1")])


milter = PurePythonMilter(
    name="bench",
    hook_on_connect=on_event, hook_on_helo=on_event, hook_on_mail_from=on_event,
    hook_on_rcpt_to=on_event, hook_on_data=on_event, hook_on_header=on_event,
    hook_on_end_of_headers=on_event, hook_on_body_chunk=on_event,
    hook_on_end_of_message=on_eom, can_add_headers=True,
)

if __name__ == "__main__":
    logging.basicConfig(level=logging.WARNING)
    milter.run_server(host=sys.argv[1], port=int(sys.argv[2]))
