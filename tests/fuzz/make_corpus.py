"""Write the seed corpus: the MTA side of every capture under tests/data (real Postfix
sessions), and protocol edge cases, each behind a few plans of handler kinds.

Run it again when captures are added:  python tests/fuzz/make_corpus.py
"""

from __future__ import annotations

import hashlib
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from fuzz_feed import CORPUS, PLAN  # noqa: E402

from milterkit.protocol import commands as cmd  # noqa: E402
from milterkit.protocol.constants import ActionFlag  # noqa: E402
from milterkit.protocol.constants import ProtocolFlag as P  # noqa: E402
from milterkit.protocol.framing import encode_packet  # noqa: E402
from milterkit.tools.capture_format import read_capture  # noqa: E402

DATA = HERE.parent / "data"
PLANS = [
    bytes(PLAN),  # no handlers, tempfail policy
    bytes([0, 0, 3]) + bytes([1, 2, 4, 5, 6, 7, 3, 2, 1, 4, 5, 6, 4, 2][: PLAN - 3]),
    bytes([4, 3, 0x85]) + bytes([4] * (PLAN - 3)),  # all coroutines, small caps, no policy
    bytes([1, 2, 6]) + bytes([5] * (PLAN - 3)),  # PROGRESS everywhere, tiny backlog bound
]


def edge_streams() -> list[bytes]:
    offer = cmd.Negotiate(6, ActionFlag.ALL, P.ALL).to_bytes()
    connect = cmd.Connect("h", cmd.SocketAddress("4", "192.0.2.1", 25)).to_bytes()
    mail = cmd.Mail("<a@b>").to_bytes()
    return [
        offer + connect + cmd.QuitNewConnection().to_bytes() + mail,  # K then M
        offer + mail + encode_packet(b"D", b"Ma\0b\0") * 200,  # the flood of issue 9
        offer + mail + encode_packet(b"B", b"x") * 200,  # 1-byte body packets
        offer + offer,  # a second OPTNEG
        offer + encode_packet(b"B", b""),  # an empty BODY (kills a libmilter session)
        b"\0\0\0\0",  # a zero length
        b"\x7f\xff\xff\xff" + b"L",  # a length far over the cap
        offer + connect + cmd.Quit().to_bytes() + mail,  # bytes after QUIT
    ]


def main() -> None:
    CORPUS.mkdir(exist_ok=True)
    streams = [read_capture(path).mta_bytes for path in sorted(DATA.glob("*.mkcap"))]
    streams += edge_streams()
    for stream in streams:
        for plan in PLANS:
            data = plan + stream
            name = hashlib.sha1(data).hexdigest()[:16]
            (CORPUS / name).write_bytes(data)
    print(f"{len(streams) * len(PLANS)} seeds in {CORPUS}")


if __name__ == "__main__":
    main()
