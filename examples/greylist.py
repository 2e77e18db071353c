"""Greylisting: the first attempt of every new (client network, sender, recipient) triplet is
deferred with ``451 4.7.1``; a retry after ``GREYLIST_DELAY`` seconds (default 300) passes, and
so does every later message of that triplet. Real MTAs retry; most spam engines do not.

- Authenticated senders (the ``{auth_authen}`` macro, which the filter asks the MTA for at
  negotiation) are ACCEPTed at ``MAIL FROM``: no greylisting, no further filtering.
- Senders in ``BLOCKED_SENDERS`` are DISCARDed: the MTA says "250 OK" and drops the message,
  so the sender learns nothing.
- A message that waited gets ``X-Greylist: delayed N seconds by milterkit-greylist VERSION``,
  if the MTA lets the filter add headers; the log line names its queue id (the ``i`` macro,
  also asked for at negotiation).

The deferral text comes from ``GREYLIST_REPLY`` and is checked when the filter starts, so a
text the MTA would refuse stops the start-up instead of failing at the first new triplet.
The triplets live in a :class:`milterkit.store.Store` named by ``GREYLIST_STORE``: ``memory:``
(the default: one process, forgotten at a restart) or ``redis://HOST:PORT/DB``, shared by
every instance behind a load balancer (``pip install 'milterkit[redis]'``, docs/scaling.rst).
The first sighting of a triplet is stored atomically (:meth:`~milterkit.store.Store.add`), so
two instances racing on a new triplet agree on when it was first seen; a triplet is
forgotten ``GREYLIST_TTL`` seconds (default 36 days) after it was first seen. If the store
fails, the handler raises and the Client's exception policy defers the recipient (451).

Run it:  GREYLIST_DELAY=300 GREYLIST_STORE=redis://127.0.0.1:6379/0 \
         milterkit run examples/greylist.py
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable

import milterkit
from milterkit import (
    ACCEPT,
    ALL_OPTIONS,
    DEFAULT,
    DISCARD,
    NOT_CHANGE,
    TEMPFAIL,
    TEMPORARY_FAILURE,
    ActionError,
    Client,
    ClientContext,
    MacrosRequests,
    MacroStage,
    MacroTable,
    Option,
    ReplyError,
    SocketAddress,
    Status,
    format_reply,
)
from milterkit.store import MemoryStore, Store, StoreError, open_store

log = logging.getLogger("greylist")

BLOCKED_SENDERS = frozenset({"<bulk@spam.example>"})
DEFAULT_REPLY = "Greylisted, please try again in {delay} seconds"
#: How long a triplet is remembered, in seconds.
DEFAULT_TTL = 36 * 24 * 3600.0


def network_of(address: SocketAddress | None, hostname: str) -> str:
    """The sending network: a /24 for IPv4, because a retry often comes from a sibling host of
    the same outgoing pool; the whole address otherwise (or the host name, for a unix socket)."""
    if address is None or address.address is None:
        return hostname
    if address.family == "4":
        return address.address.rpartition(".")[0] + ".0/24"
    return address.address


def authenticated_user(macros: MacroTable) -> str | None:
    """The SMTP AUTH login name, if the client authenticated (Postfix and Sendmail both send
    an empty ``{auth_authen}`` when it did not)."""
    return macros.get("auth_authen") or None


class Greylist:
    """The filter's handlers; the triplets seen so far are in ``store`` (a
    :class:`~milterkit.store.MemoryStore` unless given), each under
    ``greylist:NETWORK SENDER RECIPIENT`` with the time it was first seen.

    ``clock`` returns seconds (``time.time`` by default; a test passes its own): instances that
    share a store must share a clock too, which NTP gives. The reply text is validated here,
    with :func:`milterkit.format_reply`, the same check ``set_reply`` makes.
    """

    def __init__(self, delay: float = 300.0, reply: str = DEFAULT_REPLY,
                 clock: Callable[[], float] = time.time, store: Store | None = None,
                 ttl: float = DEFAULT_TTL) -> None:
        self.delay = delay
        self.reply = reply.format(delay=round(delay))
        self.clock = clock
        self.store: Store = store if store is not None else MemoryStore()
        self.ttl = ttl
        #: How many recipients were deferred so far.
        self.deferred = 0
        # Raises ReplyError now (at start-up) for a text no MTA would take.
        format_reply("451", "4.7.1", self.reply)

    def install(self, client: Client) -> None:
        """Connect the handlers to ``client``."""
        client.connect("negotiate", self.request_macros)
        client.connect("connect", self.remember_network)
        client.connect("envelope-from", self.check_sender)
        client.connect("envelope-recipient", self.check_triplet)
        client.connect("envelope-recipient-response", self.count)
        client.connect("end-of-message", self.add_header)

    def request_macros(self, context: ClientContext, option: Option,
                       requests: MacrosRequests) -> Status:
        # A requested list replaces the MTA's configured one for that stage: ask for all we read.
        requests.set_symbols(MacroStage.ENVELOPE_FROM, "{auth_authen}")
        requests.set_symbols(MacroStage.END_OF_MESSAGE, "i")
        # The default actions and steps (what the MTA offers, minus events nobody handles) fit.
        return ALL_OPTIONS

    def remember_network(self, context: ClientContext, hostname: str,
                         address: SocketAddress) -> None:
        context.connection_data["network"] = network_of(address, hostname)

    def check_sender(self, context: ClientContext, sender: str) -> Status:
        user = authenticated_user(context.macros)
        if user is not None:
            log.info("[%s] %s authenticated as %s: accepted", context.tag, sender, user)
            return ACCEPT  # the whole message, without asking any later handler
        if sender.lower() in BLOCKED_SENDERS:
            return DISCARD
        return NOT_CHANGE  # no opinion: the recipients decide

    async def first_seen(self, network: str, sender: str, recipient: str) -> float | None:
        """When the triplet was first seen; None (and remembered as seen now) if never."""
        key = f"greylist:{network} {sender.lower()} {recipient.lower()}"
        now = self.clock()
        stored = await self.store.add(key, repr(now), ttl=self.ttl)
        return None if stored is None else float(stored)

    async def check_triplet(self, context: ClientContext, recipient: str) -> Status:
        network = context.connection_data.get("network", "unknown")
        sender = context.message_result.envelope_from if context.message_result else ""
        first = await self.first_seen(network, sender or "", recipient)
        now = self.clock()
        if first is None or now - first < self.delay:
            context.set_reply("451", "4.7.1", self.reply)
            return TEMPFAIL
        # Remember the longest wait of the message's recipients for its X-Greylist header.
        context.shelf["waited"] = max(context.shelf.get("waited", 0.0), now - first)
        return DEFAULT

    def count(self, context: ClientContext, status: Status) -> None:
        # A response handler sees what goes on the wire, whichever handler decided it.
        if status is TEMPORARY_FAILURE:
            self.deferred += 1

    def add_header(self, context: ClientContext, chunk: bytes) -> None:
        waited = context.shelf.get("waited")
        if waited is None:
            return
        value = f"delayed {round(waited)} seconds by milterkit-greylist {milterkit.__version__}"
        try:
            context.add_header("X-Greylist", value)
        except ActionError:
            # The MTA did not offer ADD_HEADERS: the header is a courtesy, the mail still goes.
            log.debug("[%s] X-Greylist not added: the MTA does not allow it", context.tag)
        log.info("[%s] queue id %s passed greylisting after %d s", context.tag,
                 context.macros.get("i", "?"), round(waited))


def from_environment() -> Greylist:
    """A Greylist configured by ``GREYLIST_DELAY``, ``GREYLIST_REPLY``, ``GREYLIST_STORE`` and
    ``GREYLIST_TTL``."""
    delay = float(os.environ.get("GREYLIST_DELAY", "300"))
    text = os.environ.get("GREYLIST_REPLY", DEFAULT_REPLY)
    ttl = float(os.environ.get("GREYLIST_TTL", str(DEFAULT_TTL)))
    try:
        store = open_store(os.environ.get("GREYLIST_STORE", "memory:"))
    except StoreError as exc:
        raise SystemExit(f"GREYLIST_STORE: {exc}") from None
    try:
        return Greylist(delay, text, store=store, ttl=ttl)
    except ReplyError as exc:
        raise SystemExit(f"GREYLIST_REPLY cannot be sent to an SMTP client: {exc}") from None


def setup(client: Client) -> None:
    """Connect a greylist configured from the environment to ``client``."""
    greylist = from_environment()
    log.info("greylisting on milterkit %s: delay %g s, triplets in %r", milterkit.__version__,
             greylist.delay, greylist.store)
    greylist.install(client)


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO)
    main = Client()
    setup(main)
    main.run()
