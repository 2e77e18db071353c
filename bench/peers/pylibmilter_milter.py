# mypy: ignore-errors
# (a peer library's program, run in that library's own venv: not milterkit's code)
"""The benchmark's job on python-libmilter (its own venv, bench/peers/run.py): a callback on
every event, an X-Load header at end-of-message, a thread per connection (ThreadFactory).
python pylibmilter_milter.py inet:HOST:PORT"""

import sys

import libmilter as lm


class Bench(lm.ThreadMixin, lm.MilterProtocol):
    def __init__(self, opts=0, protos=0):
        lm.MilterProtocol.__init__(self, opts, protos)
        lm.ThreadMixin.__init__(self)
        self.headers = 0
        self.size = 0

    def log(self, msg):
        pass

    def connect(self, hostname, family, ip, port, cmdDict):
        return lm.CONTINUE

    def helo(self, heloname):
        return lm.CONTINUE

    def mailFrom(self, frAddr, cmdDict):
        self.headers = self.size = 0
        return lm.CONTINUE

    def rcpt(self, recip, cmdDict):
        return lm.CONTINUE

    def data(self, cmdDict):
        return lm.CONTINUE

    def header(self, key, val, cmdDict):
        self.headers += 1
        return lm.CONTINUE

    def eoh(self, cmdDict):
        return lm.CONTINUE

    def body(self, chunk, cmdDict):
        self.size += len(chunk)
        return lm.CONTINUE

    def eob(self, cmdDict):
        self.addHeader(b"X-Load", b"%d %d" % (self.headers, self.size))
        return lm.CONTINUE

    def close(self):
        pass

    def abort(self):
        pass


if __name__ == "__main__":
    factory = lm.ThreadFactory(sys.argv[1], Bench, lm.SMFIF_ADDHDRS)
    factory.run()
