"""pymilter's numeric constants: callback return codes, action flags, protocol steps, stages.

The values are the wire protocol's and libmilter's ``mfapi.h``, which pymilter exposes as is.
"""

from __future__ import annotations

from ...protocol.constants import ActionFlag as A
from ...protocol.constants import ProtocolFlag as P

# Callback return codes (libmilter's SMFIS_*).
CONTINUE = 0
REJECT = 1
DISCARD = 2
ACCEPT = 3
TEMPFAIL = 4
SKIP = 5
NOREPLY = 6
ALL_OPTS = 10

#: The libmilter version pymilter reports having been built against (SMFI_VERSION 1.0.1).
VERSION = 0x01000001

# Actions (SMFIF_*).
ADDHDRS = int(A.ADD_HEADERS)
CHGBODY = int(A.CHANGE_BODY)
MODBODY = CHGBODY
ADDRCPT = int(A.ADD_RECIPIENT)
DELRCPT = int(A.DELETE_RECIPIENT)
CHGHDRS = int(A.CHANGE_HEADERS)
QUARANTINE = int(A.QUARANTINE)
CHGFROM = int(A.CHANGE_FROM)
ADDRCPT_PAR = int(A.ADD_RECIPIENT_WITH_PARAMETERS)
SETSYMLIST = int(A.SET_SYMBOL_LIST)
V1_ACTS = ADDHDRS | CHGBODY | ADDRCPT | DELRCPT
V2_ACTS = V1_ACTS | CHGHDRS | QUARANTINE
CURR_ACTS = V2_ACTS | CHGFROM | ADDRCPT_PAR | SETSYMLIST

# Protocol steps (SMFIP_*).
P_NOCONNECT = int(P.NO_CONNECT)
P_NOHELO = int(P.NO_HELO)
P_NOMAIL = int(P.NO_ENVELOPE_FROM)
P_NORCPT = int(P.NO_ENVELOPE_RECIPIENT)
P_NOBODY = int(P.NO_BODY)
P_NOHDRS = int(P.NO_HEADERS)
P_NOEOH = int(P.NO_END_OF_HEADER)
P_NR_HDR = int(P.NO_REPLY_HEADER)
P_NOHREPL = P_NR_HDR
P_NOUNKNOWN = int(P.NO_UNKNOWN)
P_NODATA = int(P.NO_DATA)
P_SKIP = int(P.SKIP)
P_RCPT_REJ = int(P.ENVELOPE_RECIPIENT_REJECTED)
P_NR_CONN = int(P.NO_REPLY_CONNECT)
P_NR_HELO = int(P.NO_REPLY_HELO)
P_NR_MAIL = int(P.NO_REPLY_ENVELOPE_FROM)
P_NR_RCPT = int(P.NO_REPLY_ENVELOPE_RECIPIENT)
P_NR_DATA = int(P.NO_REPLY_DATA)
P_NR_UNKN = int(P.NO_REPLY_UNKNOWN)
P_NR_EOH = int(P.NO_REPLY_END_OF_HEADER)
P_NR_BODY = int(P.NO_REPLY_BODY)
P_HDR_LEADSPC = int(P.HEADER_LEADING_SPACE)

# Macro stages for setsymlist (SMFIM_*).
M_CONNECT = 0
M_HELO = 1
M_ENVFROM = 2
M_ENVRCPT = 3
M_DATA = 4
M_EOM = 5
M_EOH = 6

__all__ = [
    "CONTINUE", "REJECT", "DISCARD", "ACCEPT", "TEMPFAIL", "SKIP", "NOREPLY", "ALL_OPTS",
    "VERSION", "ADDHDRS", "CHGBODY", "MODBODY", "ADDRCPT", "DELRCPT", "CHGHDRS", "QUARANTINE",
    "CHGFROM", "ADDRCPT_PAR", "SETSYMLIST", "V1_ACTS", "V2_ACTS", "CURR_ACTS", "P_NOCONNECT",
    "P_NOHELO", "P_NOMAIL", "P_NORCPT", "P_NOBODY", "P_NOHDRS", "P_NOEOH", "P_NR_HDR",
    "P_NOHREPL", "P_NOUNKNOWN", "P_NODATA", "P_SKIP", "P_RCPT_REJ", "P_NR_CONN", "P_NR_HELO",
    "P_NR_MAIL", "P_NR_RCPT", "P_NR_DATA", "P_NR_UNKN", "P_NR_EOH", "P_NR_BODY", "P_HDR_LEADSPC",
    "M_CONNECT", "M_HELO", "M_ENVFROM", "M_ENVRCPT", "M_DATA", "M_EOM", "M_EOH",
]
