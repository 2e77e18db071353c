"""Milter.Base filters for the differential test: the same file runs under the real pymilter
and under ``milterkit compat pymilter``. Usage: differential.py SPEC CLASSNAME.

What each callback does is driven by the message, so generated sessions reach every action,
decorator, multi-line reply, SKIP and early verdict:
sender local part ``reject``/``tempfail``/``accept``/``discard``/``mlreply`` -> that verdict at
MAIL; recipient local part ``bad*`` -> a multi-line REJECT, ``temp*`` -> TEMPFAIL; a header
``X-Eom: a,b,...`` lists actions for eom; ``X-Skip: yes`` makes body return SKIP.
"""

import sys

import Milter

EOM_ACTIONS = {
    "add": lambda m: m.addheader("X-Added", "by the filter"),
    "insert": lambda m: m.addheader("X-Inserted", "at the top", 0),
    "change": lambda m: m.chgheader("Subject", 1, "changed subject"),
    "delete": lambda m: m.chgheader("X-Eom", 1, None),
    "rcpt": lambda m: m.addrcpt("<added@example.org>"),
    "rcptpar": lambda m: m.addrcpt("<param@example.org>", "NOTIFY=NEVER"),
    "delrcpt": lambda m: m.delrcpt("<gone@example.org>"),
    "body": lambda m: m.replacebody(b"replaced body\r\n"),
    "from": lambda m: m.chgfrom("<new@example.net>"),
    "frompar": lambda m: m.chgfrom("<new@example.net>", "SIZE=100"),
    "quarantine": lambda m: m.quarantine("held by the filter"),
}


class Everything(Milter.Base):  # type: ignore[misc]
    """Overrides every callback."""

    def __init__(self) -> None:
        self.eom_actions: list[str] = []
        self.skip = False
        self.chunks = 0
        self.verdict = ""

    def connect(self, hostname: str, family: int, hostaddr: object) -> int:
        if hostname.startswith("reject"):
            self.setreply("554", "5.7.1", "go away", "you are", "not welcome")
            return int(Milter.REJECT)
        return int(Milter.CONTINUE)

    def hello(self, heloname: str) -> int:
        if heloname.startswith("tempfail"):
            return int(Milter.TEMPFAIL)
        return int(Milter.CONTINUE)

    def envfrom(self, f: str, *params: str) -> int:
        self.eom_actions = []
        self.skip = False
        self.chunks = 0
        local = f.strip("<>").split("@")[0]
        if local == "reject":
            self.setreply("550", "5.7.1", "sender refused")
            return int(Milter.REJECT)
        if local == "tempfail":
            self.setreply("451", "4.7.1", "try", "again", "later")
            return int(Milter.TEMPFAIL)
        if local == "accept":
            return int(Milter.ACCEPT)
        if local == "discard":
            return int(Milter.DISCARD)
        if local == "mismatch":  # a 4xx reply with REJECT: libmilter sends a plain reject
            self.setreply("451", "4.7.1", "mismatched")
            return int(Milter.REJECT)
        self.verdict = local
        return int(Milter.CONTINUE)

    def envrcpt(self, to: str, *params: str) -> int:
        local = to.strip("<>").split("@")[0]
        if local.startswith("bad"):
            self.setreply("550", "5.1.1", f"no such user {local}", "second line")
            return int(Milter.REJECT)
        if local.startswith("temp"):
            return int(Milter.TEMPFAIL)
        return int(Milter.CONTINUE)

    def data(self) -> int:
        return int(Milter.CONTINUE)

    def header(self, name: str, value: str) -> int:
        if name == "X-Eom":
            self.eom_actions = [part.strip() for part in value.split(",") if part.strip()]
        if name == "X-Skip":
            self.skip = True
        if name == "X-Reject-Header":
            return int(Milter.REJECT)
        return int(Milter.CONTINUE)

    def eoh(self) -> int:
        return int(Milter.CONTINUE)

    def body(self, chunk: bytes) -> int:
        self.chunks += 1
        if self.skip and self._protocol & Milter.P_SKIP:
            return int(Milter.SKIP)
        return int(Milter.CONTINUE)

    def unknown(self, cmd: str) -> int:
        self.setreply("502", "5.5.2", "not here")
        return int(Milter.REJECT)

    def eom(self) -> int:
        # progress() first: milterkit sends modifications together when eom returns, so a
        # progress() made after one would overtake it (libmilter writes each at once).
        if "progress" in self.eom_actions:
            self.progress()
        self.first_changes()
        # milterkit sends replacement body packets after the other changes and the quarantine
        # last (docs/migrate-pymilter.rst); call them in that order so both write alike.
        last = {"body": 1, "quarantine": 2}
        for action in sorted(self.eom_actions, key=lambda a: last.get(a, 0)):
            if action in EOM_ACTIONS:
                EOM_ACTIONS[action](self)
        if "reject" in self.eom_actions:
            self.setreply("550", "5.7.0", "content refused", "line two", "line three")
            return int(Milter.REJECT)
        if "tempfail" in self.eom_actions:
            return int(Milter.TEMPFAIL)
        if "discard" in self.eom_actions:
            return int(Milter.DISCARD)
        if "continue" in self.eom_actions:
            return int(Milter.CONTINUE)
        return int(Milter.ACCEPT)

    def first_changes(self) -> None:
        """Changes a subclass makes before the listed ones."""

    def abort(self) -> int:
        return int(Milter.CONTINUE)

    def close(self) -> int:
        return int(Milter.CONTINUE)


class NoReplies(Everything):
    """The same, with @noreply on the callbacks that only ever continue."""

    @Milter.noreply  # type: ignore[untyped-decorator]
    def data(self) -> int:
        return int(Milter.CONTINUE)

    @Milter.noreply  # type: ignore[untyped-decorator]
    def eoh(self) -> int:
        return int(Milter.CONTINUE)


class OnlyEom(Milter.Base):  # type: ignore[misc]
    """Overrides eom only: every optional event is negotiated away."""

    def eom(self) -> int:
        self.addheader("X-Only-Eom", "yes")
        return int(Milter.CONTINUE)


class Inherited(Everything):
    """@nocallback re-disables callbacks inherited from Everything."""

    @Milter.nocallback  # type: ignore[untyped-decorator]
    def hello(self, heloname: str) -> int:
        return int(Milter.CONTINUE)

    @Milter.nocallback  # type: ignore[untyped-decorator]
    def unknown(self, cmd: str) -> int:
        return int(Milter.CONTINUE)


@Milter.rejected_recipients
@Milter.header_leading_space
class Protocols(Everything):
    """Class decorators asking for rejected recipients and headers' leading space."""


class Macros(Everything):
    """getsymval results go into a header at eom."""

    def envfrom(self, f: str, *params: str) -> int:
        self.seen = self.getsymval("{mail_addr}")
        return int(super().envfrom(f, *params))

    def first_changes(self) -> None:
        found = f"{self.seen} {self.getsymval('j')} {self.getsymval('{rcpt_addr}')}"
        self.addheader("X-Macro", found)


class AllOpts(Everything):
    """negotiate answers ALL_OPTS: libmilter's static flags and the registered callbacks."""

    def negotiate(self, opts: list[int]) -> int:
        return int(Milter.ALL_OPTS)


class Raises(Everything):
    """Untrapped exceptions: the exception policy answers."""

    def envrcpt(self, to: str, *params: str) -> int:
        if "boom" in to:
            raise RuntimeError("boom")
        return int(super().envrcpt(to, *params))


if __name__ == "__main__":
    Milter.factory = globals()[sys.argv[2]]
    if len(sys.argv) > 3:
        Milter.set_exception_policy(getattr(Milter, sys.argv[3]))
    Milter.runmilter("differential", sys.argv[1], 60)
