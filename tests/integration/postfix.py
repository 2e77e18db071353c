"""A private, throw-away Postfix instance on loopback for integration tests.

``PrivatePostfix`` builds a complete Postfix configuration in a temporary
directory (its own ``config_directory``, ``queue_directory``,
``data_directory`` and log file), starts it with ``postfix -c DIR start`` and
lets a test talk SMTP to it on ``127.0.0.1:<free port>``.  It never reads or
changes ``/etc/postfix/main.cf`` and works whether or not the system Postfix
is running.

Every message, whatever its recipient domain, is delivered by a ``pipe(8)``
transport (``harness``) that runs a tiny shell script as ``nobody``.  The
script stores the message exactly as Postfix hands it over (no flags: no
``From_`` line, no ``Return-Path:``/``Delivered-To:`` added, no escaping) plus
a side file with the envelope.  What a test reads back is therefore the
queued message byte for byte: the client's headers, Postfix's own
``Received:`` header, whatever the milters changed, with LF line endings
(Postfix stores lines without CR and ``pipe`` writes LF).

Requirements: running as root (Postfix's master must start as root), the
Debian/Ubuntu ``postfix`` package (>= 3.4 for ``maillog_file``), the users
``postfix`` and ``nobody`` and the group ``postdrop``.  See
``.ci/install-postfix.sh`` and ``NOTES-postfix.md``.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import dataclasses
import grp
import json
import os
import pwd
import re
import shutil
import signal
import smtplib
import socket
import socketserver
import subprocess
import tempfile
import threading
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import TypedDict

__all__ = [
    "Delivery",
    "FakeDovecotAuth",
    "PostfixError",
    "PrivatePostfix",
    "SendResult",
    "postfix_available",
    "postfix_version",
]

POSTFIX = "/usr/sbin/postfix"
POSTCONF = "/usr/sbin/postconf"
POSTQUEUE = "/usr/sbin/postqueue"
POSTCAT = "/usr/sbin/postcat"
POSTSUPER = "/usr/sbin/postsuper"

#: The Postfix user that runs smtpd/cleanup; milter unix sockets must be
#: reachable by it.
MAIL_OWNER = "postfix"
SETGID_GROUP = "postdrop"
#: pipe(8) refuses to run commands as root or as the mail owner.
DELIVERY_USER = "nobody"

#: Hint that skip messages point to.
INSTALL_HINT = "run .ci/install-postfix.sh (apt-get install -y postfix miltertest)"

_QUEUED_RE = re.compile(rb"queued as ([0-9A-Za-z]+)")


class PostfixError(RuntimeError):
    """Postfix could not be configured, started, queried or stopped."""


class SendResult(TypedDict):
    """What the SMTP server answered during :meth:`PrivatePostfix.send`."""

    ehlo: tuple[int, bytes]
    mail: tuple[int, bytes]
    #: reply to each RCPT TO, in order, including refused ones
    rcpt: dict[str, tuple[int, bytes]]
    #: recipients refused with a 4xx/5xx (like smtplib.sendmail's return value)
    refused: dict[str, tuple[int, bytes]]
    #: reply to the end of DATA ("250 2.0.0 Ok: queued as ...")
    data: tuple[int, bytes]
    #: queue id parsed from the DATA reply, or None
    queue_id: str | None


@dataclasses.dataclass(frozen=True)
class Delivery:
    """One message handed to the ``harness`` pipe transport."""

    queue_id: str
    sender: str
    recipients: tuple[str, ...]
    data: bytes
    path: Path


# ---------------------------------------------------------------------------
# availability


# Postfix commands get a minimal environment: no inherited MAIL_CONFIG (which
# would point at another instance) and C locale for parseable output.
_ENV = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LANG": "C", "LC_ALL": "C"}


def _run(
    argv: Sequence[str], *, timeout: float = 30.0, check: bool = True
) -> subprocess.CompletedProcess[str]:
    """Run a Postfix command; raise PostfixError with its output on failure."""
    proc = subprocess.run(
        list(argv),
        capture_output=True,
        text=True,
        env=_ENV,
        timeout=timeout,
        check=False,
    )
    if check and proc.returncode != 0:
        raise PostfixError(
            f"{' '.join(argv)} exited with {proc.returncode}\n"
            f"stdout:\n{proc.stdout}\nstderr:\n{proc.stderr}"
        )
    return proc


def postfix_version() -> tuple[int, ...] | None:
    """Installed Postfix version (e.g. ``(3, 7, 11)``) or None."""
    if not os.path.exists(POSTCONF):
        return None
    try:
        out = _run([POSTCONF, "-dh", "mail_version"], timeout=10).stdout.strip()
    except (OSError, PostfixError, subprocess.TimeoutExpired):
        return None
    parts = re.findall(r"\d+", out)
    return tuple(int(p) for p in parts[:3]) if parts else None


def postfix_available() -> tuple[bool, str]:
    """Can this process run a :class:`PrivatePostfix`?  Returns (ok, reason)."""
    for binary in (POSTFIX, POSTCONF, POSTQUEUE, POSTCAT, POSTSUPER):
        if not os.access(binary, os.X_OK):
            return False, f"{binary} not found ({INSTALL_HINT})"
    if os.geteuid() != 0:
        return False, "a private Postfix instance needs root (master starts as root)"
    for user in (MAIL_OWNER, DELIVERY_USER):
        try:
            pwd.getpwnam(user)
        except KeyError:
            return False, f"user {user!r} missing ({INSTALL_HINT})"
    try:
        grp.getgrnam(SETGID_GROUP)
    except KeyError:
        return False, f"group {SETGID_GROUP!r} missing ({INSTALL_HINT})"
    version = postfix_version()
    if version is None:
        return False, "cannot determine the Postfix version (postconf -dh mail_version)"
    if version < (3, 4):
        # maillog_file/postlogd (our log capture) appeared in Postfix 3.4
        return False, f"Postfix {version} is too old, need >= 3.4"
    return True, "Postfix " + ".".join(map(str, version))


# ---------------------------------------------------------------------------
# helpers


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that was free a moment ago (bind port 0, then close)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port


def _format_timeout(value: float | str) -> str:
    """Postfix time value: bare numbers are seconds, strings are passed on."""
    if isinstance(value, str):
        return value
    return f"{max(1, round(value))}s"


def _pid_alive(pid: int) -> bool:
    """True if pid runs and is not a zombie.

    The daemonised master is re-parented to PID 1; in containers PID 1 may not
    reap it, so a dead master can linger as a zombie that kill(pid, 0) still
    "finds".
    """
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            stat = fh.read()
    except OSError:
        return False
    # field 3, after the parenthesised command name (which may contain spaces)
    state = stat[stat.rfind(b")") + 2 : stat.rfind(b")") + 3]
    return state not in (b"Z", b"X", b"")


def _pids_with_env(name: str, value: str) -> list[int]:
    """PIDs whose environment contains ``name=value``.

    Postfix passes its config directory to every child in ``MAIL_CONFIG``
    (also to pipe(8) commands, via export_environment), so this finds every
    process of one instance without matching on process names.
    """
    needle = f"{name}={value}".encode()
    found: list[int] = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/environ", "rb") as fh:
                env = fh.read().split(b"\0")
        except OSError:
            continue
        if needle in env and _pid_alive(int(entry)):
            found.append(int(entry))
    return found


# A pipe(8) command: argv = queue_id sender recipient...  Writes the message
# to tmp/ and renames it into new/ (maildir style) so a reader never sees a
# partial file; the envelope file is renamed first so it exists whenever the
# message does.  Run via /bin/sh so a noexec /tmp does not matter.
_DELIVER_SH = """\
#!/bin/sh
set -eu
dir='{mail_dir}'
qid="$1"; shift
name="$(date +%s%N).$qid.$$"
umask 022
cat > "$dir/tmp/$name.eml"
printf '%s\\n' "$qid" "$@" > "$dir/tmp/$name.env"
mv "$dir/tmp/$name.env" "$dir/new/$name.env"
mv "$dir/tmp/$name.eml" "$dir/new/$name.eml"
"""


class FakeDovecotAuth:
    """Just enough of Dovecot's auth protocol (1.x) for smtpd's SASL, PLAIN only.

    Postfix speaks this protocol itself (``smtpd_sasl_type = dovecot``), so a
    real ``AUTH PLAIN`` works -- and the milter gets ``{auth_authen}``,
    ``{auth_type}`` -- without cyrus saslauthd/sasldb or a Dovecot install.
    Handshake: server sends VERSION/MECH/SPID/CUID/COOKIE/DONE, smtpd sends
    VERSION/CPID, then ``AUTH <id> PLAIN service=smtp ... [resp=<b64>]`` is
    answered with ``CONT <id>`` (no initial response), ``OK <id> user=...``
    or ``FAIL <id>``.
    """

    def __init__(self, path: Path, users: Mapping[str, str]) -> None:
        self.path = path
        accounts = dict(users)

        class Handler(socketserver.StreamRequestHandler):
            def handle(self) -> None:
                self.wfile.write(
                    b"VERSION\t1\t2\nMECH\tPLAIN\tplaintext\nSPID\t1\nCUID\t1\n"
                    b"COOKIE\t" + b"0" * 32 + b"\nDONE\n"
                )
                for line in self.rfile:
                    fields = line.rstrip(b"\r\n").split(b"\t")
                    if fields[0] == b"AUTH" and len(fields) >= 3:
                        resp = [f[5:] for f in fields[3:] if f.startswith(b"resp=")]
                        if resp:
                            self._verdict(fields[1], resp[0])
                        else:
                            self.wfile.write(b"CONT\t" + fields[1] + b"\t\n")
                    elif fields[0] == b"CONT" and len(fields) >= 3:
                        self._verdict(fields[1], fields[2])

            def _verdict(self, request_id: bytes, b64: bytes) -> None:
                try:
                    _authzid, user, password = base64.b64decode(b64).split(b"\0")
                    ok = accounts.get(user.decode()) == password.decode()
                except (ValueError, binascii.Error, UnicodeDecodeError):
                    ok, user = False, b""
                if ok:
                    self.wfile.write(b"OK\t" + request_id + b"\tuser=" + user + b"\n")
                else:
                    self.wfile.write(b"FAIL\t" + request_id + b"\treason=bad credentials\n")

        self.server = socketserver.ThreadingUnixStreamServer(str(path), Handler)
        self.server.daemon_threads = True
        # smtpd (user postfix) connects to it
        os.chmod(path, 0o666)
        self._thread = threading.Thread(
            target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self._thread.join(5)
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()


# ---------------------------------------------------------------------------
# the instance


class PrivatePostfix:
    """A private Postfix instance in a temporary directory.

    Use as a context manager (``with PrivatePostfix(...) as pf:``) or call
    :meth:`start`/:meth:`stop`.  Layout under :attr:`root` (mode 0755 so that
    the ``postfix`` and ``nobody`` users can traverse it)::

        etc/       config_directory: main.cf, master.cf, deliver.sh
        spool/     queue_directory (root-owned, subdirs owned by postfix)
        data/      data_directory (postfix, 0700)
        mail/      delivered messages: new/<stamp>.<qid>.<pid>.eml (+ .env)
        sockets/   0755, a place for milter unix sockets (see socket_path())
        maillog    Postfix's log (maillog_file via postlogd)
    """

    def __init__(
        self,
        smtpd_milters: str | None = None,
        *,
        milter_protocol: int = 6,
        milter_default_action: str = "tempfail",
        milter_connect_timeout: float | str = 5,
        milter_command_timeout: float | str = 10,
        milter_content_timeout: float | str = 10,
        extra_main_cf: Mapping[str, str] | None = None,
        smtpd_options: Mapping[str, str] | None = None,
        sasl_users: Mapping[str, str] | None = None,
        myhostname: str = "mx.example.org",
        mydomain: str = "example.org",
        start_timeout: float = 20.0,
        keep: bool | None = None,
    ) -> None:
        """Configure (but do not start) an instance.

        ``smtpd_milters``: Postfix milter spec(s), e.g. ``inet:127.0.0.1:10025``
        or ``unix:/path/sock`` (or ``{ inet:..., default_action=accept }``).
        ``extra_main_cf`` is applied last and overrides anything else (use it
        for ``milter_mail_macros``, ``milter_macro_daemon_name``, SASL ...).
        ``smtpd_options`` become ``-o name=value`` of the SMTP service in
        master.cf.  ``sasl_users`` (name -> password) enables SMTP AUTH PLAIN
        against a :class:`FakeDovecotAuth`.  ``keep`` keeps the directory
        after :meth:`stop` (default: environment variable
        ``MILTERKIT_KEEP_POSTFIX`` set).
        """
        if milter_protocol not in (2, 3, 4, 6):
            raise ValueError(f"unsupported milter_protocol {milter_protocol}")
        self.smtpd_milters = smtpd_milters
        self.milter_protocol = milter_protocol
        self.milter_default_action = milter_default_action
        self.milter_connect_timeout = _format_timeout(milter_connect_timeout)
        self.milter_command_timeout = _format_timeout(milter_command_timeout)
        self.milter_content_timeout = _format_timeout(milter_content_timeout)
        self.extra_main_cf: dict[str, str] = dict(extra_main_cf or {})
        self.smtpd_options: dict[str, str] = dict(smtpd_options or {})
        self.sasl_users: dict[str, str] | None = None if sasl_users is None else dict(sasl_users)
        self._auth: FakeDovecotAuth | None = None
        self.myhostname = myhostname
        self.mydomain = mydomain
        self.start_timeout = start_timeout
        self.keep = bool(os.environ.get("MILTERKIT_KEEP_POSTFIX")) if keep is None else keep
        self.host = "127.0.0.1"
        self.port = 0
        self._started = False
        # Create the directory now so tests can put milter sockets in
        # socket_path() before the instance starts.
        self.root = Path(tempfile.mkdtemp(prefix="milterkit-postfix-"))
        # mkdtemp gives 0700; postfix (smtpd) and nobody (pipe) need to
        # traverse it.
        self.root.chmod(0o755)
        self.config_dir = self.root / "etc"
        self.queue_dir = self.root / "spool"
        self.data_dir = self.root / "data"
        self.mail_dir = self.root / "mail"
        self.socket_dir = self.root / "sockets"
        self.log_file = self.root / "maillog"
        self.socket_dir.mkdir(mode=0o755)

    # -- paths -------------------------------------------------------------

    def socket_path(self, name: str = "milter.sock") -> Path:
        """Path for a milter unix socket that Postfix's smtpd can reach.

        smtpd runs as user ``postfix``: it needs search permission on every
        directory on the way (this one is 0755 under a 0755 root) and write
        permission on the socket itself, so ``chmod(path, 0o666)`` the socket
        after binding it (or chown it to postfix).
        """
        return self.socket_dir / name

    # -- configuration -----------------------------------------------------

    def main_cf(self) -> dict[str, str]:
        """The main.cf parameters this instance is started with."""
        cf: dict[str, str] = {
            "compatibility_level": "3.6",
            "queue_directory": str(self.queue_dir),
            "data_directory": str(self.data_dir),
            "mail_owner": MAIL_OWNER,
            "setgid_group": SETGID_GROUP,
            # a distinct log tag so nothing is confused with the system
            # instance (process names are fixed by Postfix: smtpd, cleanup...)
            "syslog_name": "milterkit-postfix",
            # postlogd writes our log; the file must lie below one of these
            "maillog_file": str(self.log_file),
            "maillog_file_prefixes": str(self.root),
            "myhostname": self.myhostname,
            "mydomain": self.mydomain,
            "myorigin": "$mydomain",
            "mydestination": "$mydomain, localhost",
            "inet_interfaces": self.host,
            "inet_protocols": "ipv4",
            "mynetworks": "127.0.0.0/8",
            "smtpd_relay_restrictions": "permit_mynetworks, reject",
            "smtpd_recipient_restrictions": "permit_mynetworks, reject",
            # accept any local part; there is no local(8) and no aliases db
            "local_recipient_maps": "",
            "alias_maps": "",
            "alias_database": "",
            # every destination goes to the harness pipe; one fixed nexthop so
            # all recipients of a message arrive in a single delivery
            "local_transport": "harness:deliver",
            "default_transport": "harness:deliver",
            "relay_transport": "harness:deliver",
            "harness_destination_recipient_limit": "1000",
            # let tests forge client attributes/SASL login (XCLIENT)
            "smtpd_authorized_xclient_hosts": "127.0.0.0/8",
            "smtpd_authorized_xforward_hosts": "127.0.0.0/8",
            # speed: no penalty sleeps, no inflow throttling, quick retries
            "smtpd_error_sleep_time": "0",
            "smtpd_soft_error_limit": "1000",
            "smtpd_hard_error_limit": "1000",
            "in_flow_delay": "0",
            "queue_run_delay": "1s",
            "minimal_backoff_time": "1s",
            "maximal_backoff_time": "5s",
            "delay_warning_time": "0",
            "biff": "no",
            "smtpd_banner": "$myhostname ESMTP milterkit-test",
            # milters
            "smtpd_milters": self.smtpd_milters or "",
            "non_smtpd_milters": "",
            "milter_protocol": str(self.milter_protocol),
            "milter_default_action": self.milter_default_action,
            "milter_connect_timeout": self.milter_connect_timeout,
            "milter_command_timeout": self.milter_command_timeout,
            "milter_content_timeout": self.milter_content_timeout,
        }
        if self.sasl_users is not None:
            cf.update(
                smtpd_sasl_auth_enable="yes",
                smtpd_sasl_type="dovecot",
                smtpd_sasl_path=str(self.socket_path("dovecot-auth")),
            )
        cf.update(self.extra_main_cf)
        return cf

    def master_cf(self) -> str:
        """The master.cf text: nothing chrooted, only the services we need."""
        smtpd_opts = "".join(f"\n  -o {name}={value}" for name, value in self.smtpd_options.items())
        deliver = self.config_dir / "deliver.sh"
        # service type  private unpriv chroot wakeup maxproc command
        return f"""\
{self.host}:{self.port} inet n - n - - smtpd{smtpd_opts}
pickup    unix  n       -       n       60      1       pickup
cleanup   unix  n       -       n       -       0       cleanup
qmgr      unix  n       -       n       300     1       qmgr
rewrite   unix  -       -       n       -       -       trivial-rewrite
bounce    unix  -       -       n       -       0       bounce
defer     unix  -       -       n       -       0       bounce
trace     unix  -       -       n       -       0       bounce
verify    unix  -       -       n       -       1       verify
flush     unix  n       -       n       1000?   0       flush
proxymap  unix  -       -       n       -       -       proxymap
proxywrite unix -       -       n       -       1       proxymap
showq     unix  n       -       n       -       -       showq
error     unix  -       -       n       -       -       error
retry     unix  -       -       n       -       -       error
discard   unix  -       -       n       -       -       discard
anvil     unix  -       -       n       -       1       anvil
scache    unix  -       -       n       -       1       scache
postlog   unix-dgram n  -       n       -       1       postlogd
harness   unix  -       n       n       -       -       pipe
  user={DELIVERY_USER} argv=/bin/sh {deliver} ${{queue_id}} ${{sender}} ${{recipient}}
"""

    def _write_config(self) -> None:
        self.config_dir.mkdir(mode=0o755, exist_ok=True)
        lines: list[str] = []
        for name, value in self.main_cf().items():
            if "\n" in name or "\n" in value:
                raise ValueError(f"newline in main.cf parameter {name!r}")
            lines.append(f"{name} = {value}")
        (self.config_dir / "main.cf").write_text("\n".join(lines) + "\n")
        (self.config_dir / "master.cf").write_text(self.master_cf())
        (self.config_dir / "deliver.sh").write_text(_DELIVER_SH.format(mail_dir=self.mail_dir))
        # Postfix (dict_load_file) re-reads a main.cf that was modified less
        # than ~2 s ago until it "settles", sleeping 300 ms per round: that
        # made every start take 2.4 s.  Backdate the files instead.
        past = time.time() - 60
        for name in ("main.cf", "master.cf"):
            os.utime(self.config_dir / name, (past, past))
        # The queue directory must be root-owned; post-install
        # create-missing (run by "postfix start") creates its subdirectories
        # with the right owners (postfix, postdrop).
        self.queue_dir.mkdir(mode=0o755, exist_ok=True)
        nobody = pwd.getpwnam(DELIVERY_USER)
        for sub in (self.mail_dir, self.mail_dir / "tmp", self.mail_dir / "new"):
            sub.mkdir(mode=0o755, exist_ok=True)
            os.chown(sub, nobody.pw_uid, nobody.pw_gid)

    # -- lifecycle ---------------------------------------------------------

    def __enter__(self) -> PrivatePostfix:
        if not self._started:
            self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def _postfix(self, *args: str, timeout: float = 30.0, check: bool = True) -> str:
        proc = _run([POSTFIX, "-c", str(self.config_dir), *args], timeout=timeout, check=check)
        return proc.stdout + proc.stderr

    def start(self, attempts: int = 3) -> PrivatePostfix:
        """Write the configuration, start Postfix, wait for the SMTP port.

        The port comes from binding port 0 and closing it; if someone else
        grabs it before master binds it, start again on a new port.  On
        failure everything is cleaned up (as by :meth:`stop`) and
        :class:`PostfixError` carries the tail of Postfix's log.  An instance
        is single-use: :meth:`stop` removes its directory.
        """
        if self._started:
            raise PostfixError("already started")
        if not self.root.exists():
            raise PostfixError("a stopped PrivatePostfix cannot be restarted; create a new one")
        try:
            if self.sasl_users is not None and self._auth is None:
                self._auth = FakeDovecotAuth(self.socket_path("dovecot-auth"), self.sasl_users)
            for attempt in range(1, attempts + 1):
                self.port = free_port(self.host)
                self._write_config()
                try:
                    self._start_once()
                except PostfixError as err:
                    self._kill_leftovers()
                    if "Address already in use" in str(err) and attempt < attempts:
                        continue
                    raise
                self._started = True
                return self
            raise AssertionError("unreachable")
        except BaseException:
            self.stop()
            raise

    def _start_once(self) -> None:
        try:
            self._postfix("start", timeout=self.start_timeout + 10)
        except (PostfixError, subprocess.TimeoutExpired) as err:
            raise PostfixError(f"postfix start failed: {err}\n{self._log_tail()}") from err
        deadline = time.monotonic() + self.start_timeout
        while time.monotonic() < deadline:
            try:
                with socket.create_connection((self.host, self.port), timeout=1.0):
                    return
            except OSError:
                pass
            if self._master_pid() is None:
                break
            time.sleep(0.05)
        raise PostfixError(
            f"Postfix did not accept SMTP on {self.host}:{self.port}\n{self._log_tail()}"
        )

    def _master_pid(self) -> int | None:
        try:
            text = (self.queue_dir / "pid" / "master.pid").read_text().strip()
            pid = int(text.split()[0])
        except (OSError, ValueError, IndexError):
            return None
        return pid if _pid_alive(pid) else None

    def stop(self) -> None:
        """Stop master and every child, then remove the directory.

        ``postfix stop`` waits in whole seconds; we signal master directly
        (SIGTERM: master terminates its children), poll briefly, and SIGKILL
        whatever still carries our MAIL_CONFIG.  Idempotent.
        """
        try:
            pid = self._master_pid()
            if pid is not None:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGTERM)
                deadline = time.monotonic() + 5.0
                while time.monotonic() < deadline and (
                    _pid_alive(pid) or _pids_with_env("MAIL_CONFIG", str(self.config_dir))
                ):
                    time.sleep(0.05)
            self._kill_leftovers()
        finally:
            self._started = False
            if self._auth is not None:
                self._auth.close()
                self._auth = None
            if not self.keep:
                shutil.rmtree(self.root, ignore_errors=True)

    def _kill_leftovers(self) -> None:
        for _ in range(20):
            pids = _pids_with_env("MAIL_CONFIG", str(self.config_dir))
            if not pids:
                return
            for pid in pids:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            time.sleep(0.05)
        raise PostfixError(f"processes survive SIGKILL: {pids}")

    def processes(self) -> list[int]:
        """PIDs of this instance (master and children)."""
        return _pids_with_env("MAIL_CONFIG", str(self.config_dir))

    # -- SMTP --------------------------------------------------------------

    def connect(self, helo: str = "client.example.net", timeout: float = 30.0) -> smtplib.SMTP:
        """An smtplib connection to the instance, after EHLO.

        For sessions a single :meth:`send` cannot express (several messages,
        RSET, XCLIENT, ...).  The caller closes it.
        """
        smtp = smtplib.SMTP(self.host, self.port, local_hostname=helo, timeout=timeout)
        code, msg = smtp.ehlo()
        if code != 250:
            smtp.close()
            raise smtplib.SMTPHeloError(code, msg)
        return smtp

    def send(
        self,
        from_addr: str,
        to_addrs: str | Sequence[str],
        msg_bytes: bytes,
        *,
        helo: str = "client.example.net",
        mail_options: Sequence[str] = (),
        rcpt_options: Sequence[str] = (),
        timeout: float = 30.0,
    ) -> SendResult:
        """Send one message in its own SMTP session.

        Raises like ``smtplib.SMTP.sendmail`` (so a test sees the code and
        text of a rejection): SMTPHeloError, SMTPSenderRefused,
        SMTPRecipientsRefused (all refused), SMTPDataError (DATA or the end
        of DATA refused), SMTPServerDisconnected (e.g. a 421 shutdown).
        Otherwise returns every reply, including partially refused
        recipients.  ``msg_bytes`` may use LF or CRLF line endings.
        """
        rcpts = [to_addrs] if isinstance(to_addrs, str) else list(to_addrs)
        with smtplib.SMTP(self.host, self.port, local_hostname=helo, timeout=timeout) as smtp:
            ehlo = smtp.ehlo()
            if ehlo[0] != 250:
                raise smtplib.SMTPHeloError(*ehlo)
            code, resp = smtp.mail(from_addr, list(mail_options))
            if code != 250:
                raise smtplib.SMTPSenderRefused(code, resp, from_addr)
            replies: dict[str, tuple[int, bytes]] = {}
            refused: dict[str, tuple[int, bytes]] = {}
            for rcpt in rcpts:
                reply = smtp.rcpt(rcpt, list(rcpt_options))
                replies[rcpt] = reply
                if reply[0] not in (250, 251):
                    refused[rcpt] = reply
            if len(refused) == len(rcpts):
                raise smtplib.SMTPRecipientsRefused(refused)
            data = smtp.data(msg_bytes)
            if data[0] != 250:
                raise smtplib.SMTPDataError(*data)
            match = _QUEUED_RE.search(data[1])
            with contextlib.suppress(smtplib.SMTPException, OSError):
                smtp.quit()
        return SendResult(
            ehlo=ehlo,
            mail=(code, resp),
            rcpt=replies,
            refused=refused,
            data=data,
            queue_id=match.group(1).decode() if match else None,
        )

    # -- deliveries ----------------------------------------------------------

    def deliveries(self) -> list[Delivery]:
        """All messages delivered so far, in delivery order (not send order)."""
        result: list[Delivery] = []
        new = self.mail_dir / "new"
        for path in sorted(new.glob("*.eml")):
            env = path.with_suffix(".env").read_text().split("\n")
            # env: queue_id, sender, recipients..., "" (trailing newline)
            result.append(
                Delivery(
                    queue_id=env[0],
                    sender=env[1] if len(env) > 1 else "",
                    recipients=tuple(r for r in env[2:] if r),
                    data=path.read_bytes(),
                    path=path,
                )
            )
        return result

    def clear_deliveries(self) -> None:
        """Forget delivered messages (for an instance shared by several tests)."""
        for path in (self.mail_dir / "new").iterdir():
            path.unlink()

    def wait_deliveries(self, count: int = 1, timeout: float = 10.0) -> list[Delivery]:
        """Wait until at least ``count`` messages were delivered."""
        deadline = time.monotonic() + timeout
        while True:
            found = self.deliveries()
            if len(found) >= count:
                return found
            if time.monotonic() >= deadline:
                raise TimeoutError(
                    f"{len(found)} of {count} messages delivered after {timeout}s\n"
                    f"queue: {self.queue_listing()}\n{self._log_tail()}"
                )
            time.sleep(0.05)

    def wait_delivered(self, count: int = 1, timeout: float = 10.0) -> list[bytes]:
        """Wait until ``count`` messages were delivered; return their bytes."""
        return [d.data for d in self.wait_deliveries(count, timeout)]

    # -- queue ---------------------------------------------------------------

    def queue_listing(self) -> list[dict[str, object]]:
        """``postqueue -j``: one dict per queued message (any queue)."""
        out = _run([POSTQUEUE, "-c", str(self.config_dir), "-j"], timeout=15).stdout
        return [json.loads(line) for line in out.splitlines() if line.strip()]

    def hold_queue(self) -> list[str]:
        """Queue ids of the messages in the hold queue (milter quarantine)."""
        return [
            str(entry["queue_id"])
            for entry in self.queue_listing()
            if entry.get("queue_name") == "hold"
        ]

    def wait_hold(self, count: int = 1, timeout: float = 10.0) -> list[str]:
        """Wait until ``count`` messages are in the hold queue."""
        deadline = time.monotonic() + timeout
        while True:
            held = self.hold_queue()
            if len(held) >= count or time.monotonic() >= deadline:
                return held
            time.sleep(0.05)

    def release(self, queue_id: str) -> None:
        """Release a held message (``postsuper -H``) so it gets delivered."""
        _run([POSTSUPER, "-c", str(self.config_dir), "-H", queue_id], timeout=15)

    def queue_message(self, queue_id: str) -> bytes:
        """Header and body of a queued message (``postcat -bh -q``)."""
        proc = subprocess.run(
            [POSTCAT, "-c", str(self.config_dir), "-bh", "-q", queue_id],
            capture_output=True,
            env=_ENV,
            timeout=15,
            check=False,
        )
        if proc.returncode != 0:
            raise PostfixError(f"postcat -q {queue_id}: {proc.stderr.decode(errors='replace')}")
        return proc.stdout

    def queue_envelope(self, queue_id: str) -> str:
        """Full ``postcat -q`` output (envelope records, header, body)."""
        proc = _run([POSTCAT, "-c", str(self.config_dir), "-q", queue_id], timeout=15)
        return proc.stdout

    # -- log -----------------------------------------------------------------

    def log_lines(self) -> list[str]:
        """Postfix's log so far (written asynchronously by postlogd)."""
        try:
            return self.log_file.read_text(errors="replace").splitlines()
        except FileNotFoundError:
            return []

    def wait_log(self, pattern: str, timeout: float = 5.0) -> list[str]:
        """Wait until a log line matches regex ``pattern``; return matches."""
        regex = re.compile(pattern)
        deadline = time.monotonic() + timeout
        while True:
            hits = [line for line in self.log_lines() if regex.search(line)]
            if hits or time.monotonic() >= deadline:
                return hits
            time.sleep(0.05)

    def _log_tail(self, lines: int = 60) -> str:
        tail = self.log_lines()[-lines:]
        return f"--- Postfix log ({self.log_file}) ---\n" + "\n".join(tail)
