"""Point dnspython's default resolver at the test's DNS server, before any application code.

The SPF test puts this directory on PYTHONPATH of the ``milterkit compat`` process and sets
``MILTERKIT_TEST_RESOLVER=127.0.0.1:PORT``. dnspython reads only /etc/resolv.conf (no
environment override), and pyspf uses dnspython's module-level ``dns.resolver.query``, i.e. the
default resolver: replacing that one object is enough, and the application stays unmodified.
"""

import os

_target = os.environ.get("MILTERKIT_TEST_RESOLVER")
if _target:
    import dns.resolver

    _host, _, _port = _target.rpartition(":")
    _resolver = dns.resolver.Resolver(configure=False)
    _resolver.nameservers = [_host]
    _resolver.port = int(_port)
    _resolver.timeout = _resolver.lifetime = 5.0
    dns.resolver.default_resolver = _resolver
