"""The capture file format: one milter connection, both directions, with timestamps.

A file starts with one text line, ``milterkit-capture 1 {json}\\n``: the magic, the format
version and a JSON object of metadata (``created``, ``listen``, ``upstream``, ``peer``,
``connection``; readers ignore keys they do not know). Records follow until the end of the file,
each a fixed 13-byte head and the data:

======  ======  ====================================================================
offset  size    field
======  ======  ====================================================================
0       1       kind: ``m`` bytes from the MTA, ``f`` bytes from the filter (milter),
                ``M`` the MTA closed its side, ``F`` the filter closed its side
1       8       time: seconds since the Unix epoch, IEEE 754 double, big-endian
9       4       length of the data, unsigned, big-endian (0 for ``M`` and ``F``)
13      length  the bytes exactly as they crossed the proxy
======  ======  ====================================================================

Records are in the order the proxy saw them; the ``m`` data joined is the MTA-to-milter byte
stream, the ``f`` data joined the milter's. A file without the magic line is read as a raw
MTA-to-milter stream (a ``.bin``), so ``replay`` takes both. See ``docs/capture-format.rst``.
"""

from __future__ import annotations

import json
import struct
import time
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any, BinaryIO

MAGIC = b"milterkit-capture"
VERSION = 1
#: Record kinds.
FROM_MTA = b"m"
FROM_MILTER = b"f"
MTA_CLOSED = b"M"
MILTER_CLOSED = b"F"
KINDS = frozenset({FROM_MTA, FROM_MILTER, MTA_CLOSED, MILTER_CLOSED})
_HEAD = struct.Struct(">cdI")
#: Refuse a record that claims more than this (a corrupt file, not a real capture).
MAX_RECORD = 64 * 1024 * 1024


class CaptureError(ValueError):
    """A capture file that cannot be read (bad magic line, truncated or unknown record)."""


@dataclass(frozen=True, slots=True)
class Record:
    """One record: its kind (``m``, ``f``, ``M``, ``F``), its time and its bytes."""

    kind: bytes
    time: float
    data: bytes = b""


@dataclass(slots=True)
class Capture:
    """A whole capture: metadata and records (or, for a raw file, one ``m`` record)."""

    meta: dict[str, Any] = field(default_factory=dict)
    records: list[Record] = field(default_factory=list)
    #: False when the file was a raw MTA-to-milter stream with no milter side.
    has_milter_side: bool = True

    @property
    def mta_bytes(self) -> bytes:
        """Everything the MTA sent, in order."""
        return b"".join(r.data for r in self.records if r.kind == FROM_MTA)

    @property
    def milter_bytes(self) -> bytes:
        """Everything the milter sent, in order."""
        return b"".join(r.data for r in self.records if r.kind == FROM_MILTER)

    @property
    def start(self) -> float:
        """Time of the first record (0.0 when there is none)."""
        return self.records[0].time if self.records else 0.0


def encode_header(meta: dict[str, Any]) -> bytes:
    """The magic line for ``meta``."""
    text = json.dumps(meta, sort_keys=True, separators=(",", ":"))
    return MAGIC + b" " + str(VERSION).encode() + b" " + text.encode("utf-8") + b"\n"


def encode_record(kind: bytes, when: float, data: bytes = b"") -> bytes:
    """One record's bytes."""
    if kind not in KINDS:
        raise ValueError(f"unknown record kind {kind!r}")
    return _HEAD.pack(kind, when, len(data)) + data


class CaptureWriter:
    """Writes one capture file; each record is flushed at once, so a crash loses nothing."""

    def __init__(self, path: str | Path, meta: dict[str, Any] | None = None) -> None:
        self.path = Path(path)
        self._file: BinaryIO = open(self.path, "xb")  # closed by close()
        # Record times are the wall clock at creation plus monotonic time since, so a clock
        # step (NTP, DST on a badly set host) can never make them run backwards.
        self._created = time.time()
        self._origin = time.monotonic()
        self._file.write(encode_header({"created": self._created, **(meta or {})}))
        self._file.flush()

    def now(self) -> float:
        """The time a record made now gets: seconds since the epoch, never decreasing."""
        return self._created + (time.monotonic() - self._origin)

    def record(self, kind: bytes, data: bytes = b"", when: float | None = None) -> None:
        """Append a record (``when`` defaults to :meth:`now`)."""
        self._file.write(encode_record(kind, self.now() if when is None else when, data))
        self._file.flush()

    def close(self) -> None:
        """Close the file."""
        self._file.close()

    def __enter__(self) -> CaptureWriter:
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 traceback: TracebackType | None) -> None:
        self.close()


def parse_capture(data: bytes) -> Capture:
    """Read a capture from bytes; a stream without the magic line is a raw ``.bin``."""
    if not data.startswith(MAGIC + b" "):
        return Capture({"raw": True}, [Record(FROM_MTA, 0.0, data)] if data else [], False)
    end = data.find(b"\n")
    if end < 0:
        raise CaptureError("capture header line has no end")
    parts = data[:end].split(b" ", 2)
    if len(parts) != 3 or not parts[1].isdigit():
        raise CaptureError(f"malformed capture header line: {data[:end][:80]!r}")
    if int(parts[1]) != VERSION:
        raise CaptureError(f"capture format version {int(parts[1])} is not supported "
                           f"(this milterkit reads version {VERSION})")
    try:
        meta = json.loads(parts[2].decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CaptureError(f"capture metadata is not JSON: {exc}") from None
    if not isinstance(meta, dict):
        raise CaptureError("capture metadata must be a JSON object")
    records: list[Record] = []
    offset = end + 1
    while offset < len(data):
        if len(data) - offset < _HEAD.size:
            raise CaptureError(f"capture ends inside a record head at byte {offset}")
        kind, when, length = _HEAD.unpack_from(data, offset)
        if kind not in KINDS:
            raise CaptureError(f"unknown record kind {kind!r} at byte {offset}")
        if length > MAX_RECORD:
            raise CaptureError(f"record at byte {offset} claims {length} bytes")
        start = offset + _HEAD.size
        if start + length > len(data):
            raise CaptureError(f"capture ends inside the record at byte {offset}")
        records.append(Record(kind, when, data[start : start + length]))
        offset = start + length
    return Capture(meta, records, True)


def read_capture(path: str | Path) -> Capture:
    """Read a capture file (or a raw ``.bin`` of MTA-to-milter bytes)."""
    return parse_capture(Path(path).read_bytes())
