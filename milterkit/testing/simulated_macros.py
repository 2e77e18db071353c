"""The macros a simulated MTA sends: its profile's names, the milter's requested lists, the
values it knows at each point of the session, and the test's own values on top."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING

from ..macros import normalize_name
from ..protocol import commands as cmd
from ..protocol.steps import CommandStep
from .message import Recipient
from .profile import Profile
from .results import MessageOutcome

if TYPE_CHECKING:
    from .server import SMTPClient


class SimulatedMacros:
    """``D`` packets of the MTA side (a mixin of ServerContext)."""

    # Provided by ServerContext.
    profile: Profile
    hostname: str
    connection: SMTPClient
    macros: dict[str, dict[str, str]]
    macro_lists: dict[str, tuple[str, ...]]
    _outcome: MessageOutcome | None
    _queue_id: str | None
    _recipient: Recipient | None
    _send: Callable[[cmd.AnyCommand], None]

    def _send_macros(self, step: CommandStep, extra: Mapping[str, Mapping[str, str]]) -> None:
        profile = self.profile
        assert step.macros_from is not None
        # Headers and body chunks carry another command's list: Sendmail sends no D for them.
        if not profile.macros_before_every_event and step.macros_from != step.code:
            return
        values = self._macro_values(step.macros_from.decode("ascii"), extra)
        if values or profile.macros_before_every_event:
            self._send(cmd.DefineMacro(step.code, values))

    def _macro_values(
        self, letter: str, extra: Mapping[str, Mapping[str, str]]
    ) -> dict[str, str]:
        names = self.macro_lists.get(letter) or self.profile.macro_names.get(letter, ())
        user = {**self.macros.get(letter, {}), **extra.get(letter, {})}
        user_bare = {normalize_name(k): v for k, v in user.items()}
        known = self._known_macros()
        values: dict[str, str] = {}
        for name in names:
            bare = normalize_name(name)
            value = user_bare.get(bare, known.get(bare))
            if value is not None:
                values[name] = value
        for name, value in user.items():
            if normalize_name(name) not in {normalize_name(n) for n in values}:
                values[name] = value
        return values

    def _known_macros(self) -> dict[str, str]:
        """Every macro value the simulated MTA knows at this point of the session."""
        conn = self.connection
        known = {
            "j": self.hostname,
            "daemon_name": self.hostname,
            "daemon_addr": "127.0.0.1",
            "if_name": "localhost",
            "if_addr": "127.0.0.1",
            "v": f"{self.profile.name.capitalize()} (milterkit test-server)",
            "_": f"{conn.hostname} [{conn.address.address or 'unknown'}]",
        }
        outcome = self._outcome
        if outcome is not None:
            sender = outcome.original.sender.strip("<>")
            known.update(mail_addr=sender, mail_host=sender.partition("@")[2] or "localhost",
                         mail_mailer="smtp" if "@" in sender else "local")
        if self._queue_id is not None:
            known["i"] = self._queue_id
            known["msg_id"] = f"<{self._queue_id}@{self.hostname}>"
        if self._recipient is not None:
            rcpt = self._recipient.address.strip("<>")
            known.update(rcpt_addr=rcpt, rcpt_host=rcpt.partition("@")[2] or "localhost",
                         rcpt_mailer="smtp" if "@" in rcpt else "local")
        return known

