"""A purepythonmilter application with every hook answering, for the differential tests.

What each hook answers is chosen by the data the script sends (a HELO name, an address, a
header, a macro), so one application covers every response and manipulation. Every call is
written to the file given by ``--events`` so the two implementations' calls can be compared.
"""

from __future__ import annotations

import argparse
import logging

from purepythonmilter import (
    Abort,
    Accept,
    AddRecipient,
    AddRecipientWithEsmtpArgs,
    AppendHeader,
    BodyChunk,
    ChangeHeader,
    ChangeMailFrom,
    Connect,
    Continue,
    Data,
    DiscardMessage,
    EndOfHeaders,
    EndOfMessage,
    Header,
    Helo,
    InsertHeader,
    MailFrom,
    PurePythonMilter,
    Quit,
    RcptTo,
    Reject,
    RejectWithCode,
    RemoveRecipient,
    ReplaceBodyChunk,
    SkipToNextStage,
    TempFailWithCode,
    Unknown,
    VerdictOrContinue,
)
from purepythonmilter.api.models import ConnectionInfoArgsIPv4

EVENTS: list[str] = []
_path = ""


def record(*parts: object) -> None:
    with open(_path, "a") as out:
        out.write(" ".join(str(part) for part in parts) + "\n")


async def on_connect(cmd: Connect) -> VerdictOrContinue:
    record("connect", cmd.connection_info_args, cmd.macros)
    info = cmd.connection_info_args
    if isinstance(info, ConnectionInfoArgsIPv4) and str(info.addr) == "10.0.0.1":
        return Accept()
    return Continue(manipulations=[InsertHeader(headername="X-Connect", headertext="yes",
                                                index=0)])


async def on_helo(cmd: Helo) -> VerdictOrContinue:
    record("helo", cmd.hostname, cmd.macros)
    if cmd.hostname == "reject.example":
        return RejectWithCode(primary_code=(5, 5, 0), enhanced_code=(5, 7, 1), text="no HELO")
    return Continue()


async def on_mail_from(cmd: MailFrom) -> VerdictOrContinue:
    record("mail", cmd.address, cmd.esmtp_args, cmd.macros)
    verdicts: dict[str, VerdictOrContinue] = {
        "reject@example.com": Reject(),
        "accept@example.com": Accept(),
        "discard@example.com": DiscardMessage(),
        "later@example.com": TempFailWithCode(primary_code=(4, 5, 1), enhanced_code=(4, 7, 1),
                                              text="try later"),
        "coded@example.com": RejectWithCode(primary_code=(5, 5, 3), text="bad sender"),
    }
    return verdicts.get(cmd.address, Continue())


async def on_rcpt_to(cmd: RcptTo) -> VerdictOrContinue:
    record("rcpt", cmd.address, cmd.esmtp_args, cmd.macros)
    if cmd.address.startswith("nobody@"):
        return Reject()
    return Continue(manipulations=[AddRecipient(recipient="<copy@example.org>")])


async def on_data(cmd: Data) -> VerdictOrContinue:
    record("data", cmd.macros)
    return Continue()


async def on_header(cmd: Header) -> VerdictOrContinue:
    record("header", cmd.name, repr(cmd.text), cmd.macros)
    if cmd.name == "X-Drop":
        return Continue(manipulations=[ChangeHeader(headername="X-Drop", headertext="")])
    if cmd.name == "X-Verdict" and cmd.text.strip() == "discard":
        return DiscardMessage()
    return Continue()


async def on_end_of_headers(cmd: EndOfHeaders) -> VerdictOrContinue:
    record("end-of-headers", cmd.macros)
    return Continue(manipulations=[AppendHeader(headername="X-Seen", headertext="headers")])


async def on_body_chunk(cmd: BodyChunk) -> VerdictOrContinue | SkipToNextStage:
    record("body", len(cmd.data_raw), cmd.macros)
    if b"SKIP" in cmd.data_raw:
        return SkipToNextStage()
    return Continue()


async def on_end_of_message(cmd: EndOfMessage) -> Continue | Accept | Reject | DiscardMessage:
    record("end-of-message", cmd.macros)
    verdict = cmd.macros.get("{verdict}", "")
    changes = [
        ChangeMailFrom(mail_from="<bounces@example.com>", esmtp_args={"BODY": "8BITMIME"}),
        RemoveRecipient(recipient="<receiver@example.org>"),
        AddRecipientWithEsmtpArgs(recipient="<audit@example.org>", esmtp_args={"NOTIFY": "NEVER"}),
        ChangeHeader(headername="Subject", headertext="changed", nth_occurrence=1),
        ReplaceBodyChunk(chunk=b"new body\r\n"),
    ]
    if verdict == "reject":
        return Reject(manipulations=changes)
    if verdict == "accept":
        return Accept(manipulations=changes)
    if verdict == "discard":
        return DiscardMessage()
    return Continue(manipulations=changes)


async def on_abort(cmd: Abort) -> None:
    record("abort")


async def on_quit(cmd: Quit) -> None:
    record("quit")


async def on_unknown(cmd: Unknown) -> VerdictOrContinue:
    record("unknown", cmd.data_raw, cmd.macros)
    return Reject()


milter = PurePythonMilter(
    name="every_hook",
    hook_on_connect=on_connect, hook_on_helo=on_helo, hook_on_mail_from=on_mail_from,
    hook_on_rcpt_to=on_rcpt_to, hook_on_data=on_data, hook_on_header=on_header,
    hook_on_end_of_headers=on_end_of_headers, hook_on_body_chunk=on_body_chunk,
    hook_on_end_of_message=on_end_of_message, hook_on_abort=on_abort, hook_on_quit=on_quit,
    hook_on_unknown=on_unknown, on_rcpt_to_include_rejected=True, restrict_symbols=None,
    can_add_headers=True, can_change_headers=True, can_add_recipients=True,
    can_add_recipients_with_esmtp_args=True, can_remove_recipients=True,
    can_change_mail_from=True, can_change_body=True,
)

if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--bind-host", default="127.0.0.1")
    parser.add_argument("--bind-port", type=int, required=True)
    parser.add_argument("--events", required=True)
    options = parser.parse_args()
    _path = options.events
    logging.basicConfig(level=logging.INFO)
    milter.run_server(host=options.bind_host, port=options.bind_port)
