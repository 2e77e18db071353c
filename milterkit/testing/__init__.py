"""The MTA side of the milter protocol, for testing milters without a mail server.

:class:`ServerContext` speaks the MTA's half of the protocol (sans-I/O, on the same codec as
:class:`~milterkit.ClientContext`); the drivers run it against a filter in-process or over a
socket; :mod:`milterkit.testing.pytest_plugin` offers both as pytest fixtures.
"""
