"""Postfix -> HAProxy -> three ``milterkit run examples/greylist.py`` sharing Redis, for real.

2,000 numbered messages go through a private Postfix whose milter is HAProxy (running
``examples/scale-out/haproxy.cfg``); one instance is SIGKILLed and restarted while they flow.
Every message must end up delivered exactly once with exactly one ``X-Greylist`` header:
whatever was refused with a temporary failure (the greylist's first deferral of a triplet, or
Postfix's ``milter_default_action = tempfail`` for the sessions the killed instance held) is
resent by the test until accepted. Greylisting state is shared: no triplet is deferred twice,
although its messages are spread over three processes.
"""

from __future__ import annotations

import asyncio
import email
import os
import signal
from collections.abc import Iterator

import pytest
from milterproc import EXAMPLES, MilterProcess
from postfix import PrivatePostfix, free_port
from scalelib import HAProxy, RedisServer, Sample, need_scale_tools, one_message, scrape, wait_for
from scaleload import Load

from milterkit.protocol.replies import Continue

pytestmark = pytest.mark.postfix

MESSAGES = int(os.environ.get("MILTERKIT_SCALE_MESSAGES", "2000"))
SENDERS = 20  # 20 triplets: each is greylisted once, wherever its messages land


class Fleet:
    """Redis, three greylist instances with metrics, HAProxy in front, Postfix behind it."""

    def __init__(self, redis: RedisServer) -> None:
        env = {"GREYLIST_STORE": redis.url, "GREYLIST_DELAY": "0"}
        self.metrics_ports = [free_port() for _ in range(3)]
        self.milters = [
            MilterProcess(EXAMPLES / "greylist.py", f"inet:{free_port()}@127.0.0.1",
                          ["--metrics-listen", f"127.0.0.1:{port}", "--shutdown-timeout", "5",
                           "--log-level", "info"], env)
            for port in self.metrics_ports
        ]
        self.haproxy = HAProxy([(m.postfix_spec.removeprefix("inet:"), port)
                                for m, port in zip(self.milters, self.metrics_ports,
                                                   strict=True)])
        self.pf: PrivatePostfix | None = None

    def start(self) -> Fleet:
        for milter in self.milters:
            milter.start()
        self.haproxy.start()
        self.haproxy.wait_states({"m1": "UP", "m2": "UP", "m3": "UP"})
        self.pf = PrivatePostfix(
            self.haproxy.postfix_spec, milter_default_action="tempfail",
            extra_main_cf={"smtpd_client_connection_count_limit": "0",
                           "smtpd_client_connection_rate_limit": "0",
                           "smtpd_client_message_rate_limit": "0",
                           "default_process_limit": "100"},
        ).start()
        return self

    def close(self) -> None:
        try:
            if self.pf is not None:
                self.pf.stop()
        finally:
            self.haproxy.close()
            for milter in self.milters:
                milter.close()

    def scrape(self, number: int) -> dict[Sample, float]:
        return scrape(f"http://127.0.0.1:{self.metrics_ports[number]}/metrics")

    def total(self, name: str, **labels: str) -> float:
        wanted = tuple(sorted(labels.items()))
        return sum(self.scrape(i).get((name, wanted), 0.0) for i in range(3))

    def report(self) -> str:
        parts = ["--- HAProxy ---", self.haproxy.log()[-4000:]]
        for milter in self.milters:
            parts += [f"--- {milter.spec} ---", milter.log()[-4000:]]
        if self.pf is not None:
            parts += ["--- Postfix ---", *self.pf.log_lines()[-80:]]
        return "\n".join(parts)


@pytest.fixture(scope="module")
def fleet(redis_server: RedisServer) -> Iterator[Fleet]:
    need_scale_tools()
    running = Fleet(redis_server)
    try:
        yield running.start()
    finally:
        running.close()


def sender(number: int) -> str:
    return f"sender{number % SENDERS}@example.net"


def test_greylisting_state_is_shared_between_instances(fleet: Fleet) -> None:
    # Straight to the instances (no HAProxy): the first sees a new triplet and defers it, the
    # other two know it at once.
    async def rcpt(milter: MilterProcess) -> bool:
        outcome = await one_message(milter.spec, "198.51.100.20", sender="<shared@example.net>",
                                    recipients=["<rcpt@example.org>"])
        return isinstance(outcome.recipients["<rcpt@example.org>"].final, Continue)

    async def scenario() -> list[bool]:
        return [await rcpt(fleet.milters[0]), await rcpt(fleet.milters[1]),
                await rcpt(fleet.milters[2])]

    assert asyncio.run(scenario()) == [False, True, True]


def test_messages_survive_an_instance_killed_and_restarted(fleet: Fleet) -> None:
    pf = fleet.pf
    assert pf is not None
    victim = fleet.milters[1]
    load = Load(pf, range(MESSAGES), sender).start()
    served_before = 0.0
    try:
        wait_for(lambda: load.accepted >= MESSAGES // 3 or bool(load.failures),
                 "a third of the messages", timeout=240)
        served_before = fleet.scrape(1).get(("milterkit_connections_total", ()), 0.0)
        assert victim.process is not None
        os.kill(victim.process.pid, signal.SIGKILL)
        victim.stop()
        fleet.haproxy.wait_states({"m2": "DOWN"})
        wait_for(lambda: load.accepted >= 2 * MESSAGES // 3 or bool(load.failures),
                 "two thirds of the messages", timeout=240)
        victim.start()
        fleet.haproxy.wait_states({"m2": "UP"})
        load.join()
    except BaseException:
        print(fleet.report())
        raise
    counts = load.counts()
    print(f"attempts: {dict(counts)}")
    assert load.failures == [], fleet.report()
    assert served_before > 0  # the victim had its share before it was killed

    deliveries = pf.wait_deliveries(MESSAGES, timeout=240)
    numbers: list[int] = []
    for delivery in deliveries:
        message = email.message_from_bytes(delivery.data)
        numbers.append(int(str(message["Subject"]).split()[-1]))
        headers = message.get_all("X-Greylist") or []
        assert len(headers) == 1, f"message {numbers[-1]}: X-Greylist {headers}"
        assert headers[0].startswith("delayed ")
    assert sorted(numbers) == list(range(MESSAGES)), "lost or duplicated messages"
    assert {d.queue_id for d in deliveries} == {o.queue_id for o in load.outcomes.values()}
    # Shared state: each triplet was deferred at most once (never once per instance).
    for sender_number in range(SENDERS):
        greylisted = sum(o.attempts.count("greylisted") for o in load.outcomes.values()
                         if o.number % SENDERS == sender_number)
        assert greylisted <= 1, f"sender {sender_number} greylisted {greylisted} times"
    assert 0 < counts["greylisted"] <= SENDERS


def test_the_metrics_report_the_verdicts_sent(fleet: Fleet) -> None:
    pf = fleet.pf
    assert pf is not None
    before = {
        "deferred": fleet.total("milterkit_verdicts_total", stage="envelope-recipient",
                                status="temporary-failure"),
        "passed": fleet.total("milterkit_verdicts_total", stage="end-of-message",
                              status="continue"),
        "messages": fleet.total("milterkit_messages_total", status="continue"),
    }
    delivered = len(pf.deliveries())
    count = 60
    # Three new triplets, 20 messages each: three deferrals, then 60 messages pass.
    load = Load(pf, range(10_000, 10_000 + count),
                lambda n: f"metrics{n % 3}@example.net", threads=6).start()
    load.join()
    assert load.failures == []
    greylisted = load.counts()["greylisted"]
    assert greylisted == 3
    pf.wait_deliveries(delivered + count, timeout=120)
    after_deferred = fleet.total("milterkit_verdicts_total", stage="envelope-recipient",
                                 status="temporary-failure")
    assert after_deferred - before["deferred"] == greylisted
    assert fleet.total("milterkit_verdicts_total", stage="end-of-message",
                       status="continue") - before["passed"] == count
    assert fleet.total("milterkit_messages_total", status="continue") - before["messages"] == count
    # The instance killed and restarted by the previous test is back in the rotation.
    assert fleet.scrape(1).get(("milterkit_connections_total", ()), 0.0) > 0


def test_draining_an_instance_as_documented_fails_no_session(fleet: Fleet) -> None:
    # docs/scaling.rst, "Draining an instance": HAProxy's drain state, then SIGTERM; the
    # sessions the instance still holds finish, no new one reaches it, nothing is refused.
    pf = fleet.pf
    assert pf is not None
    delivered = len(pf.deliveries())
    count = 300
    drained = fleet.milters[2]
    load = Load(pf, range(20_000, 20_000 + count), sender, threads=8).start()
    wait_for(lambda: load.accepted >= count // 3 or bool(load.failures), "a third", timeout=120)
    fleet.haproxy.command("set server milterkit/m3 state drain")
    fleet.haproxy.wait_states({"m3": "DRAIN"})
    assert drained.stop() == 0  # SIGTERM: a graceful shutdown, exit status 0
    wait_for(lambda: load.accepted >= 2 * count // 3 or bool(load.failures), "two thirds",
             timeout=120)
    drained.start()
    fleet.haproxy.command("set server milterkit/m3 state ready")
    fleet.haproxy.wait_states({"m3": "UP"})
    load.join()
    assert load.failures == []
    # The triplets are known from the earlier test: no deferral, and no milter failure either.
    assert dict(load.counts()) == {"accepted": count}
    pf.wait_deliveries(delivered + count, timeout=120)
    log = drained.log()
    assert "shutting down" in log or "shut down" in log
