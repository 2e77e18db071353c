"""Listening sockets: unix socket mode, group, stale files, removal on close; TCP and IPv6."""

from __future__ import annotations

import grp
import os
import socket
import stat

import pytest
from serverlib import run, serving, session, short_tmpdir, socket_mode

from milterkit.server import Client, ListenError
from milterkit.server.listen import bind, remove_stale_socket
from milterkit.server.spec import parse_spec


def _existing_group() -> grp.struct_group:
    for name in ("mail", "daemon", "nogroup", "users"):
        try:
            return grp.getgrnam(name)
        except KeyError:
            continue
    pytest.skip("no non-root group to test with")


def test_unix_socket_default_mode_and_removed_on_close() -> None:
    with short_tmpdir() as tmp:
        path = str(tmp / "m.sock")

        async def scenario() -> None:
            async with serving(f"unix:{path}") as client:
                assert stat.S_ISSOCK(os.stat(path).st_mode)
                assert socket_mode(path) == 0o660
                assert client.address == path
                outcomes = await session(f"unix:{path}")
                assert outcomes[0].verdict is not None
            assert not os.path.exists(path)

        run(scenario())


def test_unix_socket_mode_and_group() -> None:
    group = _existing_group()
    with short_tmpdir() as tmp:
        path = str(tmp / "m.sock")
        listener = bind(parse_spec(path), socket_mode=0o600, socket_group=group.gr_name)
        try:
            st = os.stat(path)
            assert st.st_mode & 0o7777 == 0o600
            assert st.st_gid == group.gr_gid
        finally:
            listener.close()
        assert not os.path.exists(path)
        listener = bind(parse_spec(path), socket_mode=0o666, socket_group=str(group.gr_gid))
        try:
            assert socket_mode(path) == 0o666
            assert os.stat(path).st_gid == group.gr_gid
        finally:
            listener.close()


def test_unknown_group_is_an_error_and_leaves_no_socket() -> None:
    with short_tmpdir() as tmp:
        path = str(tmp / "m.sock")
        with pytest.raises(ListenError, match="unknown group 'no-such-group-mk'"):
            bind(parse_spec(path), socket_group="no-such-group-mk")
        assert not os.path.exists(path)


def test_stale_socket_is_replaced() -> None:
    with short_tmpdir() as tmp:
        path = str(tmp / "m.sock")
        dead = socket.socket(socket.AF_UNIX)
        dead.bind(path)
        dead.close()  # the file stays, nobody listens: a crashed server's leftover
        assert stat.S_ISSOCK(os.lstat(path).st_mode)

        async def scenario() -> None:
            async with serving(path):
                await session(path)

        run(scenario())
        assert not os.path.exists(path)


def test_regular_file_is_never_removed() -> None:
    with short_tmpdir() as tmp:
        path = tmp / "important.txt"
        path.write_text("keep me")
        with pytest.raises(ListenError, match="not a socket; refusing to remove it"):
            bind(parse_spec(f"unix:{path}"))
        assert path.read_text() == "keep me"
        link = tmp / "link.sock"
        link.symlink_to(path)
        with pytest.raises(ListenError, match="not a socket"):
            remove_stale_socket(str(link))
        assert link.is_symlink() and path.read_text() == "keep me"


def test_live_socket_is_not_stolen() -> None:
    with short_tmpdir() as tmp:
        path = str(tmp / "m.sock")
        first = bind(parse_spec(path))
        try:
            with pytest.raises(ListenError, match="another server is listening"):
                bind(parse_spec(path))
            assert os.path.exists(path)
        finally:
            first.close()


def test_close_leaves_a_newer_socket_alone() -> None:
    with short_tmpdir() as tmp:
        path = str(tmp / "m.sock")
        old = bind(parse_spec(path))
        os.unlink(path)  # an admin removed it and a new server took the path
        new = bind(parse_spec(path))
        old.close()
        assert os.path.exists(path)
        new.close()
        assert not os.path.exists(path)


def test_tcp_ipv4_and_ipv6() -> None:
    async def scenario() -> None:
        async with serving("inet:0@[127.0.0.1]") as client:
            host, port = client.address
            assert host == "127.0.0.1" and port > 0
            assert client.address_spec == f"inet:{port}@[127.0.0.1]"
            await session(client.address_spec)
        if not socket.has_ipv6:
            return
        try:
            async with serving("inet6:0@[::1]") as client:
                assert client.address[0] == "::1"
                await session(client.address_spec)
        except ListenError as exc:  # pragma: no cover - a host without ::1
            pytest.skip(f"no IPv6 loopback: {exc}")

    run(scenario())


def test_port_in_use_is_a_clear_error() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(ListenError, match=f"cannot listen on inet:{port}@\\[127.0.0.1\\]"):
            Client(f"inet:{port}@127.0.0.1", socket_activation=False).bind()


def test_backlog_is_passed_to_listen() -> None:
    # With a backlog of 1 and nobody accepting, the kernel queues only a couple of connects.
    listener = bind(parse_spec("inet:0@127.0.0.1"), backlog=1)
    port = listener.sock.getsockname()[1]
    clients = []
    refused = 0
    try:
        for _ in range(8):
            s = socket.socket()
            s.setblocking(False)
            clients.append(s)
            try:
                s.connect(("127.0.0.1", port))
            except BlockingIOError:
                refused += 1  # not completed: the queue is full (SYNs are dropped)
    finally:
        for s in clients:
            s.close()
        listener.close()
    assert refused >= 4


def test_busy_live_socket_is_not_taken_for_stale() -> None:
    # A live server whose backlog is full answers a probe with EAGAIN, not ECONNREFUSED: its
    # socket must stay, or a second instance would steal the path from a server under load.
    with short_tmpdir() as tmp:
        path = str(tmp / "m.sock")
        busy = socket.socket(socket.AF_UNIX)
        busy.bind(path)
        busy.listen(0)
        waiting = []
        try:
            for _ in range(8):  # fill the backlog; nobody accepts
                client = socket.socket(socket.AF_UNIX)
                client.setblocking(False)
                waiting.append(client)
                try:
                    client.connect(path)
                except BlockingIOError:
                    break
            else:
                pytest.skip("the unix backlog never filled up")
            with pytest.raises(ListenError, match="may be in use"):
                remove_stale_socket(path)
            assert stat.S_ISSOCK(os.lstat(path).st_mode)
        finally:
            for client in waiting:
                client.close()
            busy.close()


def test_close_never_removes_a_symlink_to_our_socket() -> None:
    with short_tmpdir() as tmp:
        path = str(tmp / "m.sock")
        listener = bind(parse_spec(path))
        os.rename(path, tmp / "moved.sock")
        os.symlink(tmp / "moved.sock", path)  # not our file, though it leads to our socket
        listener.close()
        assert os.path.islink(path)
