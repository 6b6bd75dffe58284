"""What the platform should conclude from a simulated week: the patrol rules on the plan.

The expected patrols and statuses are `geodata.compliance.evaluate_week` applied to the
planned fixes as the platform will read them (the phone's clock, the grid the fix is
safely inside or none), as of the week's end. Duplicates and delivery order do not
enter: the rules are defined on the set of distinct check-ins. Malformed messages are
refused by the platform and are not fixes at all.
"""

import json
import uuid
from dataclasses import asdict, dataclass, field
from datetime import date, datetime, timedelta
from typing import Any, Final, Self

import numpy as np

from geodata.compliance import (
    CheckinRecord,
    ComplianceConfig,
    IsoWeek,
    Patrol,
    checkin_window,
    evaluate_week,
)
from geodata.events import ComplianceStatus
from wangge.simulation.phones import NO_WALK, FixTable
from wangge.simulation.plan import WorkerPlan

TRUTH_FORMAT: Final = "wangge.simulation.truth/1"


def patrol_reason(patrol: Patrol) -> str:
    """The reason string the engine stores for a patrol (`patrols.reason`)."""
    if patrol.invalid_reason is not None:
        return f"invalid:{patrol.invalid_reason}"
    return patrol.count_reason


@dataclass(frozen=True)
class ExpectedPatrol:
    """A patrol the rules make of the planned fixes."""

    day: date
    start: datetime
    end: datetime
    checkins: int
    valid: bool
    counted: bool
    reason: str


@dataclass(frozen=True)
class WalkRecord:
    """A planned walk, for the reader of the truth file (true time; the phone adds its skew)."""

    grid_code: str
    kind: str
    start: datetime
    end: datetime
    fixes: int
    late_upload: bool


@dataclass(frozen=True)
class TruthEntry:
    """One (worker, grid, week): what is owed, what should count, the final status."""

    worker_id: str
    grid_code: str
    week: str
    profile: str
    phone: dict[str, Any]
    required: int
    counted: int
    status: ComplianceStatus
    #: The worker's distinct check-ins (any grid) in the week's reading window.
    checkins_in_window: int
    patrols: tuple[ExpectedPatrol, ...]
    walks: tuple[WalkRecord, ...]


@dataclass(frozen=True)
class Truth:
    """The expected outcome of a simulated week, with what was produced to get there."""

    week: IsoWeek
    seed: int
    as_of: datetime
    entries: tuple[TruthEntry, ...]
    counts: dict[str, int] = field(default_factory=dict)
    config: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> str:
        """The truth file's text."""
        body = {
            "format": TRUTH_FORMAT,
            "week": str(self.week),
            "seed": self.seed,
            "as_of": self.as_of.isoformat(),
            "counts": self.counts,
            "config": self.config,
            "entries": [asdict(entry) for entry in self.entries],
        }
        return json.dumps(body, ensure_ascii=False, indent=1, default=_encode)

    @classmethod
    def from_json(cls, text: str) -> Self:
        """Read a truth file; ValueError when it is not one."""
        body = json.loads(text)
        if not isinstance(body, dict) or body.get("format") != TRUTH_FORMAT:
            raise ValueError(f"not a {TRUTH_FORMAT} file")
        entries = tuple(
            TruthEntry(
                **{
                    **entry,
                    "patrols": tuple(_patrol(p) for p in entry["patrols"]),
                    "walks": tuple(_walk(w) for w in entry["walks"]),
                }
            )
            for entry in body["entries"]
        )
        return cls(
            week=IsoWeek.parse(body["week"]),
            seed=int(body["seed"]),
            as_of=datetime.fromisoformat(body["as_of"]),
            entries=entries,
            counts=dict(body["counts"]),
            config=dict(body["config"]),
        )


def plain(value: object) -> Any:
    """`value` as JSON reads it back: lists for tuples, ISO strings, seconds for durations."""
    return json.loads(json.dumps(value, default=_encode))


def _encode(value: object) -> object:
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, timedelta):
        return value.total_seconds()
    raise TypeError(f"cannot write {type(value).__name__} to a truth file")


def _patrol(raw: dict[str, Any]) -> ExpectedPatrol:
    return ExpectedPatrol(
        day=date.fromisoformat(raw["day"]),
        start=datetime.fromisoformat(raw["start"]),
        end=datetime.fromisoformat(raw["end"]),
        checkins=int(raw["checkins"]),
        valid=bool(raw["valid"]),
        counted=bool(raw["counted"]),
        reason=str(raw["reason"]),
    )


def _walk(raw: dict[str, Any]) -> WalkRecord:
    return WalkRecord(
        grid_code=raw["grid_code"],
        kind=raw["kind"],
        start=datetime.fromisoformat(raw["start"]),
        end=datetime.fromisoformat(raw["end"]),
        fixes=int(raw["fixes"]),
        late_upload=bool(raw["late_upload"]),
    )


def checkin_records(
    plan: WorkerPlan, fixes: FixTable, config: ComplianceConfig
) -> list[CheckinRecord]:
    """The worker's fixes as the patrol rules read them once the platform has them.

    A fix planned safely inside a grid is in that grid; any other (poor accuracy, a
    teleport) is in no grid of the worker's, which the rules treat alike: not usable.
    """
    tz = config.tz
    grids = [walk.grid_code for walk in plan.walks]
    records = []
    for i in range(len(fixes)):
        walk = int(fixes.walk[i])
        grid = (
            (plan.worker.grid_code if walk == NO_WALK else grids[walk])
            if fixes.in_grid[i]
            else None
        )
        accuracy = float(fixes.accuracy[i])
        records.append(
            CheckinRecord(
                event_id=uuid.UUID(bytes=fixes.ids[i].tobytes()),
                worker_id=plan.worker.worker_id,
                grid_code=grid,
                recorded_at=datetime.fromtimestamp(int(fixes.recorded_s[i]), tz),
                accuracy_m=None if np.isnan(accuracy) else accuracy,
            )
        )
    return records


def expected_entries(
    plan: WorkerPlan,
    fixes: FixTable,
    late_walks: set[int],
    week: IsoWeek,
    config: ComplianceConfig,
) -> list[TruthEntry]:
    """One entry per grid the worker is assigned to during the week, as of its end."""
    tz = config.tz
    as_of = week.end(tz)
    records = checkin_records(plan, fixes, config)
    window_from, window_to = checkin_window(week, config)
    in_window = sum(window_from <= r.recorded_at < window_to for r in records)
    walks = tuple(
        WalkRecord(
            grid_code=walk.grid_code,
            kind=str(walk.kind),
            start=walk.start.astimezone(tz),
            end=walk.end.astimezone(tz),
            fixes=int(np.sum(fixes.walk == number)),
            late_upload=number in late_walks,
        )
        for number, walk in enumerate(plan.walks)
    )
    assigned = sorted(
        {
            p.grid_code
            for p in plan.worker.periods
            if p.valid_from < as_of and (p.valid_to is None or p.valid_to > week.start(tz))
        }
    )
    entries = []
    for grid_code in assigned:
        result = evaluate_week(
            records,
            plan.worker.periods,
            worker_id=plan.worker.worker_id,
            grid_code=grid_code,
            week=week,
            as_of=as_of,
            config=config,
        )
        entries.append(
            TruthEntry(
                worker_id=plan.worker.worker_id,
                grid_code=grid_code,
                week=str(week),
                profile=str(plan.profile),
                phone=asdict(plan.phone),
                required=result.required,
                counted=result.counted,
                status=result.status,
                checkins_in_window=in_window,
                patrols=tuple(
                    ExpectedPatrol(
                        day=p.day,
                        start=p.start,
                        end=p.end,
                        checkins=p.checkin_count,
                        valid=p.valid,
                        counted=p.counted,
                        reason=patrol_reason(p),
                    )
                    for p in result.patrols
                ),
                walks=tuple(
                    w
                    for w in walks
                    if w.grid_code == grid_code or grid_code == plan.worker.grid_code
                ),
            )
        )
    return entries
