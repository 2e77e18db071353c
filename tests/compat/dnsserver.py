"""A tiny authoritative DNS server on 127.0.0.1 (dnspython), for SPF lookups without internet.

:class:`DNSServer` answers TXT queries from a dict and NXDOMAIN for every other name, over UDP,
on a thread; it records every question so a test can see the application asked.
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Mapping
from types import TracebackType

import dns.flags
import dns.message
import dns.rcode
import dns.rdataclass
import dns.rdatatype
import dns.rrset


class DNSServer:
    """Serves ``txt`` (name -> list of TXT strings) on 127.0.0.1:``port`` (0 picks a port)."""

    def __init__(self, txt: Mapping[str, list[str]], port: int = 0) -> None:
        self.txt = {name.rstrip(".").lower() + ".": values for name, values in txt.items()}
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", port))
        self.sock.settimeout(0.1)
        self.port: int = self.sock.getsockname()[1]
        self.questions: list[tuple[str, str]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, name="test-dns", daemon=True)

    def _answer(self, query: dns.message.Message) -> dns.message.Message:
        response = dns.message.make_response(query)
        response.flags |= dns.flags.AA
        question = query.question[0]
        name = question.name.to_text().lower()
        kind = dns.rdatatype.to_text(question.rdtype)
        self.questions.append((name, kind))
        values = self.txt.get(name)
        if values is None:
            response.set_rcode(dns.rcode.NXDOMAIN)
        elif question.rdtype == dns.rdatatype.TXT:
            quoted = ['"' + value.replace('"', '\\"') + '"' for value in values]
            response.answer.append(
                dns.rrset.from_text(question.name, 60, dns.rdataclass.IN, "TXT", *quoted))
        return response  # another type of an existing name: NOERROR, no answer

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                data, peer = self.sock.recvfrom(4096)
            except TimeoutError:
                continue
            except OSError:
                return
            try:
                query = dns.message.from_wire(data)
            except Exception:
                continue
            self.sock.sendto(self._answer(query).to_wire(), peer)

    def __enter__(self) -> DNSServer:
        self._thread.start()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self._stop.set()
        self._thread.join(5)
        self.sock.close()
