"""Run a milter inside your own asyncio program instead of under ``milterkit run``.

What it shows, in the order the program does it:

- where to listen: the first argument, else ``$MILTER_SPEC``, else ``DEFAULT_SPEC``
  (``inet:10025@127.0.0.1``), parsed with ``parse_spec`` so that a typo is reported, with where
  it came from, before anything starts (``SpecError``, exit status 2);
- the sockets systemd passed by socket activation (``systemd_listeners()``) are used when there
  are any; otherwise the ``Client`` binds the spec. A socket that cannot be opened is a
  ``ListenError`` (exit status 1);
- which spec that is (a ``ConnectionSpec``) and which sockets it listens on (each
  ``Listener``'s name: with port 0 it tells the port the kernel picked);
- a logger on every client-level signal (``CLIENT_SIGNAL_NAMES``);
- the filter: mail from a domain of ``BLOCKED_DOMAINS`` is refused at MAIL FROM, and every
  message that gets through is stamped ``X-Checked-By: embedded_server pid=<pid>``;
- the program's own state (:class:`Stats`), shared with the handlers and printed at the end;
- the program's own SIGTERM/SIGINT handling: stop accepting, let the sessions in flight finish,
  print the summary, exit 0. A second signal closes the sessions still open at once.

Run it::

    python examples/embedded_server.py unix:/tmp/embedded.sock
    MILTER_SPEC=inet:0@127.0.0.1 python examples/embedded_server.py

and send it a message with ``milterkit test-server -s unix:/tmp/embedded.sock``.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from milterkit import ClientContext, MessageResult, Status
from milterkit.server import (
    CLIENT_SIGNAL_NAMES,
    DEFAULT_SPEC,
    Client,
    ConnectionSpec,
    Listener,
    ListenError,
    SpecError,
    parse_spec,
    systemd_listeners,
)

#: The environment variable read when no spec is given on the command line.
SPEC_VARIABLE = "MILTER_SPEC"
#: Sender domains refused at MAIL FROM.
BLOCKED_DOMAINS = frozenset({"spam.example", "junk.example"})
HEADER_NAME = "X-Checked-By"
#: Seconds SIGTERM lets the sessions in flight finish.
SHUTDOWN_TIMEOUT = 10.0

log = logging.getLogger("embedded_server")


@dataclass
class Stats:
    """What the program counts while it serves; the handlers update it."""

    passed: int = 0
    rejected_senders: int = 0


def choose_spec(argument: str | None, environ: Mapping[str, str]) -> tuple[str, str]:
    """The spec text to listen on and where it came from (for error messages)."""
    if argument is not None:
        return argument, "the command line"
    if SPEC_VARIABLE in environ:
        return environ[SPEC_VARIABLE], f"${SPEC_VARIABLE}"
    return DEFAULT_SPEC, "the default"


def describe(spec: ConnectionSpec) -> str:
    """A ConnectionSpec in words."""
    if spec.family == "unix":
        return f"unix socket {spec.path}"
    where = spec.host if spec.host is not None else "every address"
    port = "a free port" if spec.port == 0 else f"port {spec.port}"
    return f"{'IPv4' if spec.family == 'inet' else 'IPv6'} {port} on {where}"


def log_client_signal(name: str) -> Callable[..., None]:
    """A handler logging client signal ``name``; client signals are ``handler(client, *args)``."""

    def handler(client: Client, *args: object) -> None:
        # connection-established and connection-finished pass the connection's context: its tag
        # is the ``[n]`` milterkit's own log lines about that connection start with.
        shown = [f"[{arg.tag}]" if isinstance(arg, ClientContext) else repr(arg) for arg in args]
        log.info("%s %s", name, " ".join(shown))

    return handler


def install_filter(client: Client, stats: Stats) -> None:
    """Connect the filter's handlers to ``client``; they count into ``stats``."""

    def check_sender(context: ClientContext, address: str) -> Status | None:
        domain = address.strip("<>").rpartition("@")[2].lower()
        if domain in BLOCKED_DOMAINS:
            stats.rejected_senders += 1
            return context.reject("550", "5.7.1", f"Mail from {domain} is refused here")
        return None

    def stamp(context: ClientContext, chunk: bytes) -> None:
        context.add_header(HEADER_NAME, f"embedded_server pid={os.getpid()}")

    def count(context: ClientContext, result: MessageResult) -> None:
        stats.passed += 1

    client.connect("envelope-from", check_sender)
    client.connect("end-of-message", stamp)
    client.connect("message-processed", count)


def open_listeners(client: Client) -> list[Listener]:
    """Give ``client`` its sockets: systemd's if it passed any, else the spec's.

    ``Client.bind()`` would look for systemd's sockets by itself; asking first lets the program
    know, and say, where its sockets come from. Either may raise ListenError.
    """
    passed = systemd_listeners()
    if passed:
        print(f"using {len(passed)} socket(s) passed by systemd; ignoring {client.spec}",
              flush=True)
        client.listeners = passed
        return passed
    return client.bind()


async def serve(client: Client) -> None:
    """Serve until SIGTERM or SIGINT, then drain the sessions in flight."""
    loop = asyncio.get_running_loop()
    stopping = asyncio.Event()

    def on_signal(signum: signal.Signals) -> None:
        if stopping.is_set():
            print(f"{signum.name} again: closing the open sessions now", flush=True)
            client.request_shutdown()  # a second shutdown() closes the sessions at once
        stopping.set()

    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, on_signal, signum)
    await client.start()
    await stopping.wait()
    print(f"stopping: letting {len(client.connections)} session(s) finish", flush=True)
    await client.shutdown()


def main(argv: Sequence[str] | None = None) -> int:
    """Parse the spec, open the sockets, serve; the exit status."""
    parser = argparse.ArgumentParser(
        prog="embedded_server", description="A milter embedded in an asyncio program.",
        epilog=f"Without SPEC, ${SPEC_VARIABLE} is used, else {DEFAULT_SPEC}.",
    )
    parser.add_argument("spec", nargs="?", help="where to listen (unix:/path, inet:PORT@HOST...)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(name)s: %(message)s", stream=sys.stderr)

    text, origin = choose_spec(args.spec, os.environ)
    try:
        spec = parse_spec(text)
    except SpecError as exc:
        print(f"embedded_server: bad connection spec from {origin}: {exc}", file=sys.stderr)
        return 2
    print(f"spec {spec} from {origin}: {describe(spec)}", flush=True)

    stats = Stats()
    # socket_activation=False: open_listeners() has already taken systemd's sockets, if any.
    client = Client(spec, shutdown_timeout=SHUTDOWN_TIMEOUT, socket_activation=False)
    for name in CLIENT_SIGNAL_NAMES:
        client.connect(name, log_client_signal(name))
    install_filter(client, stats)
    try:
        listeners = open_listeners(client)
    except ListenError as exc:
        # exc.strerror is the message alone, without the "[Errno n]" prefix of str(exc).
        print(f"embedded_server: cannot listen: {exc.strerror or exc}", file=sys.stderr)
        return 1
    for listener in listeners:
        print(f"listening on {listener.name}", flush=True)

    asyncio.run(serve(client))
    print(f"stopped: {client.served} connection(s), {stats.passed} message(s) passed, "
          f"{stats.rejected_senders} sender(s) refused", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
