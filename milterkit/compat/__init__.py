"""Compatibility layers: run applications written for other Python milter libraries on
milterkit's runtime, unmodified.

Each flavour (``milterkit.compat.pymilter``, ...) is a module with a ``SHADOWED`` mapping from
the top-level import names the application uses to the milterkit modules that stand in for them;
:mod:`milterkit.compat.shadow` installs those names before the application's code runs, and
:mod:`milterkit.compat.threads` runs the application's blocking callbacks off the event loop.
"""
