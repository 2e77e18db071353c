"""Compatibility layers: other milter libraries' APIs, implemented clean-room on milterkit.

Each sub-package provides the modules an application of that library imports; ``milterkit compat
FLAVOUR COMMAND`` runs such an application unmodified with those names shadowed.
"""
