"""How a particular MTA speaks the protocol: which macros, when ABORT, how IPv6 is written.

Two profiles ship, from protocol.md part 2: :data:`POSTFIX` (macros before every event, ABORT
after every message, bare IPv6 addresses) and :data:`SENDMAIL` (``IPv6:`` prefix, no ABORT after
an early verdict, ``p`` and ``q`` only at end-of-message).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from ..protocol.constants import CHUNK_SIZE, ProtocolFlag

P = ProtocolFlag

#: What each protocol version offers (Postfix's ``milter_protocol`` settings, protocol.md 1.4).
PROTOCOL_OFFER_BY_VERSION: dict[int, ProtocolFlag] = {
    2: P(0x7F),
    3: P(0x17F),
    4: P(0x37F),
    6: P(0x1FFFFF),
}


def offered_protocol(version: int) -> ProtocolFlag:
    """The protocol steps an MTA offers at ``version`` (5 is read as 4, as Postfix does)."""
    best = max((v for v in PROTOCOL_OFFER_BY_VERSION if v <= version), default=2)
    return PROTOCOL_OFFER_BY_VERSION[best]


@dataclass(frozen=True, slots=True)
class Profile:
    """The wire habits of one MTA."""

    name: str
    #: Send a ``D`` before every event even when it carries no macro (Postfix), and before
    #: every header and body chunk; else only when there are macros (Sendmail).
    macros_before_every_event: bool
    #: Send ABORT after every message, whatever its verdict (Postfix); else only when a
    #: message ends without a verdict from the milter (Sendmail).
    abort_after_message: bool
    #: How a ``6`` family address is written in CONNECT (Sendmail: ``IPv6:``).
    ipv6_prefix: str
    #: Whether ``p`` and ``q`` are taken before end-of-message (Postfix yes, Sendmail no).
    progress_anywhere: bool
    quarantine_anywhere: bool
    #: Whether a deleted header stops counting for later CHGHEADER indexes (Postfix).
    renumber_deleted_headers: bool
    #: Whether protocol steps beyond the offer are refused (Sendmail) or tolerated (Postfix).
    refuse_extra_steps: bool
    #: Whether QUIT is sent after a connection-level verdict; Postfix just closes the socket.
    quit_after_connection_verdict: bool
    #: Whether the queue id (``i``) exists at MAIL (Sendmail) or only after the first
    #: accepted RCPT (Postfix).
    queue_id_at_mail: bool
    #: Default macro names per command byte (``C H M R T N E U``), in the MTA's order.
    macro_names: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    chunk_size: int = CHUNK_SIZE
    #: Whether ``4`` (shutdown) is a verdict (Postfix: 421 and disconnect) or bogus (Sendmail).
    takes_shutdown: bool = True


POSTFIX = Profile(
    name="postfix",
    macros_before_every_event=True,
    abort_after_message=True,
    ipv6_prefix="",
    progress_anywhere=True,
    quarantine_anywhere=True,
    renumber_deleted_headers=True,
    refuse_extra_steps=False,
    quit_after_connection_verdict=False,
    queue_id_at_mail=False,
    macro_names={
        "C": ("j", "{daemon_name}", "{daemon_addr}", "v", "_"),
        "H": ("{tls_version}", "{cipher}", "{cipher_bits}", "{cert_subject}", "{cert_issuer}"),
        "M": ("i", "{auth_type}", "{auth_authen}", "{auth_author}", "{mail_addr}", "{mail_host}",
              "{mail_mailer}"),
        "R": ("i", "{rcpt_addr}", "{rcpt_host}", "{rcpt_mailer}"),
        "T": ("i",),
        "N": ("i",),
        "E": ("i",),
        "U": (),
    },
)

SENDMAIL = Profile(
    name="sendmail",
    macros_before_every_event=False,
    abort_after_message=False,
    ipv6_prefix="IPv6:",
    progress_anywhere=False,
    quarantine_anywhere=False,
    renumber_deleted_headers=False,
    refuse_extra_steps=True,
    quit_after_connection_verdict=True,
    queue_id_at_mail=True,
    takes_shutdown=False,
    macro_names={
        "C": ("j", "_", "{daemon_name}", "{if_name}", "{if_addr}"),
        "H": ("{tls_version}", "{cipher}", "{cipher_bits}", "{cert_subject}", "{cert_issuer}"),
        "M": ("i", "{auth_type}", "{auth_authen}", "{auth_ssf}", "{auth_author}",
              "{mail_mailer}", "{mail_host}", "{mail_addr}"),
        "R": ("{rcpt_mailer}", "{rcpt_host}", "{rcpt_addr}"),
        "T": (),
        "N": (),
        "E": ("{msg_id}",),
        "U": (),
    },
)

PROFILES: dict[str, Profile] = {POSTFIX.name: POSTFIX, SENDMAIL.name: SENDMAIL}


def get_profile(name: str | Profile) -> Profile:
    """A profile by name (``"postfix"``, ``"sendmail"``) or the profile itself."""
    if isinstance(name, Profile):
        return name
    try:
        return PROFILES[name.lower()]
    except KeyError:
        raise ValueError(f"unknown MTA profile {name!r} (known: {', '.join(PROFILES)})") from None
