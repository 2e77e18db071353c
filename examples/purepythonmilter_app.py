"""A purepythonmilter application, run unmodified on milterkit.

It is written against purepythonmilter's API only (``import purepythonmilter``): serve it with

    milterkit compat purepythonmilter examples/purepythonmilter_app.py --port 9000

and point Postfix at ``inet:127.0.0.1:9000``. It refuses one sender with a reply of its own,
fails a recipient domain temporarily, stamps every message with the client's address from the
connect hook (queued until end-of-message, as purepythonmilter does) and swaps the body of
messages whose subject asks for it.
"""

from __future__ import annotations

import argparse
import logging

import purepythonmilter
from purepythonmilter import (
    DEFAULT_LISTENING_TCP_IP,
    DEFAULT_LISTENING_TCP_PORT,
    AppendHeader,
    Connect,
    ConnectionInfoArgsIPv4,
    ConnectionInfoArgsIPv6,
    Continue,
    EndOfMessage,
    Header,
    MailFrom,
    PurePythonMilter,
    RcptTo,
    RejectWithCode,
    ReplaceBodyChunk,
    TempFailWithCode,
    VerdictOrContinue,
)

_swap_body: set[str] = set()  # connection ids whose current message asked for a new body


async def on_connect(cmd: Connect) -> Continue:
    info = cmd.connection_info_args
    if isinstance(info, (ConnectionInfoArgsIPv4, ConnectionInfoArgsIPv6)):
        return Continue(manipulations=[AppendHeader(headername="X-Client-IP",
                                                    headertext=str(info.addr))])
    return Continue()


async def on_mail_from(cmd: MailFrom) -> VerdictOrContinue:
    if cmd.address == "spammer@example.com":
        return RejectWithCode(primary_code=(5, 7, 1), enhanced_code=(5, 7, 1),
                              text="We do not take mail from you")
    return Continue()


async def on_rcpt_to(cmd: RcptTo) -> VerdictOrContinue:
    if cmd.address.endswith("@busy.example"):
        return TempFailWithCode(primary_code=(4, 5, 1), enhanced_code=(4, 7, 1),
                                text="Try again later")
    return Continue()


async def on_header(cmd: Header) -> None:
    # Annotated -> None: the MTA is told not to wait for a reply to headers.
    if cmd.name.lower() == "subject" and "new body" in cmd.text:
        _swap_body.add("current")


async def on_end_of_message(cmd: EndOfMessage) -> Continue:
    if "current" in _swap_body:
        _swap_body.clear()
        milter.logger.info("replacing the body")
        return Continue(manipulations=[ReplaceBodyChunk(chunk=b"The body was replaced.\r\n")])
    return Continue()


milter = PurePythonMilter(
    name="purepythonmilter_app",
    hook_on_connect=on_connect,
    hook_on_mail_from=on_mail_from,
    hook_on_rcpt_to=on_rcpt_to,
    hook_on_header=on_header,
    hook_on_end_of_message=on_end_of_message,
    can_add_headers=True,
    can_change_body=True,
)

if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default=DEFAULT_LISTENING_TCP_IP)
    parser.add_argument("--port", type=int, default=DEFAULT_LISTENING_TCP_PORT)
    options = parser.parse_args()
    logging.basicConfig(level=logging.INFO)
    logging.getLogger(__name__).info("purepythonmilter API version %s",
                                     purepythonmilter.__version__)
    milter.run_server(host=options.host, port=options.port)
