"""Compare what the platform concluded about a simulated week with the truth (pure)."""

from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Final

from wangge.simulation.truth import ExpectedPatrol, Truth, TruthEntry

ABSENT: Final = "absent"
"""The actual status of a (worker, grid) the platform has no status for."""

PairKey = tuple[str, str]


@dataclass(frozen=True)
class ObservedPatrol:
    """A patrol as the platform stored it."""

    start: datetime
    end: datetime
    checkins: int
    valid: bool
    counted: bool
    reason: str


@dataclass(frozen=True)
class ObservedStatus:
    """A (worker, grid)'s status, counted and required patrols as the platform reports them."""

    status: str
    counted: int
    required: int


@dataclass(frozen=True)
class PlatformWeek:
    """What the platform holds about the truth's workers for the week."""

    #: From the read side as of the week's end (compliance_report).
    statuses: Mapping[PairKey, ObservedStatus]
    #: Stored patrols of the week, per (worker, grid), any grid.
    patrols: Mapping[PairKey, Sequence[ObservedPatrol]]
    #: The engine's own recorded status (patrol_weeks), per (worker, grid).
    engine: Mapping[PairKey, str]
    #: The engine's event-time watermark, None before its first batch.
    watermark: datetime | None
    #: Distinct check-ins per worker in the week's reading window, and those marked late.
    checkins: Mapping[str, int]
    late: Mapping[str, int]


@dataclass(frozen=True)
class Disagreement:
    """One way the platform differs from the truth, with why it matters."""

    worker_id: str
    grid_code: str
    what: str
    expected: str
    actual: str
    reason: str


@dataclass(frozen=True)
class Comparison:
    """Expected against actual statuses, and every disagreement."""

    confusion: Counter[tuple[str, str]]
    disagreements: list[Disagreement]
    entries: int
    engine_compared: bool
    notes: list[str] = field(default_factory=list)

    @property
    def agrees(self) -> bool:
        """No disagreement at all."""
        return not self.disagreements


def _hm(t: datetime, truth: Truth) -> str:
    return t.astimezone(truth.as_of.tzinfo).strftime("%a %H:%M:%S")


def _describe(p: ExpectedPatrol | ObservedPatrol, truth: Truth) -> str:
    return f"{_hm(p.start, truth)}–{_hm(p.end, truth)}, {p.checkins} check-ins, {p.reason}"


def _patrol_disagreements(
    entry: TruthEntry, observed: Sequence[ObservedPatrol], truth: Truth
) -> list[Disagreement]:
    found = {p.start: p for p in observed}
    out = []

    def add(what: str, expected: str, actual: str, reason: str) -> None:
        out.append(Disagreement(entry.worker_id, entry.grid_code, what, expected, actual, reason))

    for patrol in entry.patrols:
        seen = found.pop(patrol.start, None)
        if seen is None:
            add("patrol", _describe(patrol, truth), ABSENT, "expected patrol not stored")
            continue
        fields = ("end", "checkins", "valid", "counted", "reason")
        differing = [f for f in fields if getattr(patrol, f) != getattr(seen, f)]
        if differing:
            add(
                "patrol",
                _describe(patrol, truth),
                _describe(seen, truth),
                f"stored patrol differs in {', '.join(differing)}",
            )
    for seen in found.values():
        add("patrol", ABSENT, _describe(seen, truth), "patrol stored but not expected")
    return out


def _entry_disagreements(
    entry: TruthEntry, platform: PlatformWeek, truth: Truth, engine_compared: bool
) -> list[Disagreement]:
    out: list[Disagreement] = []

    def add(what: str, expected: object, actual: object, reason: str) -> None:
        out.append(
            Disagreement(entry.worker_id, entry.grid_code, what, str(expected), str(actual), reason)
        )

    key = (entry.worker_id, entry.grid_code)
    seen = platform.statuses.get(key)
    if seen is None:
        add("status", entry.status, ABSENT, "the platform reports no status for this pair")
    else:
        if seen.status != entry.status:
            add(
                "status",
                entry.status,
                seen.status,
                f"counted {seen.counted} of {seen.required} required; "
                f"expected {entry.counted} of {entry.required}",
            )
        if seen.counted != entry.counted:
            add("counted", entry.counted, seen.counted, "counted patrols differ")
        if seen.required != entry.required:
            add("required", entry.required, seen.required, "patrols owed differ")
    out += _patrol_disagreements(entry, platform.patrols.get(key, ()), truth)
    if engine_compared:
        recorded = platform.engine.get(key, ABSENT)
        if recorded != entry.status:
            add("engine status", entry.status, recorded, "the engine's recorded status differs")
    return out


def _worker_disagreements(entry: TruthEntry, platform: PlatformWeek) -> list[Disagreement]:
    out = []
    stored = platform.checkins.get(entry.worker_id, 0)
    if stored != entry.checkins_in_window:
        out.append(
            Disagreement(
                entry.worker_id,
                entry.grid_code,
                "check-ins",
                str(entry.checkins_in_window),
                str(stored),
                "distinct check-ins in the week's window differ (lost, or not folded in yet)",
            )
        )
    late = platform.late.get(entry.worker_id, 0)
    if late:
        out.append(
            Disagreement(
                entry.worker_id,
                entry.grid_code,
                "late",
                "0",
                str(late),
                "check-ins marked late: they arrived after the week was final",
            )
        )
    return out


def compare(truth: Truth, platform: PlatformWeek) -> Comparison:
    """Every (worker, grid) of the truth against the platform's statuses, patrols, check-ins."""
    engine_compared = platform.watermark is not None and platform.watermark >= truth.as_of
    notes = []
    if not engine_compared:
        notes.append(
            "the engine's watermark has not passed the week's end "
            f"({platform.watermark}): its recorded statuses were not compared"
        )
    confusion: Counter[tuple[str, str]] = Counter()
    out: list[Disagreement] = []
    first_entry: dict[str, TruthEntry] = {}
    for entry in truth.entries:
        seen = platform.statuses.get((entry.worker_id, entry.grid_code))
        confusion[(entry.status, seen.status if seen else ABSENT)] += 1
        out += _entry_disagreements(entry, platform, truth, engine_compared)
        first_entry.setdefault(entry.worker_id, entry)
    for entry in first_entry.values():
        out += _worker_disagreements(entry, platform)
    expected_keys = {(e.worker_id, e.grid_code) for e in truth.entries}
    for (worker_id, grid_code), patrols in sorted(platform.patrols.items()):
        if worker_id in first_entry and (worker_id, grid_code) not in expected_keys and patrols:
            out.append(
                Disagreement(
                    worker_id,
                    grid_code,
                    "patrol",
                    ABSENT,
                    f"{len(patrols)} patrol(s)",
                    "patrols stored in a grid the worker is not assigned to",
                )
            )
    return Comparison(confusion, out, len(truth.entries), engine_compared, notes)
