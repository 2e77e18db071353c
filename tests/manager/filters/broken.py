"""A deliberately broken child milter: it accepts connections, answers the negotiation, then
answers CONNECT with a packet that is no milter reply at all (and closes). Run as a script:
``python broken.py PORT``."""

from __future__ import annotations

import socket
import struct
import sys
import threading


def serve(conn: socket.socket) -> None:
    with conn:
        data = conn.recv(65536)
        if not data or data[4:5] != b"O":
            return
        # version 6, no actions, every event but CONNECT switched off is not our business:
        # ask for everything (protocol 0) to be sure CONNECT comes.
        payload = b"O" + struct.pack("!III", 6, 0, 0)
        conn.sendall(struct.pack("!I", len(payload)) + payload)
        while True:
            data = conn.recv(65536)
            if not data:
                return
            if b"C" in data:
                conn.sendall(struct.pack("!I", 3) + b"Zzz")  # no such reply
                return


def main() -> None:
    port = int(sys.argv[1])
    with socket.socket() as server:
        server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        server.bind(("127.0.0.1", port))
        server.listen(16)
        while True:
            conn, _ = server.accept()
            threading.Thread(target=serve, args=(conn,), daemon=True).start()


if __name__ == "__main__":
    main()
