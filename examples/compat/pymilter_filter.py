"""A filter written for pymilter, unchanged: ``import Milter``, a ``Milter.Base`` subclass,
``Milter.runmilter``. milterkit runs it without pymilter or libmilter installed:

    milterkit compat pymilter examples/compat/pymilter_filter.py inet:9900@127.0.0.1

It rejects recipients in the domain ``blocked.example`` with a two-line reply, and adds an
``X-Checked-By`` header naming the sender's domain to every message it accepts.
"""

import sys
import time

import Milter
from Milter.utils import parse_addr


class CheckFilter(Milter.Base):  # type: ignore[misc] # Milter is milterkit's at run time
    def __init__(self) -> None:
        self.id = Milter.uniqueID()
        self.domain = "unknown"

    @Milter.noreply  # type: ignore[untyped-decorator]
    def connect(self, hostname: str, family: int, hostaddr: object) -> int:
        return int(Milter.CONTINUE)

    def envfrom(self, mailfrom: str, *params: str) -> int:
        parts = parse_addr(mailfrom)
        self.domain = parts[1] if len(parts) > 1 else "local"
        return int(Milter.CONTINUE)

    def envrcpt(self, to: str, *params: str) -> int:
        if parse_addr(to)[-1] == "blocked.example":
            self.setreply("550", "5.7.1", "Recipient refused", "by the pymilter-style filter")
            return int(Milter.REJECT)
        return int(Milter.CONTINUE)

    def header(self, name: str, value: str) -> int:
        if name.lower() == "x-slow":
            time.sleep(float(value))  # a blocking call, as real milters make (DNS, files)
        return int(Milter.CONTINUE)

    def eom(self) -> int:
        self.addheader("X-Checked-By", f"pymilter-style filter #{self.id} ({self.domain})")
        return int(Milter.ACCEPT)


def main() -> None:
    socket = sys.argv[1] if len(sys.argv) > 1 else "inet:9900@127.0.0.1"
    Milter.factory = CheckFilter
    Milter.set_flags(Milter.ADDHDRS)
    Milter.runmilter("checkfilter", socket, 240)


if __name__ == "__main__":
    main()
