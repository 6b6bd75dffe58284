"""Compliance reports as pure data: worker statuses of a week rolled up to grids and areas.

The repository (`geodata.db.compliance_read`) reads assignment periods and valid patrols;
everything from there on is here, so the API, the CLI and the tests share one rule for
what a grid's, a community's, a street's or a district's week looks like.
"""

import re
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import date, datetime
from typing import Final, Literal, Self

from geodata.compliance.config import ComplianceConfig
from geodata.compliance.weekly import required_patrols, status_as_of
from geodata.compliance.weeks import IsoWeek
from geodata.errors import InvalidAreaCode, InvalidWeek
from geodata.events import ComplianceStatus
from geodata.staffing import AssignmentPeriod

Level = Literal["worker", "grid", "community", "street", "district"]
"""How finely a compliance report is cut: one item per worker in a grid, or per area."""

AreaLevel = Literal["community", "street", "district"]

CODE_LENGTH: Final[Mapping[Level, int]] = {
    "worker": 15,
    "grid": 15,
    "community": 12,
    "street": 9,
    "district": 6,
}
"""Digits of an item's code at each level: an area's code is a prefix of its grids'."""

ATTENTION: Final[frozenset[ComplianceStatus]] = frozenset({"at_risk", "missed"})
"""Statuses that areas list worker by worker, for supervisors to act on."""

_CODE = re.compile(r"[0-9]{1,15}")

PairKey = tuple[str, str]
"""(worker_id, grid_code)."""


def parse_week(name: str) -> IsoWeek:
    """Read `2020-W37`; anything else, a week 53 its year lacks or an unsupported year
    (IsoWeek's MIN_YEAR to MAX_YEAR) is InvalidWeek."""
    try:
        return IsoWeek.parse(name)
    except ValueError as exc:
        raise InvalidWeek(str(exc)) from exc


def check_code(code: str | None, level: Level) -> str:
    """The code prefix to filter grids by ('' for all), refused unless it fits `level`.

    A code finer than the level (a street's code with level=district) would label a
    partial sum with the whole area's code, so it is refused rather than guessed at.
    """
    if not code:
        return ""
    if _CODE.fullmatch(code) is None:
        raise InvalidAreaCode(f"a code is 1 to 15 digits, got {code!r}")
    if len(code) > CODE_LENGTH[level]:
        raise InvalidAreaCode(
            f"code {code} is finer than level {level} ({CODE_LENGTH[level]} digits at most)"
        )
    return code


# --------------------------------------------------------------------------- results


@dataclass(frozen=True)
class StatusCounts:
    """How many (worker, grid) pairs have each status."""

    met: int = 0
    on_track: int = 0
    at_risk: int = 0
    missed: int = 0

    @classmethod
    def of(cls, statuses: Iterable[ComplianceStatus]) -> Self:
        """Count the statuses."""
        counts = Counter(statuses)
        return cls(counts["met"], counts["on_track"], counts["at_risk"], counts["missed"])


@dataclass(frozen=True)
class WorkerCompliance:
    """One worker in one grid: owed, counted as of T, status, and the days that counted."""

    worker_id: str
    name: str
    grid_code: str
    required: int
    counted: int
    status: ComplianceStatus
    counted_days: tuple[date, ...]


@dataclass(frozen=True)
class GridCompliance:
    """One grid's week: its workers, how many met, and its counted patrols."""

    grid_code: str
    name: str | None
    workers_met: int
    workers_total: int
    patrols: int
    statuses: StatusCounts
    workers: tuple[WorkerCompliance, ...]


@dataclass(frozen=True)
class AreaCompliance:
    """A community, street or district over its grids, and who needs attention."""

    level: AreaLevel
    code: str
    name: str | None
    grids: int
    workers_met: int
    workers_total: int
    patrols: int
    statuses: StatusCounts
    at_risk_or_missed: tuple[WorkerCompliance, ...]


ReportItems = list[WorkerCompliance] | list[GridCompliance] | list[AreaCompliance]


@dataclass(frozen=True)
class ComplianceReport:
    """The items of one level for a week as of a time, under a code prefix ('' for all)."""

    week: IsoWeek
    as_of: datetime
    level: Level
    code: str
    items: ReportItems


@dataclass(frozen=True)
class PatrolRecord:
    """One patrol as the engine stored it; `counted` and `reason` are as of its last run."""

    local_day: date
    started_at: datetime
    ended_at: datetime
    checkin_count: int
    valid: bool
    valid_at: datetime | None
    counted: bool
    reason: str


@dataclass(frozen=True)
class GridPatrols:
    """A worker's patrols in one grid, in start order."""

    grid_code: str
    patrols: tuple[PatrolRecord, ...]


@dataclass(frozen=True)
class WorkerPatrols:
    """A worker's week: every grid they were assigned to or patrolled, with its patrols."""

    worker_id: str
    name: str
    week: IsoWeek
    grids: tuple[GridPatrols, ...]


# --------------------------------------------------------------------------- rules


def evaluate_pairs(
    periods: Iterable[AssignmentPeriod],
    valid_per_day: Mapping[PairKey, Mapping[date, int]],
    worker_names: Mapping[str, str],
    week: IsoWeek,
    as_of: datetime,
    config: ComplianceConfig,
) -> list[WorkerCompliance]:
    """Status of every (worker, grid) with a period in `periods`, sorted by grid then worker.

    `valid_per_day` holds the patrols valid as of `as_of` per local day; each day counts
    at most `max_counted_per_day` of them. Days outside the week are ignored.
    """
    spans_of: dict[PairKey, list[AssignmentPeriod]] = defaultdict(list)
    for period in periods:
        spans_of[(period.worker_id, period.grid_code)].append(period)
    week_days = frozenset(week.days())
    # Both rules are pure and most pairs share their inputs (one open period; one of a
    # few day patterns), so each distinct input is evaluated once: this keeps a city-wide
    # week at a few milliseconds of Python rather than tens.
    required_by_spans: dict[tuple[tuple[datetime, datetime | None], ...], int] = {}
    status_by_counts: dict[tuple[frozenset[tuple[date, int]], int], ComplianceStatus] = {}
    results = []
    for worker_id, grid_code in sorted(spans_of, key=lambda pair: (pair[1], pair[0])):
        spans = spans_of[(worker_id, grid_code)]
        spans_key = tuple(sorted(((p.valid_from, p.valid_to) for p in spans), key=lambda s: s[0]))
        required = required_by_spans.get(spans_key)
        if required is None:
            required = required_by_spans[spans_key] = required_patrols(spans, week, config)
        counted_per_day = {
            day: min(valid, config.max_counted_per_day)
            for day, valid in valid_per_day.get((worker_id, grid_code), {}).items()
            if valid > 0 and day in week_days
        }
        status_key = (frozenset(counted_per_day.items()), required)
        status = status_by_counts.get(status_key)
        if status is None:
            status = status_by_counts[status_key] = status_as_of(
                counted_per_day, required, week, as_of, config
            )
        results.append(
            WorkerCompliance(
                worker_id=worker_id,
                name=worker_names.get(worker_id, ""),
                grid_code=grid_code,
                required=required,
                counted=sum(counted_per_day.values()),
                status=status,
                counted_days=tuple(sorted(counted_per_day)),
            )
        )
    return results


def by_grid(
    workers: Iterable[WorkerCompliance], grid_names: Mapping[str, str]
) -> list[GridCompliance]:
    """One item per grid with at least one worker, sorted by code."""
    members: dict[str, list[WorkerCompliance]] = defaultdict(list)
    for worker in workers:
        members[worker.grid_code].append(worker)
    return [
        GridCompliance(
            grid_code=code,
            name=grid_names.get(code),
            workers_met=sum(w.status == "met" for w in members[code]),
            workers_total=len(members[code]),
            patrols=sum(w.counted for w in members[code]),
            statuses=StatusCounts.of(w.status for w in members[code]),
            workers=tuple(sorted(members[code], key=lambda w: w.worker_id)),
        )
        for code in sorted(members)
    ]


def by_area(
    workers: Iterable[WorkerCompliance], level: AreaLevel, area_names: Mapping[str, str]
) -> list[AreaCompliance]:
    """One item per area of `level` with at least one worker, sorted by code.

    Totals count (worker, grid) pairs, so an area's totals are the sums of its grids'
    even when a worker moved between two of its grids during the week.
    """
    length = CODE_LENGTH[level]
    members: dict[str, list[WorkerCompliance]] = defaultdict(list)
    for worker in workers:
        members[worker.grid_code[:length]].append(worker)
    return [
        AreaCompliance(
            level=level,
            code=code,
            name=area_names.get(code),
            grids=len({w.grid_code for w in members[code]}),
            workers_met=sum(w.status == "met" for w in members[code]),
            workers_total=len(members[code]),
            patrols=sum(w.counted for w in members[code]),
            statuses=StatusCounts.of(w.status for w in members[code]),
            at_risk_or_missed=tuple(
                sorted(
                    (w for w in members[code] if w.status in ATTENTION),
                    key=lambda w: (w.grid_code, w.worker_id),
                )
            ),
        )
        for code in sorted(members)
    ]


def report_items(
    workers: list[WorkerCompliance], level: Level, names: Mapping[str, str]
) -> ReportItems:
    """The workers' results cut at `level`; `names` are the grids' or the areas' names."""
    if level == "worker":
        return workers
    if level == "grid":
        return by_grid(workers, names)
    return by_area(workers, level, names)
