"""A pymilter filter that blocks: a sender whose local part is ``sleep`` makes envfrom call
``time.sleep(2)``, as real milters block in DNS lookups. Argument: the socket spec."""

import sys
import time

import Milter


class Sleepy(Milter.Base):  # type: ignore[misc]
    def envfrom(self, mailfrom: str, *params: str) -> int:
        if mailfrom.startswith("<sleep@"):
            time.sleep(2)
        return int(Milter.CONTINUE)

    def envrcpt(self, to: str, *params: str) -> int:
        return int(Milter.CONTINUE)


if __name__ == "__main__":
    Milter.factory = Sleepy
    Milter.runmilter("sleepy", sys.argv[1], 60)
