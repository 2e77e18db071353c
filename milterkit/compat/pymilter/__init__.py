"""pymilter compatibility: clean-room ``Milter`` and ``milter`` modules on milterkit's runtime.

``milterkit compat pymilter COMMAND`` makes these importable as ``Milter`` and ``milter`` (see
:mod:`milterkit.compat.shadow`); from one's own code, :func:`install` does the same.
"""

from __future__ import annotations

#: The import names a pymilter application uses -> the milterkit modules that provide them.
SHADOWED: dict[str, str] = {
    "Milter": "milterkit.compat.pymilter.Milter",
    "milter": "milterkit.compat.pymilter.milter",
}


def install() -> None:
    """Make ``import Milter`` / ``import milter`` give milterkit's modules in this process."""
    from ..shadow import install as install_names

    install_names(SHADOWED)
