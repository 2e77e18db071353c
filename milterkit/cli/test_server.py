"""``milterkit test-server``: play an MTA against a running milter (milter-test-server's twin).

It connects to the milter's connection spec, negotiates, sends a connection and one or more
messages as Postfix or Sendmail would, and prints the verdict, the time taken, the quarantine
reason and, with ``--output-message``, a diff of the message before and after the milter.
Exit status: 0 when every session ran to its end, 1 when one broke the protocol or timed out,
2 when the options are wrong or the milter cannot be reached.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from ..protocol.steps import STEPS

if TYPE_CHECKING:
    from collections.abc import Sequence

    from ..protocol.commands import SocketAddress
    from ..testing.results import SessionResult

HELP = "Act as an MTA: send messages to a milter and print its verdicts and changes."

_DEFAULT_BODY = [f"La de da de da {n}.\r\n".encode() for n in range(1, 5)]
#: ``--<signal>-macro`` options: the events that come with a macro list of their own (from the
#: steps table), by signal, with the command byte the macros are sent for.
_MACRO_OPTIONS = {
    step.signal: step.code.decode("ascii")
    for step in STEPS
    if step.signal is not None and step.macros_from == step.code
}


def _name_value(text: str) -> tuple[str, str]:
    name, colon, value = text.partition(":")
    if not colon or not name:
        raise argparse.ArgumentTypeError(f"expected NAME:VALUE, not {text!r}")
    return name, value


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of seconds: {text!r}") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"a timeout must be positive, not {text!r}")
    return value


def _count(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, not {text!r}")
    return int(text)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add test-server's options (milter-test-server's names where they exist)."""
    from ..server.client import DEFAULT_SPEC

    add = parser.add_argument
    add("-s", "--connection-spec", default=DEFAULT_SPEC, metavar="SPEC",
        help=f"the milter's socket: unix:/path, inet:PORT@HOST, inet6:PORT@[ADDR] "
        f"(default {DEFAULT_SPEC})")
    add("--profile", choices=("postfix", "sendmail"), default="postfix",
        help="which MTA to imitate (default postfix)")
    add("--negotiate-version", type=int, default=6, metavar="N",
        help="protocol version to offer: 2, 3, 4 or 6 (default 6)")
    add("--connect-host", default="mx.example.net", metavar="HOST",
        help="the SMTP client's host name (default mx.example.net)")
    add("--connect-address", default="inet:50443@[192.168.123.123]", metavar="SPEC",
        help="the SMTP client's address as a spec: inet:PORT@[ADDR], inet6:PORT@[ADDR], "
        "unix:/path or 'unknown' (default inet:50443@[192.168.123.123])")
    add("--helo-fqdn", metavar="FQDN", help="HELO argument (default: the --connect-host name)")
    add("--no-helo", action="store_true", help="send no HELO")
    add("-f", "--envelope-from", "--from", metavar="ADDRESS",
        help="MAIL FROM address (default sender@example.com, or the mail file's From:)")
    add("-r", "--envelope-recipient", "--recipient", action="append", metavar="ADDRESS",
        help="RCPT TO address; repeatable (default receiver@example.org, or the mail file's "
        "To:/Cc:)")
    add("-H", "--header", action="append", type=_name_value, metavar="NAME:VALUE",
        help="a header; repeatable (From: and To: are added from the envelope if absent)")
    add("-b", "--body", action="append", metavar="CHUNK",
        help="a body chunk, sent as one BODY packet; repeatable")
    add("-m", "--mail-file", type=Path, metavar="PATH",
        help="an RFC 5322 message: its headers (folded lines kept) and body (cut into "
        "65535-byte chunks); its From:/To: set the envelope unless -f/-r are given")
    add("--unknown", metavar="COMMAND", help="an unknown SMTP command, sent after RCPT")
    for stage in _MACRO_OPTIONS:
        add(f"--{stage}-macro", action="append", type=_name_value, metavar="NAME:VALUE",
            default=[], help=f"a macro sent with the {stage} event; repeatable")
    add("--authenticated-name", metavar="NAME", help="{auth_authen} at MAIL")
    add("--authenticated-type", metavar="TYPE", help="{auth_type} at MAIL")
    add("--authenticated-author", metavar="AUTHOR", help="{auth_author} at MAIL")
    add("--connection-timeout", type=_seconds, default=30.0, metavar="SECONDS",
        help="connect timeout (default 30)")
    add("--reading-timeout", type=_seconds, default=30.0, metavar="SECONDS",
        help="wait for each reply before the content (default 30)")
    add("--end-of-message-timeout", type=_seconds, default=300.0, metavar="SECONDS",
        help="wait for each reply from the headers on (default 300)")
    add("--all-timeouts", type=_seconds, metavar="SECONDS", help="set every timeout at once")
    add("-n", "--messages", type=_count, default=1, metavar="N",
        help="messages per connection (default 1)")
    add("--sessions", type=_count, default=1, metavar="N", help="connections to make (default 1)")
    add("-t", "--threads", "--concurrency", dest="concurrency", type=_count, default=1,
        metavar="N", help="connections at the same time (default 1)")
    add("--expect", type=_verdicts, metavar="VERDICT[,VERDICT]",
        help="exit with status 3 unless every message gets one of these verdicts (pass, "
        "accept, reject, temporary-failure/tempfail, discard)")
    add("--fail-on-verdict", type=_verdicts, metavar="VERDICT[,VERDICT]",
        help="exit with status 3 if any message gets one of these verdicts")
    add("--output-message", action="store_true",
        help="print the message as the milter left it, as a diff")
    add("--color", nargs="?", const="yes", default="auto", choices=("yes", "no", "auto"),
        help="colour the diff: yes, no, auto (= on a terminal; the default)")
    add("-v", "--verbose", action="store_true", help="print every command and its replies")


def main(args: argparse.Namespace) -> int:
    """Build the session from the options, run it, print the report."""
    from ..protocol.errors import ProtocolError
    from ..server.spec import SpecError, parse_spec
    from ..testing.message import Message, Recipient, bracket, parse_message, raw_value, to_crlf
    from ..testing.report import session_report
    from ..testing.server import SMTPClient, Submission, Timeouts
    from ..testing.sockets import run_sessions_async
    from ..tools.trace import exchange_lines

    try:
        parse_spec(args.connection_spec)
        address = _client_address(args.connect_address)
    except (SpecError, ValueError) as exc:
        print(f"milterkit test-server: {exc}", file=sys.stderr)
        return 2
    if args.negotiate_version not in (2, 3, 4, 5, 6):
        print("milterkit test-server: --negotiate-version must be 2 to 6", file=sys.stderr)
        return 2

    if args.mail_file is not None:
        try:
            message = parse_message(args.mail_file.read_bytes())
        except OSError as exc:
            print(f"milterkit test-server: cannot read mail file: {exc}", file=sys.stderr)
            return 2
    else:
        message = Message(body=b"".join(_DEFAULT_BODY))
    if args.envelope_from:
        message.sender = bracket(args.envelope_from)
    if args.envelope_recipient:
        message.recipients = [Recipient(bracket(r)) for r in args.envelope_recipient]
    for name, value in args.header or ():
        message.headers.append((name, raw_value(value.lstrip(" "))))
    names = {name.lower() for name, _ in message.headers}
    if "from" not in names:
        message.headers.insert(0, ("From", " " + message.sender))
    if "to" not in names:
        to = ", ".join(r.address for r in message.recipients)
        message.headers.insert(1, ("To", " " + to))
    chunks: list[bytes] | None = None
    if args.body:
        chunks = [to_crlf(c.encode("utf-8", "surrogateescape")) for c in args.body]
        message.body = b"".join(chunks)
    elif args.mail_file is None:
        chunks = list(_DEFAULT_BODY)

    macros: dict[str, dict[str, str]] = {}
    for stage, letter in _MACRO_OPTIONS.items():
        for name, value in getattr(args, f"{stage.replace('-', '_')}_macro"):
            macros.setdefault(letter, {})[name] = value
    for option, name in (("authenticated_name", "{auth_authen}"),
                         ("authenticated_type", "{auth_type}"),
                         ("authenticated_author", "{auth_author}")):
        if getattr(args, option):
            macros.setdefault("M", {})[name] = getattr(args, option)

    if args.all_timeouts:
        timeouts = Timeouts(args.all_timeouts, args.all_timeouts, args.all_timeouts)
    else:
        timeouts = Timeouts(args.connection_timeout, args.reading_timeout,
                            args.end_of_message_timeout)
    color = args.color == "yes" or (args.color == "auto" and sys.stdout.isatty())
    helo = None if args.no_helo else (args.helo_fqdn or args.connect_host)
    connection = SMTPClient(args.connect_host, address, helo)

    messages = [Submission(message.copy(), chunks, args.unknown) for _ in range(args.messages)]
    options = dict(profile=args.profile, version=args.negotiate_version, connection=connection,
                   macros=macros, timeouts=timeouts)
    try:
        results = asyncio.run(run_sessions_async(
            args.connection_spec, messages, sessions=args.sessions,
            concurrency=args.concurrency, check=False, **options,
        ))
    except (OSError, asyncio.TimeoutError, SpecError) as exc:
        reason = str(exc) or type(exc).__name__
        print(f"milterkit test-server: cannot connect to {args.connection_spec}: {reason}",
              file=sys.stderr)
        return 2
    failed = False
    for number, result in enumerate(results):
        if len(results) > 1:
            print(f"{'' if number == 0 else chr(10)}session: {number + 1}")
        if args.verbose:
            for line in exchange_lines(result.exchanges):
                print(line)
        for line in session_report(result, show_message=args.output_message, color=color):
            print(line)
        if result.error is not None:
            failed = True
            if isinstance(result.error, ProtocolError):
                print(f"milterkit test-server: {result.error}", file=sys.stderr)
    if failed:
        return 1
    return _check_verdicts(results, args.expect, args.fail_on_verdict)


#: The verdict names ``--expect`` and ``--fail-on-verdict`` take.
VERDICTS = ("pass", "accept", "reject", "temporary-failure", "discard")


def _verdicts(text: str) -> frozenset[str]:
    names = set()
    for name in text.replace(" ", "").lower().split(","):
        name = {"tempfail": "temporary-failure", "continue": "pass"}.get(name, name)
        if name not in VERDICTS:
            raise argparse.ArgumentTypeError(
                f"unknown verdict {name!r} (use {', '.join(VERDICTS)} or tempfail)")
        names.add(name)
    return frozenset(names)


def _check_verdicts(results: Sequence[SessionResult], expect: frozenset[str] | None,
                    refuse: frozenset[str] | None) -> int:
    """Exit status 3, with a line on stderr per message, for a verdict not wanted."""
    status = 0
    for session, result in enumerate(results, 1):
        for number, outcome in enumerate(result.messages, 1):
            verdict = outcome.verdict
            if (expect is not None and verdict not in expect) or (
                    refuse is not None and verdict in refuse):
                text = (outcome.reply or "").replace("\r\n", " / ").replace("\n", " / ")
                reply = f" ({text})" if text else ""
                print(f"milterkit test-server: session {session} message {number}: verdict "
                      f"{verdict} at {outcome.stage}{reply}", file=sys.stderr)
                status = 3
    return status


def _client_address(text: str) -> SocketAddress:
    """The SocketAddress of the simulated SMTP client, from a spec-like string."""
    from ..protocol.commands import SocketAddress
    from ..server.spec import parse_spec

    if text.lower() == "unknown":
        return SocketAddress("U")
    spec = parse_spec(text)
    if spec.family == "unix":
        return SocketAddress("L", spec.path, 0)
    if spec.host is None:
        raise ValueError(f"--connect-address needs an address: {text!r}")
    return SocketAddress("4" if spec.family == "inet" else "6", spec.host, spec.port)

