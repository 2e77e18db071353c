"""``milterkit compat FLAVOUR [OPTIONS] COMMAND [ARG...]``: run an application written for
another milter library, unmodified, on milterkit's runtime."""

from __future__ import annotations

import argparse
import importlib
import logging
import sys

HELP = "Run an application written for another milter library (pymilter, ...) unmodified."

#: Flavour name -> module whose ``SHADOWED`` maps the application's import names to milterkit's.
FLAVOURS: dict[str, str] = {
    "pymilter": "milterkit.compat.pymilter",
    "purepythonmilter": "milterkit.compat.purepythonmilter",
}


def _add_options(parser: argparse.ArgumentParser) -> None:
    from ..server.loop import LOOP_KINDS
    from .run import _LOG_LEVELS, _positive_int, _seconds

    parser.add_argument("-m", dest="module", metavar="MODULE",
                        help="run library module MODULE as a script (as python -m does)")
    parser.add_argument("-w", "--workers", type=_positive_int, default=1, metavar="N",
                        help="pre-forked worker processes sharing the socket (default 1)")
    parser.add_argument("-l", "--listen", metavar="SPEC",
                        help="listen here instead of where the application asks")
    parser.add_argument("--timeout", type=_seconds, metavar="SECONDS",
                        help="inactivity timeout per connection (default: the application's)")
    parser.add_argument("--shutdown-timeout", type=_seconds, default=30.0, metavar="SECONDS",
                        help="on SIGTERM/SIGINT, how long sessions in flight may go on")
    parser.add_argument("--max-connections", type=_positive_int, metavar="N",
                        help="concurrent connections per process; more wait in the backlog")
    parser.add_argument("--log-level", choices=_LOG_LEVELS, default="info",
                        help="log level of milterkit's own messages (default info)")
    parser.add_argument("--loop", choices=LOOP_KINDS, default="auto",
                        help="event loop: uvloop if installed (auto), asyncio, or uvloop")


#: Options (after FLAVOUR) that take a value, so the split below skips it too.
_VALUED = frozenset({"-m", "-w", "--workers", "-l", "--listen", "--timeout",
                     "--shutdown-timeout", "--max-connections", "--log-level", "--loop"})


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add ``compat``'s options to its parser."""
    parser.epilog = (
        "COMMAND is an installed console script (dkimpy-milter), a .py file, or -m MODULE; "
        "words after it are the application's. Example: milterkit compat pymilter "
        "--workers 2 dkimpy-milter /etc/dkimpy-milter.conf"
    )
    parser.add_argument("flavour", metavar="FLAVOUR", help=f"one of: {', '.join(FLAVOURS)}")
    _add_options(parser)
    parser.add_argument("command", nargs=argparse.REMAINDER, metavar="COMMAND [ARG...]",
                        help="what to run")


def _split(words: list[str]) -> tuple[list[str], list[str]]:
    """Leading milterkit options and the COMMAND that follows them."""
    index = 0
    while index < len(words) and words[index].startswith("-") and words[index] != "--":
        word = words[index]
        index += 1
        if word in _VALUED:
            index += 1
        if word == "-m":
            break  # -m MODULE is the command; what follows is the module's
    if index < len(words) and words[index] == "--":
        return words[:index], words[index + 1 :]
    return words[:index], words[index:]


def _fail(message: str) -> int:
    print(f"milterkit compat: {message}", file=sys.stderr)
    return 2


def main(args: argparse.Namespace) -> int:
    """Shadow the flavour's modules, set the runtime options, run COMMAND in this process."""
    from ..compat import runtime, shadow
    from .run import LOG_FORMAT

    module_name = FLAVOURS.get(args.flavour)
    if module_name is None:
        return _fail(f"unknown flavour {args.flavour!r} (known: {', '.join(FLAVOURS)})")
    try:
        flavour = importlib.import_module(module_name)
        shadowed = flavour.SHADOWED
    except (ImportError, AttributeError) as exc:
        return _fail(f"flavour {args.flavour!r} is not available ({module_name}: {exc})")
    leading, command = _split(list(args.command))
    if leading:
        again = argparse.ArgumentParser(prog=f"milterkit compat {args.flavour}")
        _add_options(again)
        args = again.parse_args(leading, namespace=args)
    if args.module:
        command = ["-m", args.module, *command]
    if not command:
        return _fail("no COMMAND given (a console script, a .py file or -m MODULE)")
    if args.listen:
        from ..server.spec import SpecError, parse_spec

        try:
            parse_spec(args.listen)
        except SpecError as exc:
            return _fail(str(exc))
    runtime.OPTIONS = runtime.RuntimeOptions(
        workers=args.workers, loop=args.loop, listen=args.listen, timeout=args.timeout,
        max_connections=args.max_connections, shutdown_timeout=args.shutdown_timeout,
    )
    logging.basicConfig(level=args.log_level.upper(), format=LOG_FORMAT, stream=sys.stderr)
    shadow.install(shadowed)
    try:
        result = shadow.run_command(command)
    except shadow.CommandError as exc:
        return _fail(str(exc))
    except SystemExit as exc:
        code = exc.code
        if code is None:
            return 0
        if isinstance(code, int):
            return code
        print(code, file=sys.stderr)
        return 1
    return result if isinstance(result, int) and not isinstance(result, bool) else 0
