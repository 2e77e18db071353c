"""spf-engine 3.1.0's pyspf-milter from PyPI, unmodified, behind a private Postfix on milterkit's
pymilter compat layer: an SPF pass gets its Authentication-Results header, a hard fail is
rejected at MAIL FROM. DNS is answered by a dnspython server the test runs on 127.0.0.1."""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from compatproc import CompatProcess
from dnsserver import DNSServer
from postfix import PrivatePostfix, free_port
from stack import session

pytestmark = pytest.mark.postfix

HERE = Path(__file__).resolve().parent
CLIENT = "192.0.2.10"  # the SMTP client the test claims to be (Postfix XCLIENT)
ZONE = {
    "pass.example": [f"v=spf1 ip4:{CLIENT} -all"],
    "fail.example": ["v=spf1 -all"],
}
MESSAGE = b"From: a@pass.example\r\nTo: bob@example.org\r\nSubject: spf\r\n\r\nbody\r\n"


@pytest.fixture(scope="module")
def spf() -> Iterator[tuple[PrivatePostfix, DNSServer, CompatProcess]]:
    for module in ("spf_engine", "spf", "dns"):
        if importlib.util.find_spec(module) is None:
            pytest.fail(f"{module} is not installed (.ci/run installs spf-engine and its deps)")
    with DNSServer(ZONE) as dns_server:
        # The claimed client is a "trusted" network so Postfix relays its mail to the harness.
        pf = PrivatePostfix(None, extra_main_cf={"mynetworks": "127.0.0.0/8 192.0.2.0/24"})
        port = free_port()
        conf = pf.root / "pyspf-milter.conf"
        conf.write_text(
            "debugLevel = 3\n"
            "HELO_reject = No_Check\n"
            "Mail_From_reject = Fail\n"
            f"Socket = inet:{port}@127.0.0.1\n"
            f"PidFile = {pf.root}/pyspf-milter.pid\n"
            "UserID = root\n"
            "Authserv_Id = mx.example.org\n"
        )
        env = {
            "PYTHONPATH": os.pathsep.join(
                [str(HERE / "dnsboot"), *filter(None, [os.environ.get("PYTHONPATH")])]),
            "MILTERKIT_TEST_RESOLVER": f"127.0.0.1:{dns_server.port}",
        }
        spec = f"inet:{port}@127.0.0.1"
        with CompatProcess(["pyspf-milter", str(conf)], spec, env=env) as proc:
            pf.smtpd_milters = proc.postfix_spec
            try:
                pf.start()
                yield pf, dns_server, proc
            finally:
                pf.stop()


def test_spf_pass_gets_an_authentication_results_header(
    spf: tuple[PrivatePostfix, DNSServer, CompatProcess],
) -> None:
    pf, dns_server, proc = spf
    pf.clear_deliveries()
    result = session(pf, sender="a@pass.example", message=MESSAGE,
                     xclient=f"ADDR={CLIENT} NAME=mail.pass.example")
    assert result.mail == (250, b"2.1.0 Ok"), proc.log()
    assert result.data is not None and result.data[0] == 250, proc.log()
    (delivered,) = pf.wait_delivered(1)
    headers = delivered.split(b"\n\n", 1)[0].replace(b"\n\t", b" ").replace(b"\n ", b" ")
    assert b"Authentication-Results: mx.example.org; spf=pass" in headers, delivered
    assert b"smtp.mailfrom=pass.example" in headers and b"client-ip=192.0.2.10" in headers
    assert ("pass.example.", "TXT") in dns_server.questions


def test_spf_hard_fail_is_rejected_at_mail_from(
    spf: tuple[PrivatePostfix, DNSServer, CompatProcess],
) -> None:
    pf, dns_server, proc = spf
    result = session(pf, sender="x@fail.example", message=MESSAGE,
                     xclient=f"ADDR={CLIENT} NAME=mail.fail.example")
    assert result.mail is not None and result.mail[0] == 550, proc.log()
    assert result.mail[1].startswith(b"5.7.23 "), result.mail
    assert b"fail" in result.mail[1].lower()
    assert ("fail.example.", "TXT") in dns_server.questions
