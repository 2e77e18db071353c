"""Helpers of the manager tests: OpenDKIM with a key made here, the documented example
configuration rewritten for a test's ports and paths, DKIM verification with dkimpy."""

from __future__ import annotations

import asyncio
import contextlib
import re
import shutil
import subprocess
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any

import pytest
from milterproc import EXAMPLES
from stack import Stack

from milterkit import Client
from milterkit.compose import FilterSpec, unit_from_object
from milterkit.manager import ChildSpec, Manager
from milterkit.testing import Message, SessionResult, run_session_async

HERE = Path(__file__).resolve().parents[1]
FILTERS = HERE / "filters"
EXAMPLE_DIR = EXAMPLES / "manager"

MESSAGE = (
    b"From: Alice <alice@example.net>\r\n"
    b"To: Bob <bob@example.org>\r\n"
    b"Subject: through the manager\r\n"
    b"Message-ID: <manager-test@example.net>\r\n"
    b"\r\n"
    b"Hello from behind the milter manager.\r\n"
)


def need_opendkim() -> None:
    """Fail (not skip) when OpenDKIM is missing: .ci/run installs it."""
    for program in ("opendkim", "opendkim-genkey"):
        if shutil.which(program) is None:
            pytest.fail(f"{program} is not installed: apt-get install -y opendkim "
                        "opendkim-tools (.ci/run does)")


def make_key(directory: Path, selector: str = "test", domain: str = "example.net") -> bytes:
    """A fresh key made by opendkim-genkey; returns the DNS record's text."""
    subprocess.run(["opendkim-genkey", "-b", "2048", "-d", domain, "-s", selector, "-D",
                    str(directory)], check=True, timeout=60)
    text = (directory / f"{selector}.txt").read_text()
    parts = re.findall(r'"([^"]*)"', text)
    return "".join(parts).encode()


def opendkim_conf(directory: Path, port: int) -> Path:
    """examples/manager/opendkim.conf with this test's key and port."""
    text = (EXAMPLE_DIR / "opendkim.conf").read_text()
    text = text.replace("/etc/dkimkeys/test.private", str(directory / "test.private"))
    text = text.replace("inet:8891@127.0.0.1", f"inet:{port}@127.0.0.1")
    path = directory / "opendkim.conf"
    path.write_text(text)
    return path


def example_config(directory: Path, port: int, conf: Path, extra: str = "") -> Path:
    """examples/manager/manager.toml with this test's OpenDKIM port and configuration, plus
    ``extra`` TOML (more [[milter]] tables), as a file in ``directory``."""
    text = (EXAMPLE_DIR / "manager.toml").read_text()
    text = text.replace("inet:8891@127.0.0.1", f"inet:{port}@127.0.0.1")
    text = text.replace("/etc/opendkim/opendkim.conf", str(conf))
    text = text.replace('use = "../add_header.py"', f'use = "{EXAMPLES / "add_header.py"}"')
    path = directory / "manager.toml"
    path.write_text(text + extra)
    return path


def verify(delivered: bytes, record: bytes) -> bool:
    """Whether ``delivered`` carries a DKIM signature that verifies with ``record``."""
    import dkim

    def dns(name: bytes, timeout: int = 5) -> bytes | None:
        return record if name == b"test._domainkey.example.net." else None

    message = delivered.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")
    return bool(dkim.verify(message, dnsfunc=dns))


def delivered(stack: Stack, queue_id: str | None, timeout: float = 15.0) -> bytes:
    """The delivered message with ``queue_id``."""
    assert queue_id is not None, stack.report()
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for delivery in stack.pf.deliveries():
            if delivery.queue_id == queue_id:
                return delivery.data
        time.sleep(0.05)
    raise AssertionError(f"{queue_id} not delivered\n{stack.report()}")


def header_block(data: bytes) -> bytes:
    return data.replace(b"\r\n", b"\n").partition(b"\n\n")[0]


def wait_log(stack: Stack, text: str, timeout: float = 10.0) -> str:
    """The manager's log once it contains ``text``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        log = stack.milter.log()
        if text in log:
            return log
        time.sleep(0.05)
    raise AssertionError(f"{text!r} not in the manager's log\n{stack.report()}")


# ---------------------------------------------------------------------- in-process manager

@contextlib.asynccontextmanager
async def serving(manager: Any, socket_path: Path) -> AsyncIterator[str]:
    """``manager`` served in this process by a real Client on a unix socket (set up, so an
    auto-started child is started, before the body runs); yields the socket's spec."""
    spec = f"unix:{socket_path}"
    client = Client(spec, shutdown_timeout=2.0)
    manager.setup(client)
    async with client:
        yield spec


async def managed_session(
    manager: Any, socket_path: Path, messages: Sequence[Message], **options: Any,
) -> SessionResult:
    """One MTA session (milterkit's ServerContext) against ``manager`` :func:`serving`."""
    async with serving(manager, socket_path) as spec:
        return await run_session_async(spec, list(messages), **options)


def run_managed(manager: Any, socket_path: Path, messages: Sequence[Message] = (),
                **options: Any) -> SessionResult:
    """:func:`managed_session` on a fresh event loop (one message by default)."""
    return asyncio.run(managed_session(manager, socket_path, list(messages) or [
        Message.build(sender="alice@example.net", recipients=["bob@example.org"],
                      headers=[("Subject", "hello")], body=b"Hello.\r\n")], **options))


def filter_spec(name: str, setup: Callable[[Any], object], **options: Any) -> FilterSpec:
    """An in-process filter of a setup function."""
    return FilterSpec(unit_from_object(name, setup, "test"), **options)


@contextlib.asynccontextmanager
async def child_server(handler: Callable[[asyncio.StreamReader, asyncio.StreamWriter],
                                         Awaitable[None]]) -> AsyncIterator[str]:
    """A TCP server on a free loopback port (a hand-made child) for the body; yields its spec."""
    server = await asyncio.start_server(handler, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    async with server:
        yield f"inet:{port}@127.0.0.1"


def run_with_child(handler: Callable[[asyncio.StreamReader, asyncio.StreamWriter],
                                     Awaitable[None]],
                   name: str, socket_path: Path, **options: Any) -> SessionResult:
    """One session (a message to bob@example.org) against a manager whose one member is the
    hand-made child ``name`` that ``handler`` serves, with :class:`ChildSpec` ``options``."""

    async def main() -> SessionResult:
        async with child_server(handler) as spec:
            manager = Manager([ChildSpec(name, spec, **options)])
            return await managed_session(manager, socket_path, [to("bob@example.org")])

    return asyncio.run(main())


def stamp(client: Any) -> None:
    """An in-process filter (a setup function) that adds ``X-Stamp: python`` at
    end-of-message: what tells its change apart from a child's."""

    def eom(context: Any, chunk: bytes) -> None:
        context.add_header("X-Stamp", "python")

    client.connect("end-of-message", eom)


def packet(code: bytes, payload: bytes = b"") -> bytes:
    """One milter packet."""
    return len(code + payload).to_bytes(4, "big") + code + payload


def scripted_child(answers: dict[bytes, list[bytes]], protocol: int = 0,
                   actions: int = 0x1FF, received: list[bytes] | None = None,
                   hang_up: bytes = b"",
                   ) -> Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]:
    """A hand-made child: negotiates ``actions``/``protocol`` and answers each command byte with
    the packets ``answers`` lists for it (``c`` for any other command that wants an answer);
    every command byte it gets is appended to ``received``, and ``EOF`` at the end. At a
    command byte in ``hang_up`` it closes the connection without a word (a child that dies)."""

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while True:
            try:
                size = int.from_bytes(await reader.readexactly(4), "big")
                code = (await reader.readexactly(size))[:1]
            except (asyncio.IncompleteReadError, ConnectionError):
                if received is not None:
                    received.append(b"EOF")
                break
            if received is not None:
                received.append(code)
            if code and code in hang_up:
                break
            if code == b"O":
                writer.write(packet(b"O", (6).to_bytes(4, "big") + actions.to_bytes(4, "big")
                                    + protocol.to_bytes(4, "big")))
            elif code in answers:
                writer.write(b"".join(answers[code]))
            elif code in b"CHMRTLNBEU":
                writer.write(packet(b"c"))
            await writer.drain()
        writer.close()

    return serve


def headers(result: object) -> list[tuple[str, str]]:
    """The headers of the one message of ``result`` as the milters left them."""
    (outcome,) = result.messages  # type: ignore[attr-defined]
    return list(outcome.message.headers)


def to(recipient: str, subject: str = "hello") -> Message:
    """A small message from alice@example.net to ``recipient``."""
    return Message.build(sender="alice@example.net", recipients=[recipient],
                         headers=[("Subject", subject)], body=b"Hello.\r\n")
