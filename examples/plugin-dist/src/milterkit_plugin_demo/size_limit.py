"""Refuse a message whose declared size (``MAIL FROM:<...> SIZE=N``) is over ``max-size``.

The entry point names this module: milterkit calls its ``setup(client)``, shows
``DESCRIPTION`` in ``milterkit filters`` and checks configured options against ``OPTIONS``.
"""

from __future__ import annotations

from typing import Any

from milterkit import Status
from milterkit.compose import FilterHost, FilterView

DESCRIPTION = "refuse MAIL FROM whose SIZE= is over max-size (552 5.3.4)"
#: Option name -> default (a configured value must have the default's type).
OPTIONS: dict[str, Any] = {"max-size": 10 * 1024 * 1024}


def declared_size(parameters: tuple[str, ...]) -> int | None:
    """The ``SIZE=`` ESMTP parameter of ``MAIL FROM`` (RFC 1870), if the client gave one."""
    for parameter in parameters:
        key, _, value = parameter.partition("=")
        if key.upper() == "SIZE" and value.isdigit():
            return int(value)
    return None


def setup(client: FilterHost) -> None:
    """Connect the check; ``client.options`` holds the configured options."""
    limit = int(client.options["max-size"])

    @client.on("envelope-from")
    def check_size(context: FilterView, sender: str) -> Status | None:
        size = declared_size(context.envelope_parameters)
        if size is not None and size > limit:
            return context.reject("552", "5.3.4", "Message size exceeds fixed limit")
        return None
