"""Three filters composed in Python, run offline against two messages: what
``milterkit run --config`` does, spelled out with :mod:`milterkit.compose`.

- ``reject_sender.py`` (an example file, loaded by :func:`~milterkit.compose.load_unit`);
- ``Greeter``, a session class: at end-of-message it adds ``X-Greeted: <helo name>``, and it
  applies only to SMTP clients outside 192.0.2.0/24 and only to unauthenticated senders;
- ``shadow``, a stricter sender check in *evaluation mode*: its verdicts are logged, not sent.

Run it:  python examples/compose_filters.py
It prints each message's verdict and each filter's verdict for it, then the ranking.
"""

from __future__ import annotations

import logging
from pathlib import Path

from milterkit import Status
from milterkit.compose import (
    DEFAULT_FILTER_TIMEOUT,
    ENTRY_POINT_GROUP,
    RANK,
    Authenticated,
    Change,
    Composer,
    Condition,
    ConditionError,
    FilterHost,
    FilterLoadError,
    FilterSpec,
    FilterUnit,
    FilterView,
    RemoteNetwork,
    Unauthenticated,
    combine,
    compose,
    installed_filters,
    is_authenticated,
    load_unit,
    make_condition,
    unit_from_object,
)
from milterkit.testing import InProcess, Message

HERE = Path(__file__).resolve().parent


class Greeter:
    """add X-Greeted: <helo name> at end-of-message"""

    def __init__(self, context: FilterView) -> None:
        self.context = context

    def end_of_message(self, chunk: bytes) -> None:
        self.context.add_header("X-Greeted", self.context.helo_name or "stranger")
        # The changes of the filters before this one, applied before its own:
        earlier: tuple[tuple[str, Change], ...] = self.context.earlier_changes
        assert all(name != "greeter" for name, _ in earlier)


def shadow_setup(client: FilterHost) -> None:
    """refuse every sender that did not authenticate (being evaluated)"""

    def check(context: FilterView, sender: str) -> Status | None:
        if not is_authenticated(context):
            return context.reject("550", "5.7.1", "Authenticate first")
        return None

    client.connect("envelope-from", check)


class AlwaysApplies(Condition):
    """One's own condition: a stopper method per event; True detaches the filter."""

    name = "always-applies"

    def helo(self, context: FilterView, fqdn: str) -> bool:
        return False


def build() -> Composer:
    """The composition, built from units and specs."""
    unit: FilterUnit = load_unit(str(HERE / "reject_sender.py"))
    greeter = unit_from_object("greeter", Greeter, "examples/compose_filters.py")
    conditions = [RemoteNetwork(["192.0.2.0/24"]), Unauthenticated(), AlwaysApplies(),
                  make_condition({"name": "remote-network", "trusted-networks": ["::1/128"]})]
    shadow = unit_from_object("shadow", shadow_setup, "examples/compose_filters.py")
    return Composer([
        FilterSpec(unit, fallback=Status.ACCEPT),
        FilterSpec(greeter, conditions=conditions, timeout=DEFAULT_FILTER_TIMEOUT),
        FilterSpec(shadow, evaluation=True),
    ])


def main() -> None:
    logging.basicConfig(level=logging.WARNING)
    session = InProcess(build())
    results = []
    session_client = session.client
    assert session_client is not None
    session_client.connect("message-processed",
                           lambda context, result: results.append(result))
    outcome = session.run([
        Message.build(sender="alice@example.net", headers=[("Subject", "hello")]),
        Message.build(sender="mallory@spam.example", headers=[("Subject", "buy")]),
    ])
    for message in outcome.messages:
        print(f"{message.original.sender}: {message.verdict} "
              f"(X-Greeted: {message.message.header('X-Greeted')})")
    for result in results:
        print(f"  {result.envelope_from}: {result.filter_verdicts}")
    # milter-manager's ranking, strongest first, and how two answers combine:
    print(" > ".join(status.name for status in sorted(RANK, key=RANK.__getitem__,
                                                      reverse=True)))
    print(combine([], [Status.SKIP], accepted=True).name,
          combine([Status.TEMPORARY_FAILURE], [], accepted=False).name)
    # Other ways in: by name (entry points of ENTRY_POINT_GROUP, files, modules) ...
    two = compose(str(HERE / "add_header.py"), str(HERE / "reject_sender.py"))
    print([spec.label for spec in two.specs])
    print(f"{len(installed_filters())} filter(s) installed under {ENTRY_POINT_GROUP}")
    # ... and mistakes are clear errors.
    for attempt in (lambda: load_unit("no_such_filter_xyz"),
                    lambda: make_condition("no-such-condition")):
        try:
            attempt()
        except (FilterLoadError, ConditionError) as exc:
            print(type(exc).__name__)
    print(Authenticated().stoppers().keys() == {"envelope-from"})


if __name__ == "__main__":
    main()
