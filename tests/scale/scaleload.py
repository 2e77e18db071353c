"""The SMTP side of the scale-out test: numbered messages sent through a private Postfix from
several threads, each resent after a temporary failure until it is accepted (bounded)."""

from __future__ import annotations

import collections
import dataclasses
import queue
import smtplib
import threading
import time
from collections.abc import Callable, Sequence

from postfix import PrivatePostfix

__all__ = ["GREYLISTED", "Load", "Outcome", "message_bytes"]

#: The greylist's deferral text (examples/greylist.py with GREYLIST_DELAY=0).
GREYLISTED = b"Greylisted, please try again in 0 seconds"


def message_bytes(number: int, sender: str) -> bytes:
    return (f"From: {sender}\r\nTo: rcpt@example.org\r\nSubject: scale {number}\r\n"
            f"Message-ID: <scale-{number}@example.net>\r\n\r\nMessage number {number}.\r\n"
            ).encode()


@dataclasses.dataclass
class Outcome:
    """What happened to one message: its attempts' results, and its queue id once accepted."""

    number: int
    sender: str
    attempts: list[str] = dataclasses.field(default_factory=list)
    queue_id: str | None = None


class Load:
    """Send messages ``numbers`` (``sender_of(number)`` as envelope sender) from ``threads``
    threads; a message refused with a 4xx (or a dropped session) goes back in the queue, up to
    ``max_attempts`` tries. :attr:`accepted` counts accepted messages as they come."""

    def __init__(self, pf: PrivatePostfix, numbers: Sequence[int],
                 sender_of: Callable[[int], str], *, threads: int = 12,
                 max_attempts: int = 40, deadline: float = 300.0) -> None:
        self.pf = pf
        self.outcomes = {n: Outcome(n, sender_of(n)) for n in numbers}
        self.threads = threads
        self.max_attempts = max_attempts
        self.deadline = time.monotonic() + deadline
        self.accepted = 0
        self.failures: list[str] = []
        self._queue: queue.Queue[int] = queue.Queue()
        self._lock = threading.Lock()
        self._pending = len(numbers)
        self._workers: list[threading.Thread] = []
        for n in numbers:
            self._queue.put(n)

    def start(self) -> Load:
        for _ in range(self.threads):
            worker = threading.Thread(target=self._work, daemon=True)
            worker.start()
            self._workers.append(worker)
        return self

    def join(self) -> None:
        for worker in self._workers:
            worker.join(max(1.0, self.deadline - time.monotonic() + 30))
        assert not any(worker.is_alive() for worker in self._workers), "senders still running"

    def counts(self) -> collections.Counter[str]:
        """How many attempts ended how (``accepted``, ``greylisted``, ``4xx``...)."""
        return collections.Counter(a for o in self.outcomes.values() for a in o.attempts)

    def _work(self) -> None:
        while time.monotonic() < self.deadline:
            with self._lock:
                if self._pending == 0:
                    return
            try:
                number = self._queue.get(timeout=0.2)
            except queue.Empty:
                continue
            outcome = self.outcomes[number]
            result = self._attempt(outcome)
            with self._lock:
                outcome.attempts.append(result)
                if result == "accepted":
                    self.accepted += 1
                    self._pending -= 1
                elif result.startswith("5") or len(outcome.attempts) >= self.max_attempts:
                    self.failures.append(f"message {number}: {outcome.attempts}")
                    self._pending -= 1
                else:
                    self._queue.put(number)
        with self._lock:
            if self._pending:
                self.failures.append(f"deadline passed with {self._pending} messages unsent")
                self._pending = 0

    def _attempt(self, outcome: Outcome) -> str:
        try:
            with smtplib.SMTP(self.pf.host, self.pf.port, local_hostname="client.example.net",
                              timeout=60) as smtp:
                steps: list[Callable[[], tuple[int, bytes]]] = [
                    smtp.ehlo, lambda: smtp.mail(outcome.sender),
                    lambda: smtp.rcpt("rcpt@example.org")]
                for step in steps:
                    code, text = step()
                    if code not in (250, 251):
                        return _classify(code, text)
                code, text = smtp.data(message_bytes(outcome.number, outcome.sender))
                if code != 250:
                    return _classify(code, text)
                outcome.queue_id = text.decode().rsplit(" ", 1)[-1]
                try:
                    smtp.quit()
                except (smtplib.SMTPException, OSError):
                    pass
                return "accepted"
        except smtplib.SMTPDataError as exc:
            return _classify(exc.smtp_code, exc.smtp_error)
        except (smtplib.SMTPServerDisconnected, smtplib.SMTPConnectError, OSError) as exc:
            return f"disconnected: {exc}"


def _classify(code: int, text: bytes | str) -> str:
    data = text.encode() if isinstance(text, str) else text
    if code == 451 and GREYLISTED in data:
        return "greylisted"
    return f"{code} {data.decode(errors='replace')}"
