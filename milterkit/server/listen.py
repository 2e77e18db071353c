"""Listening sockets: bind a :class:`~milterkit.server.spec.ConnectionSpec`, or take an
inherited one: the ones systemd passed (``LISTEN_FDS``), or ``fd:N``.

Unix sockets get their group and mode *between* ``bind()`` and ``listen()``: no peer can connect
before ``listen()``, so there is no window in which the socket is open with the wrong rights.
"""

from __future__ import annotations

import contextlib
import errno
import grp
import logging
import os
import socket
import stat
from collections.abc import MutableMapping
from dataclasses import dataclass

from .spec import ConnectionSpec

log = logging.getLogger("milterkit.server")

#: The first file descriptor systemd passes (SD_LISTEN_FDS_START).
SD_LISTEN_FDS_START = 3


class ListenError(OSError):
    """A listening socket could not be set up; the message names the spec and the cause."""


@dataclass(slots=True)
class Listener:
    """A bound, listening socket and what is needed to clean up after it.

    ``inode`` is the unix socket file we created (device, inode), so that :meth:`close` removes
    that file only, never one a newer server put at the same path.
    """

    sock: socket.socket
    name: str
    path: str | None = None
    inode: tuple[int, int] | None = None

    def close(self, *, unlink: bool = True) -> None:
        """Close the socket and, if we created a unix socket file, remove it."""
        self.sock.close()
        if unlink and self.path is not None and self.inode is not None:
            try:
                st = os.lstat(self.path)  # a symlink is never the file we created
            except OSError:
                return
            if (st.st_dev, st.st_ino) == self.inode and stat.S_ISSOCK(st.st_mode):
                with contextlib.suppress(OSError):
                    os.unlink(self.path)


def resolve_group(group: str | int) -> int:
    """A group name or number as a gid; raise :class:`ListenError` for an unknown name."""
    if isinstance(group, int):
        return group
    if group.isdigit():
        return int(group)
    try:
        return grp.getgrnam(group).gr_gid
    except KeyError:
        raise ListenError(errno.EINVAL, f"unknown group {group!r}") from None


def bind(
    spec: ConnectionSpec,
    *,
    backlog: int = socket.SOMAXCONN,
    socket_mode: int | None = 0o660,
    socket_group: str | int | None = None,
) -> Listener:
    """Create, bind and ``listen()`` on ``spec``; returns a non-blocking :class:`Listener`.

    For ``fd:N`` the inherited descriptor N is taken as it is (it must be a listening stream
    socket); its options, mode and file are whoever made it's, and are left alone.
    """
    if spec.family == "fd":
        assert spec.fd is not None
        sock = adopt_listening_socket(spec.fd, f"{spec}: fd {spec.fd}")
        return Listener(sock, f"{spec} ({_describe(sock)})")
    if spec.family == "unix":
        return _bind_unix(spec, backlog, socket_mode, socket_group)
    address = spec.resolve()
    sock = socket.socket(spec.socket_family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if spec.family == "inet6":
            # inet6:PORT must not also take the IPv4 port: inet:PORT may be listened on beside it.
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        sock.bind(address)
        sock.listen(backlog)
    except OSError as exc:
        sock.close()
        raise ListenError(exc.errno, f"cannot listen on {spec}: {exc.strerror}") from exc
    sock.setblocking(False)
    return Listener(sock, _name(sock, spec))


def _name(sock: socket.socket, spec: ConnectionSpec) -> str:
    host, port = sock.getsockname()[:2]
    return f"{spec.family}:{port}@[{host}]"


def _why(path: str, exc: OSError) -> str:
    """A bind error of a unix socket, naming the directory when it is the problem."""
    directory = os.path.dirname(os.path.abspath(path))
    if exc.errno == errno.ENOENT and not os.path.isdir(directory):
        return (f"the directory {directory} does not exist (create it, writable by the user "
                "the milter runs as, e.g. with systemd's RuntimeDirectory=)")
    if exc.errno == errno.EACCES:
        return (f"permission denied to create a socket in {directory} (run as a user who may "
                "write there, or choose another directory)")
    return str(exc.strerror)


def _bind_unix(
    spec: ConnectionSpec, backlog: int, mode: int | None, group: str | int | None
) -> Listener:
    path = spec.path
    assert path is not None
    remove_stale_socket(path)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.bind(path)
    except OSError as exc:
        sock.close()
        raise ListenError(exc.errno, f"cannot bind {spec}: {_why(path, exc)}") from exc
    st = os.stat(path)
    listener = Listener(sock, str(spec), path, (st.st_dev, st.st_ino))
    try:
        if group is not None:
            os.chown(path, -1, resolve_group(group))
        if mode is not None:
            os.chmod(path, mode)
        sock.listen(backlog)
    except OSError as exc:
        listener.close()
        raise ListenError(exc.errno, f"cannot set up {spec}: {exc.strerror or exc}") from exc
    sock.setblocking(False)
    return listener


def remove_stale_socket(path: str) -> None:
    """Remove a unix socket left by a dead server at ``path``.

    Only a socket is removed, and only if connecting to it is refused: any other file, or a
    socket a live (even busy) server listens on, raises :class:`ListenError` instead.
    """
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return
    if not stat.S_ISSOCK(st.st_mode):
        raise ListenError(
            errno.EEXIST, f"{path} exists and is not a socket; refusing to remove it"
        )
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        probe.settimeout(1.0)
        probe.connect(path)
    except (ConnectionRefusedError, FileNotFoundError):
        pass  # nobody listens: it is stale
    except OSError as exc:
        # EAGAIN is a live server with a full backlog, EACCES one we may not talk to: only a
        # refused connection proves the socket dead.
        raise ListenError(
            exc.errno or errno.EADDRINUSE,
            f"{path}: cannot tell whether a server listens on it ({exc}); it may be in use",
        ) from exc
    else:
        raise ListenError(errno.EADDRINUSE, f"{path}: another server is listening on it")
    finally:
        probe.close()
    log.info("removing stale socket %s", path)
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)


def systemd_listeners(
    environ: MutableMapping[str, str] | None = None, *, unset: bool = True
) -> list[Listener]:
    """The sockets systemd passed by socket activation, or ``[]``.

    As ``sd_listen_fds(3)``: only when ``LISTEN_PID`` is this process and ``LISTEN_FDS`` is a
    count; the fds start at 3. The variables are removed (``unset``) whenever any of them is set,
    whether or not they were meant for us, so that a child process does not take the sockets for
    its own. Each fd must be a listening stream socket, else :class:`ListenError` says which fd
    and what it is. systemd owns the socket files: we never remove them.
    """
    env = os.environ if environ is None else environ
    pid_text = env.get("LISTEN_PID")
    count_text = env.get("LISTEN_FDS")
    if unset:
        for name in ("LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES"):
            env.pop(name, None)
    if pid_text is None or count_text is None:
        return []
    if not pid_text.isdigit() or int(pid_text) != os.getpid():
        return []
    if not count_text.isdigit():
        raise ListenError(errno.EINVAL, f"LISTEN_FDS is not a number: {count_text!r}")
    listeners = []
    try:
        for fd in range(SD_LISTEN_FDS_START, SD_LISTEN_FDS_START + int(count_text)):
            sock = adopt_listening_socket(fd, f"fd {fd} passed by systemd")
            listeners.append(Listener(sock, f"fd:{fd} ({_describe(sock)})"))
    except ListenError:
        for listener in listeners:
            listener.sock.detach()  # systemd's descriptors: not ours to close
        raise
    return listeners


def adopt_listening_socket(fd: int, what: str) -> socket.socket:
    """The inherited descriptor ``fd`` as a non-blocking, non-inheritable socket object.

    It must be a stream socket on which ``listen()`` was called; otherwise :class:`ListenError`
    names ``what`` (e.g. ``"fd 3 passed by systemd"``) and what the descriptor is instead, and
    the descriptor is left open.
    """
    try:
        mode = os.fstat(fd).st_mode
    except OSError as exc:
        raise ListenError(exc.errno, f"{what} is not an open file descriptor") from None
    if not stat.S_ISSOCK(mode):
        raise ListenError(errno.ENOTSOCK, f"{what} is not a socket but {_file_kind(mode)}")
    sock = socket.socket(fileno=fd)
    problem = None
    if sock.type != socket.SOCK_STREAM:
        problem = "is not a stream socket"
    elif not _is_listening(sock):
        problem = "is a socket nobody called listen() on (a connection, not a listener)"
    if problem is not None:
        sock.detach()
        raise ListenError(errno.EINVAL, f"{what} {problem}")
    os.set_inheritable(fd, False)
    sock.setblocking(False)
    return sock


def _is_listening(sock: socket.socket) -> bool:
    option = getattr(socket, "SO_ACCEPTCONN", None)
    if option is None:
        return True  # cannot tell on this system: accept() will say
    try:
        return bool(sock.getsockopt(socket.SOL_SOCKET, option))
    except OSError:
        return True


def _file_kind(mode: int) -> str:
    for test, kind in (
        (stat.S_ISFIFO, "a pipe"), (stat.S_ISREG, "a regular file"), (stat.S_ISDIR, "a directory"),
        (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"),
    ):
        if test(mode):
            return kind
    return f"a file of mode {mode:o}"


def _describe(sock: socket.socket) -> str:
    name = sock.getsockname()
    if sock.family == socket.AF_UNIX:
        return f"unix:{name}"
    family = "inet" if sock.family == socket.AF_INET else "inet6"
    return f"{family}:{name[1]}@[{name[0]}]"
