"""A private Postfix with ``milterkit run`` behind it, and an SMTP client that records replies.

:class:`Stack` starts a :class:`~postfix.PrivatePostfix` whose ``smtpd_milters`` points at one
fixed address (a unix socket under the instance's directory, or a loopback TCP port) and a
:class:`~milterproc.MilterProcess` serving a filter there. Because Postfix opens a new milter
connection for every SMTP session, :meth:`Stack.serving` can swap the filter behind that address
between tests without touching Postfix: one Postfix per test module, one milter process per
filter.

:func:`session` runs one SMTP session and records every reply instead of raising at the first
refusal (smtplib's ``sendmail`` stops there), which is what the tests compare.
"""

from __future__ import annotations

import contextlib
import dataclasses
import smtplib
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path

from milterproc import MilterProcess
from postfix import PrivatePostfix, free_port

__all__ = ["Reply", "Session", "Stack", "session"]

Reply = tuple[int, bytes]


class Stack:
    """Postfix on 127.0.0.1 with a milterkit filter on ``transport`` (``unix`` or ``tcp``).

    ``options``/``env`` go to the milter process, ``postfix`` to :class:`PrivatePostfix`.
    """

    def __init__(
        self,
        target: str | Path,
        *,
        transport: str = "unix",
        options: Sequence[str] = (),
        env: Mapping[str, str] | None = None,
        **postfix: object,
    ) -> None:
        self.pf = PrivatePostfix(**postfix)  # type: ignore[arg-type]
        if transport == "unix":
            # Postfix's smtpd runs as user postfix: the socket's group is postfix, mode 0660,
            # which is what docs/postfix.rst recommends.
            self.spec = f"unix:{self.pf.socket_path('milter.sock')}"
            self.base_options = ["--socket-group", "postfix", "--socket-mode", "660"]
        elif transport == "tcp":
            self.spec = f"inet:{free_port()}@127.0.0.1"
            self.base_options = []
        else:
            raise ValueError(f"transport must be unix or tcp, not {transport!r}")
        self.milter = self._process(target, options, env)
        self.pf.smtpd_milters = self.milter.postfix_spec
        self._others: list[MilterProcess] = []

    def _process(
        self, target: str | Path, options: Sequence[str], env: Mapping[str, str] | None,
    ) -> MilterProcess:
        # A short timeout so a test that leaves a session hanging cannot stall teardown.
        return MilterProcess(target, self.spec, [*self.base_options, "--shutdown-timeout", "2",
                                                 *options], env)

    def start(self) -> Stack:
        """Start the milter first, so Postfix's first session finds it."""
        try:
            self.milter.start()
            self.pf.start()
        except BaseException:
            self.close()
            raise
        return self

    def close(self) -> None:
        """Stop everything; remove Postfix's directory and the milter logs."""
        try:
            self.pf.stop()
        finally:
            self.milter.close()
            for other in self._others:
                other.close()

    def __enter__(self) -> Stack:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    @contextlib.contextmanager
    def serving(
        self,
        target: str | Path,
        options: Sequence[str] = (),
        env: Mapping[str, str] | None = None,
    ) -> Iterator[MilterProcess]:
        """Serve another filter on the same address for a while, then the original again."""
        self.milter.stop()
        other = self._process(target, options, env)
        self._others.append(other)
        try:
            other.start()
            yield other
        finally:
            other.stop()
            self.milter.start()

    def report(self, lines: int = 120) -> str:
        """The tail of Postfix's log and of every milter log, for a failing test's output."""
        parts = ["--- Postfix log (tail) ---", *self.pf.log_lines()[-lines:]]
        for proc in (self.milter, *self._others):
            log = proc.log().splitlines()
            parts += [f"--- milterkit run {proc.target} (tail) ---", *log[-lines:]]
        return "\n".join(parts)


def _bytes(text: bytes | str) -> bytes:
    # smtplib's exceptions may carry str or bytes; replies are compared as bytes
    return text.encode() if isinstance(text, str) else text


@dataclasses.dataclass
class Session:
    """Every reply of one SMTP session; ``None`` where the step was not reached."""

    banner: Reply | None = None
    xclient: Reply | None = None
    ehlo: Reply | None = None
    auth: Reply | None = None
    unknown: Reply | None = None
    mail: Reply | None = None
    rcpt: dict[str, Reply] = dataclasses.field(default_factory=dict)
    data: Reply | None = None
    quit: Reply | None = None

    @property
    def queue_id(self) -> str | None:
        """The queue id in the reply to DATA, if the message was queued."""
        if self.data is None or self.data[0] != 250:
            return None
        text = self.data[1].decode()
        return text.rsplit(" ", 1)[-1] if "queued as" in text else None


def session(
    pf: PrivatePostfix,
    *,
    sender: str = "alice@example.net",
    recipients: Sequence[str] = ("bob@example.org",),
    message: bytes | None = None,
    helo: str = "client.example.net",
    xclient: str | None = None,
    unknown: str | None = None,
    login: tuple[str, str] | None = None,
    mail_options: Sequence[str] = (),
    rcpt_options: Sequence[str] = (),
    smtp: smtplib.SMTP | None = None,
    timeout: float = 30.0,
) -> Session:
    """Run one SMTP transaction (in a new session unless ``smtp`` is given); record replies.

    Goes on after refusals as far as the protocol allows (DATA is only sent when a recipient was
    accepted), so a test sees exactly where a milter's verdict reached the client.
    """
    result = Session()
    own = smtp is None
    if smtp is None:
        smtp = smtplib.SMTP(local_hostname=helo, timeout=timeout)
        result.banner = smtp.connect(pf.host, pf.port)
    try:
        if xclient is not None:
            result.xclient = smtp.docmd("XCLIENT", xclient)
        if own:
            result.ehlo = smtp.ehlo()
        if login is not None:
            try:
                result.auth = smtp.login(*login)
            except smtplib.SMTPAuthenticationError as exc:
                result.auth = (exc.smtp_code, _bytes(exc.smtp_error))
        if unknown is not None:
            result.unknown = smtp.docmd(unknown)
        result.mail = smtp.mail(sender, list(mail_options))
        for rcpt in recipients:
            result.rcpt[rcpt] = smtp.rcpt(rcpt, list(rcpt_options))
        accepted = any(code in (250, 251) for code, _ in result.rcpt.values())
        if result.mail[0] == 250 and accepted and message is not None:
            try:
                result.data = smtp.data(message)
            except smtplib.SMTPDataError as exc:
                result.data = (exc.smtp_code, _bytes(exc.smtp_error))
        else:
            smtp.rset()
        if own:
            result.quit = smtp.docmd("QUIT")
    finally:
        if own:
            smtp.close()
    return result

