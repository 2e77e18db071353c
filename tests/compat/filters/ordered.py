"""A pymilter filter that logs each callback and its thread to a file (argv[2])."""

import sys
import threading

import Milter

LOG = open(sys.argv[2], "a")


def note(name: str) -> None:
    LOG.write(f"{name}:{threading.get_ident()}\n")
    LOG.flush()


class Ordered(Milter.Base):  # type: ignore[misc]
    def negotiate(self, opts: list[int]) -> int:
        note("negotiate")
        return int(super().negotiate(opts))

    def connect(self, hostname: str, family: int, hostaddr: object) -> int:
        note("connect")
        return int(Milter.CONTINUE)

    def hello(self, name: str) -> int:
        note("hello")
        return int(Milter.CONTINUE)

    def envfrom(self, f: str, *p: str) -> int:
        note("envfrom")
        return int(Milter.CONTINUE)

    def envrcpt(self, to: str, *p: str) -> int:
        note("envrcpt")
        return int(Milter.CONTINUE)

    def header(self, name: str, value: str) -> int:
        note("header")
        return int(Milter.CONTINUE)

    def eoh(self) -> int:
        note("eoh")
        return int(Milter.CONTINUE)

    def body(self, chunk: bytes) -> int:
        note("body")
        return int(Milter.CONTINUE)

    def eom(self) -> int:
        note("eom")
        return int(Milter.CONTINUE)

    def abort(self) -> int:
        note("abort")
        return int(Milter.CONTINUE)

    def close(self) -> int:
        note("close")
        return int(Milter.CONTINUE)


if __name__ == "__main__":
    Milter.factory = Ordered
    Milter.runmilter("ordered", sys.argv[1], 60)
