# mypy: ignore-errors
# (a peer library's program, run in that library's own venv: not milterkit's code)
"""The benchmark's job on pymilter (run in its own venv by bench/peers/run.py): a callback on
every event, an X-Load header at end-of-message.  python pymilter_milter.py inet:PORT@HOST"""

import sys

import Milter


class Bench(Milter.Base):
    def __init__(self):
        self.headers = 0
        self.size = 0

    def connect(self, hostname, family, hostaddr):
        return Milter.CONTINUE

    def hello(self, hostname):
        return Milter.CONTINUE

    def envfrom(self, mailfrom, *params):
        self.headers = self.size = 0
        return Milter.CONTINUE

    def envrcpt(self, to, *params):
        return Milter.CONTINUE

    def data(self):
        return Milter.CONTINUE

    def header(self, name, value):
        self.headers += 1
        return Milter.CONTINUE

    def eoh(self):
        return Milter.CONTINUE

    def body(self, chunk):
        self.size += len(chunk)
        return Milter.CONTINUE

    def eom(self):
        self.addheader("X-Load", f"{self.headers} {self.size}")
        return Milter.CONTINUE

    def abort(self):
        return Milter.CONTINUE

    def close(self):
        return Milter.CONTINUE


if __name__ == "__main__":
    Milter.factory = Bench
    Milter.set_flags(Milter.ADDHDRS)
    Milter.runmilter("bench", sys.argv[1], 600)
