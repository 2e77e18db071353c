"""``milterkit run TARGET``: serve the filter that TARGET's ``setup(client)`` builds."""

from __future__ import annotations

import argparse
import logging
import sys

from . import run_metrics

HELP = "Run a milter: serve the filter defined by TARGET's setup(client)."

_POLICIES = {
    "tempfail": "TEMPORARY_FAILURE", "reject": "REJECT", "accept": "ACCEPT",
    "continue": "CONTINUE",
}
_LOG_LEVELS = ("debug", "info", "warning", "error", "critical")
LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s[%(process)d]: %(message)s"


def _mode(text: str) -> int:
    try:
        mode = int(text, 8)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an octal mode: {text!r}") from None
    if not 0 <= mode <= 0o7777:
        raise argparse.ArgumentTypeError(f"mode out of range: {text!r}")
    return mode


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, not {value}")
    return value


def _payload(text: str) -> int:
    from ..protocol.constants import STRICT_MAX_PAYLOAD

    value = int(text)
    if not STRICT_MAX_PAYLOAD <= value <= 0x7FFFFFFE:
        raise argparse.ArgumentTypeError(
            f"must be between {STRICT_MAX_PAYLOAD} (libmilter's strict cap) and 2147483646, "
            f"not {value}")
    return value


def _positive_seconds(text: str) -> float:
    value = float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be positive, not {text}")
    return value


def _seconds(text: str) -> float:
    value = float(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must not be negative, not {value}")
    return value


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add ``run``'s options to its parser."""
    from ..server.client import DEFAULT_EXCEPTION_REPLY, DEFAULT_SPEC
    from ..server.loop import LOOP_KINDS

    parser.epilog = (
        "TARGET is a file (filters/spam.py) or a module (mypackage.filter), optionally "
        "followed by :FUNCTION (default setup). Examples:  milterkit run examples/add_header.py "
        "-l unix:/run/milterkit/milter.sock --workers 2.  Under systemd socket activation "
        "(LISTEN_FDS) the passed sockets are used and --listen is ignored. fd:N serves a "
        "listening socket inherited as file descriptor N (e.g. from a wrapper that bound it). "
        "Several TARGETs (or an installed filter's name, see milterkit filters) are composed "
        "into one milter; --config FILE names them in a TOML file (docs/plugins.rst)."
    )
    parser.add_argument("target", metavar="TARGET", nargs="*",
                        help="file or module defining setup(client), or an installed filter "
                        "(milterkit filters); several are composed into one milter")
    parser.add_argument("--config", metavar="FILE",
                        help="TOML file naming the filters and these settings (docs/plugins)")
    parser.set_defaults(_run_parser=parser)
    parser.add_argument(
        "-l", "--listen", "-s", "--connection-spec", dest="listen", metavar="SPEC",
        default=DEFAULT_SPEC,
        help="where to listen: unix:/path, local:/path, /path, inet:PORT[@HOST|@[ADDR]], "
        f"inet6:PORT[@[ADDR]], fd:N (an inherited listening socket) (default {DEFAULT_SPEC})",
    )
    parser.add_argument("-w", "--workers", type=_positive_int, default=1, metavar="N",
                        help="pre-forked worker processes sharing the socket (default 1)")
    parser.add_argument("--timeout", type=_seconds, default=7210.0, metavar="SECONDS",
                        help="inactivity timeout per connection; 0 disables (default 7210)")
    parser.add_argument("--shutdown-timeout", type=_seconds, default=30.0, metavar="SECONDS",
                        help="on SIGTERM/SIGINT, how long sessions in flight may go on before "
                        "they are closed (default 30)")
    parser.add_argument("--exception-policy", choices=sorted(_POLICIES), default="tempfail",
                        help="what a handler's exception becomes (default tempfail)")
    parser.add_argument("--exception-reply", metavar="TEXT", default=DEFAULT_EXCEPTION_REPLY,
                        help="SMTP reply sent with the tempfail/reject policy "
                        f"(default {DEFAULT_EXCEPTION_REPLY!r})")
    parser.add_argument("--max-connections", type=_positive_int, metavar="N",
                        help="concurrent connections per process; more wait in the backlog")
    parser.add_argument("--threads", type=_positive_int, metavar="N",
                        help="run every plain def handler in a pool of N threads (blocking "
                        "code: DNS, files, databases); each connection's handlers stay in order "
                        "(docs/blocking)")
    parser.add_argument("--progress-interval", type=float, metavar="SECONDS",
                        help="send progress keep-alives this often while an async handler runs")
    parser.add_argument("--handler-deadline", type=_positive_seconds, metavar="SECONDS",
                        help="cancel a coroutine handler running longer and answer with the "
                        "exception policy; keep-alives never extend it (default: none)")
    parser.add_argument("--max-payload", type=_payload, metavar="BYTES",
                        help="largest packet payload taken from the MTA; 65535 is libmilter's "
                        "strict cap (default 1048575, as with MDS_1M)")
    parser.add_argument("--socket-mode", type=_mode, default=0o660, metavar="OCTAL",
                        help="mode of a unix socket (default 0660)")
    parser.add_argument("--socket-group", metavar="GROUP",
                        help="group (name or number) of a unix socket")
    parser.add_argument("--backlog", type=_positive_int, metavar="N",
                        help="listen backlog (default: the system's maximum)")
    parser.add_argument("--log-level", choices=_LOG_LEVELS, default="info",
                        help="log level (default info)")
    parser.add_argument("--log-format", choices=("text", "json"), default="text",
                        help="text lines, or one JSON object per line (default text; "
                        "docs/logging)")
    parser.add_argument("--loop", choices=LOOP_KINDS, default="auto",
                        help="event loop: uvloop if installed (auto), asyncio, or uvloop")
    parser.add_argument("--no-quickack", dest="quickack", action="store_false",
                        help="do not re-arm TCP_QUICKACK on TCP connections (Linux; by default "
                        "it is, so Postfix's Nagle-delayed packets never wait ~40 ms for an ACK)")
    run_metrics.add_argument(parser)


def configure_logging(level: str, log_format: str = "text") -> None:
    """Log to stderr at ``level``, as text lines or JSON lines (``--log-format``)."""
    handler = logging.StreamHandler(sys.stderr)
    if log_format == "json":
        from ..server.messagelog import JsonFormatter

        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter(LOG_FORMAT))
    logging.basicConfig(level=level.upper(), handlers=[handler])


def main(args: argparse.Namespace) -> int:
    """Build the Client from the options, run the target's setup, serve until stopped."""
    import socket

    from ..protocol.constants import DEFAULT_MAX_PAYLOAD
    from ..server import Client, ListenError, SpecError
    from ..server.target import TargetError
    from ..status import Status
    from .run_compose import apply_config, load_filters

    try:
        apply_config(args)
    except TargetError as exc:
        print(f"milterkit run: {exc}", file=sys.stderr)
        return 2
    configure_logging(args.log_level, args.log_format)
    log = logging.getLogger("milterkit.server")
    try:
        client = Client(
            args.listen,
            timeout=args.timeout or None,
            shutdown_timeout=args.shutdown_timeout,
            exception_policy=Status[_POLICIES[args.exception_policy]],
            exception_reply=args.exception_reply or None,
            max_connections=args.max_connections,
            progress_interval=args.progress_interval,
            socket_mode=args.socket_mode,
            socket_group=args.socket_group,
            backlog=args.backlog or socket.SOMAXCONN,
            handler_deadline=getattr(args, "handler_deadline", None),
            max_payload=getattr(args, "max_payload", None) or DEFAULT_MAX_PAYLOAD,
            quickack=args.quickack,
            threads=args.threads,
        )
    except (SpecError, ValueError) as exc:
        print(f"milterkit run: {exc}", file=sys.stderr)
        return 2
    try:
        setup = load_filters(args)
        setup(client)
    except TargetError as exc:
        print(f"milterkit run: {exc}", file=sys.stderr)
        return 2
    except Exception as exc:  # the filter's own mistake: its line, not milterkit's traceback
        from .startup import describe

        print(f"milterkit run: {describe(exc)}", file=sys.stderr)
        log.debug("the filter failed to load", exc_info=exc)
        return 2
    problem = run_metrics.apply(args, client)  # after setup: the metrics time its handlers
    if problem is not None:
        print(f"milterkit run: {problem}", file=sys.stderr)
        return 2
    try:
        client.run(workers=args.workers, loop=args.loop)
    except (ListenError, SpecError, RuntimeError) as exc:  # SpecError: a host that won't resolve
        # ListenError's text without OSError's "[Errno 2]" prefix: it names spec and cause.
        log.error("%s", exc.strerror if isinstance(exc, OSError) and exc.strerror else exc)
        return 1
    return 0
