"""Per-stage macro tables with a merged view, cleared where libmilter clears them."""

from __future__ import annotations

from collections.abc import Iterator, Mapping

from .protocol.constants import MacroStage

#: Stage order of the merged view: later stages shadow earlier ones.
STAGE_ORDER = b"CHMRTLNBEU"
#: What each command clears when it arrives: the macros of every later SMTP stage.
_CLEARS: dict[int, bytes] = {
    ord("C"): b"HMRTLNBEU",
    ord("H"): b"MRTLNBE",
    ord("M"): b"RTLNBE",
    ord("R"): b"TLNBE",
}
_MESSAGE_STAGES = b"MRTLNBE"
_UNKNOWN = ord("U")


def normalize_name(name: str) -> str:
    """``{name}`` and ``name`` are the same macro; store and look up without braces."""
    if len(name) > 2 and name[0] == "{" and name[-1] == "}":
        return name[1:-1]
    return name


class MacroTable(Mapping[str, str]):
    """Macros the MTA defined, one table per command stage, read as one merged mapping.

    ``table["i"]`` and ``table["{i}"]`` find the same value; a value defined for a later stage
    shadows an earlier one. ``by_stage(b"M")`` gives one stage's own table.
    """

    __slots__ = ("_stages",)

    def __init__(self) -> None:
        self._stages: dict[int, dict[str, str]] = {}

    def define(self, stage: bytes, macros: Mapping[str, str]) -> None:
        """Replace the macros of ``stage`` (a command byte) with ``macros``."""
        # Postfix names most macros with braces; strip them inline (this runs per D packet).
        self._stages[stage[0]] = {
            (k[1:-1] if k[:1] == "{" and k[-1:] == "}" and len(k) > 2 else k): v
            for k, v in macros.items()
        }

    def clear_after(self, command: bytes) -> None:
        """Forget the stages ``command`` supersedes (C, H, M and R clear every later stage).

        The macros of an UNKNOWN command last only until the next command: called with any
        command but ``U`` (and ``D``, which is not a command of its own), they go.
        """
        stages = self._stages
        if not stages:
            return
        code = command[0]
        if code != _UNKNOWN:
            stages.pop(_UNKNOWN, None)
        later = _CLEARS.get(code)
        if later:
            for stage in later:
                stages.pop(stage, None)

    def clear_message(self) -> None:
        """Forget the macros of MAIL and every later stage (after ABORT)."""
        for stage in _MESSAGE_STAGES:
            self._stages.pop(stage, None)

    def clear(self) -> None:
        self._stages.clear()

    def by_stage(self, stage: bytes) -> dict[str, str]:
        """A copy of one stage's macros (empty if none were defined)."""
        return dict(self._stages.get(stage[0], {}))

    def stages(self) -> list[bytes]:
        """The stages that have macros now, in stage order."""
        return [bytes([s]) for s in STAGE_ORDER if s in self._stages]

    def get(self, name: str, default: str | None = None) -> str | None:  # type: ignore[override]
        key = normalize_name(name)
        for stage in reversed(STAGE_ORDER):
            table = self._stages.get(stage)
            if table is not None and key in table:
                return table[key]
        return default

    def __getitem__(self, name: str) -> str:
        value = self.get(name)
        if value is None:
            raise KeyError(name)
        return value

    def _merged(self) -> dict[str, str]:
        merged: dict[str, str] = {}
        for stage in STAGE_ORDER:
            table = self._stages.get(stage)
            if table:
                merged.update(table)
        return merged

    def __iter__(self) -> Iterator[str]:
        return iter(self._merged())

    def __len__(self) -> int:
        return len(self._merged())

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and self.get(name) is not None

    def __repr__(self) -> str:
        return f"MacroTable({self._merged()!r})"


class MacrosRequests(dict[MacroStage, list[str]]):
    """The macros a milter asks the MTA to send, per stage (libmilter's ``smfi_setsymlist``).

    Sent in the negotiate reply when the MTA offers SETSYMLIST; a requested list replaces the
    MTA's configured list for that stage.
    """

    def set_symbols(self, stage: MacroStage | int | str, *names: str) -> None:
        """Ask for ``names`` at ``stage`` (a :class:`MacroStage`, its number or its name)."""
        self[_stage(stage)] = list(names)

    def get_symbols(self, stage: MacroStage | int | str) -> list[str]:
        return list(self.get(_stage(stage), []))

    def merge(self, other: Mapping[MacroStage, list[str]]) -> None:
        """Add ``other``'s names after ours, without duplicates."""
        for stage, names in other.items():
            mine = self.setdefault(MacroStage(stage), [])
            mine.extend(name for name in names if name not in mine)


def _stage(stage: MacroStage | int | str) -> MacroStage:
    if isinstance(stage, str):
        try:
            return MacroStage[stage.upper().replace("-", "_")]
        except KeyError:
            raise ValueError(f"unknown macro stage {stage!r}") from None
    return MacroStage(stage)
