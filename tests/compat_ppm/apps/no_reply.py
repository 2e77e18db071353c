"""A purepythonmilter application whose hooks return None (no reply), for the negotiation tests.

It asks for two macros at MAIL and none elsewhere, keeps header leading spaces, and adds a header
from its MAIL hook (queued for end-of-message, which always answers).
"""

from __future__ import annotations

import argparse
import logging

from purepythonmilter import Continue, EndOfMessage, Header, MailFrom, PurePythonMilter
from purepythonmilter.api.application import PurePythonMilter as SameClass
from purepythonmilter.protocol.definitions import MacroStage

assert SameClass is PurePythonMilter
_path = ""


def record(*parts: object) -> None:
    with open(_path, "a") as out:
        out.write(" ".join(str(part) for part in parts) + "\n")


async def on_mail_from(cmd: MailFrom) -> None:
    record("mail", cmd.address, cmd.macros)


async def on_header(cmd: Header) -> None:
    record("header", cmd.name, repr(cmd.text), cmd.macros)


async def on_end_of_message(cmd: EndOfMessage) -> Continue:
    record("end-of-message", cmd.macros)
    return Continue()


milter = PurePythonMilter(
    name="no_reply",
    hook_on_mail_from=on_mail_from,
    hook_on_header=on_header,
    hook_on_end_of_message=on_end_of_message,
    restrict_symbols={
        MacroStage.CONNECT: set(),
        MacroStage.MAIL_FROM: {"{mail_addr}", "i"},
        MacroStage.END_OF_MESSAGE: set(),
    },
    headers_with_leading_space=True,
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
