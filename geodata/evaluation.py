"""Evaluation (综合评价): what each worker and area did with its cases in a period.

Pure computation over plain data: the repository (`geodata.db.evaluation_read`) reads each
case touched in the period with its whole history; everything from there on is here, so
the API, the CLI, the benchmark and the tests share one set of definitions. The rules,
in the words a city audits them by, are in docs/EVALUATION.md; in short:

- a period is whole local days (Asia/Shanghai), `first` 00:00 to the day after `last`
  00:00; a figure counts what *happened* in it (a report, a dispatch, a close, ...);
- on time: closed with no passed due moment recorded by the deadlines in its history;
- overdue: cases the deadlines escalated or marked in the period;
- rework: closed cases that were reopened at least once before their close;
- a stage's time is a stay in the stage's statuses, counted in the period it ends in;
- an area's figures are those of its cases; a worker's, those of the cases while it held them.
"""

import math
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from typing import Final, Literal
from uuid import UUID

from geodata.compliance.report import CODE_LENGTH, Level
from geodata.deadlines import CITY_ZONE
from geodata.errors import InvalidWeek
from geodata.incident_status import SYSTEM_ROLE
from geodata.incidents import Action, Status

MAX_PERIOD_DAYS: Final = 366
"""The longest period one evaluation covers: a year, leap or not."""
MIN_YEAR: Final = 1970
MAX_YEAR: Final = 8999

Stage = Literal["dispatch", "handle", "verify", "total"]
STAGES: Final[tuple[Stage, ...]] = ("dispatch", "handle", "verify", "total")
"""The stages timed: the three of docs/DEADLINES.md, and report to close."""

STAGE_OF_STATUS: Final[Mapping[Status, Stage]] = {
    Status.REPORTED: "dispatch",
    Status.ESCALATED: "dispatch",
    Status.DISPATCHED: "handle",
    Status.IN_PROGRESS: "handle",
    Status.RESOLVED: "verify",
}
"""Which stage a case is in, by status; closed and cancelled are in none."""

AREA_LEVEL_BY_LENGTH: Final[Mapping[int, str]] = {
    0: "city",
    6: "district",
    9: "street",
    12: "community",
    15: "grid",
}


_FINER_LEVEL: Final[Mapping[int, Level]] = {
    0: "district",
    6: "street",
    9: "community",
    12: "grid",
    15: "worker",
}


def default_level(code: str) -> Level:
    """The level an evaluation of `code` is cut into when none is asked: one finer."""
    return _FINER_LEVEL.get(len(code), "worker")


class InvalidPeriod(InvalidWeek):
    """A period whose last day is before its first, longer than a year, or out of range."""

    code = "invalid_period"


@dataclass(frozen=True, slots=True)
class Period:
    """Whole local days, `first` to `last` inclusive, as the instants [start, end)."""

    first: date
    last: date

    @property
    def start(self) -> datetime:
        """00:00 Asia/Shanghai on the first day."""
        return datetime.combine(self.first, time(), CITY_ZONE).astimezone(UTC)

    @property
    def end(self) -> datetime:
        """00:00 Asia/Shanghai on the day after the last (excluded)."""
        return datetime.combine(self.last + timedelta(days=1), time(), CITY_ZONE).astimezone(UTC)

    def holds(self, instant: datetime) -> bool:
        """Whether `instant` (aware) lies in the period."""
        return self.start <= instant < self.end


def period_of(first: date | None, last: date | None, today: date) -> Period:
    """The period asked for; InvalidPeriod unless first <= last, a year at most, 1970-8999.

    Without `first`, the first day of the month of `last`; without `last`, the last day
    of the month of `first`, or `today` when neither is given.
    """
    if last is None:
        if first is None:
            last = today
        else:
            following = date(first.year + first.month // 12, first.month % 12 + 1, 1)
            last = following - timedelta(days=1)
    if first is None:
        first = last.replace(day=1)
    for day in (first, last):
        if not MIN_YEAR <= day.year <= MAX_YEAR:
            raise InvalidPeriod(f"{day} is outside the years {MIN_YEAR} to {MAX_YEAR}")
    if last < first:
        raise InvalidPeriod(f"the period ends ({last}) before it begins ({first})")
    if (last - first).days + 1 > MAX_PERIOD_DAYS:
        raise InvalidPeriod(f"a period is at most {MAX_PERIOD_DAYS} days, not {first} to {last}")
    return Period(first, last)


# --------------------------------------------------------------------------- input


@dataclass(frozen=True, slots=True)
class CaseEvent:
    """One entry of a case's history, as the workflow or the deadlines recorded it."""

    action: str
    to_status: Status
    #: Who holds the case after the entry (a dispatch's worker; none after an escalation).
    assignee: str | None
    actor_role: str
    at: datetime


@dataclass(frozen=True, slots=True)
class CaseHistory:
    """A case as evaluated: what was reported, where, and every entry of its history."""

    incident_id: UUID
    category: str
    source: str
    reporter_id: str | None
    #: Its grid, else its community, else None (outside every grid).
    area_code: str | None
    reported_at: datetime
    events: tuple[CaseEvent, ...]


# --------------------------------------------------------------------------- output


@dataclass(frozen=True, slots=True)
class StageTime:
    """How long the stays in a stage that ended in the period took (seconds)."""

    count: int
    mean_s: float | None
    p90_s: float | None


@dataclass(frozen=True, slots=True)
class Share:
    """How many of the period's reports had one source or category, and their share."""

    key: str
    count: int
    share: float


@dataclass(frozen=True, slots=True)
class Figures:
    """One unit's evaluation for the period."""

    level: str
    code: str
    name: str | None
    reported: int
    dispatched: int
    closed: int
    closed_on_time: int
    on_time_rate: float | None
    overdue: int
    escalations: int
    escalations_by_deadlines: int
    reopened: int
    reopen_rate: float | None
    stages: Mapping[Stage, StageTime]
    by_source: tuple[Share, ...]
    by_category: tuple[Share, ...]


@dataclass(frozen=True, slots=True)
class Evaluation:
    """A period's evaluation at one level under an area code: the area's total, its units."""

    period: Period
    level: Level
    code: str
    total: Figures
    items: tuple[Figures, ...]


# --------------------------------------------------------------------------- the walk


@dataclass(slots=True)
class _Tally:
    reported: int = 0
    sources: Counter[str] = field(default_factory=Counter)
    categories: Counter[str] = field(default_factory=Counter)
    dispatched: set[UUID] = field(default_factory=set)
    closed: int = 0
    closed_on_time: int = 0
    reopened: int = 0
    overdue: set[UUID] = field(default_factory=set)
    escalations: int = 0
    escalations_by_deadlines: int = 0
    stays: dict[Stage, list[float]] = field(default_factory=lambda: defaultdict(list))


def _walk(case: CaseHistory, period: Period, tally_of: "_Tallies") -> None:
    """Add what happened to `case` in `period` to the tallies of its area and its holders."""
    area = case.area_code
    if period.holds(case.reported_at):
        reporter = case.reporter_id if case.source == "worker" else None
        for tally in tally_of(area, reporter):
            tally.reported += 1
            tally.sources[case.source] += 1
            tally.categories[case.category] += 1
    status = Status.REPORTED
    holder: str | None = None
    stay_began = case.reported_at
    went_overdue = reopened = False
    for event in case.events:
        by_deadlines = event.actor_role == SYSTEM_ROLE
        went_overdue = went_overdue or by_deadlines
        here = period.holds(event.at)
        stage = STAGE_OF_STATUS.get(status)
        next_stage = STAGE_OF_STATUS.get(event.to_status)
        if stage is not None and stage != next_stage:
            if here and event.to_status is not Status.CANCELLED:
                seconds = (event.at - stay_began).total_seconds()
                for tally in tally_of(area, holder):
                    tally.stays[stage].append(seconds)
            stay_began = event.at
        if here:
            if event.action == Action.DISPATCH:
                for tally in tally_of(area, event.assignee):
                    tally.dispatched.add(case.incident_id)
            if by_deadlines:
                for tally in tally_of(area, holder):
                    tally.overdue.add(case.incident_id)
            if event.action == Action.ESCALATE:
                for tally in tally_of(area, holder):
                    tally.escalations += 1
                    tally.escalations_by_deadlines += by_deadlines
            # Entering closed: a supervisor's close, or a locker task's return.
            if event.to_status is Status.CLOSED and status is not Status.CLOSED:
                seconds = (event.at - case.reported_at).total_seconds()
                for tally in tally_of(area, holder):
                    tally.closed += 1
                    tally.closed_on_time += not went_overdue
                    tally.reopened += reopened
                    tally.stays["total"].append(seconds)
        reopened = reopened or event.action == Action.REOPEN
        holder = event.assignee
        status = event.to_status


class _Tallies:
    """The tallies of a level's units and of the whole, found for an area and a worker."""

    def __init__(self, level: Level, code: str) -> None:
        self.level = level
        self.code = code
        self.total = _Tally()
        self.units: dict[str, _Tally] = defaultdict(_Tally)

    def __call__(self, area: str | None, worker: str | None) -> list[_Tally]:
        tallies = [self.total]
        if self.level == "worker":
            if worker is not None:
                tallies.append(self.units[worker])
        elif area is not None and len(area) >= CODE_LENGTH[self.level]:
            tallies.append(self.units[area[: CODE_LENGTH[self.level]]])
        return tallies


def evaluate(
    cases: Iterable[CaseHistory],
    period: Period,
    level: Level,
    code: str,
    names: Mapping[str, str | None],
    total_name: str | None = None,
) -> Evaluation:
    """The period's figures of every unit of `level` under `code` and of the area as a whole.

    `cases` are those whose area lies under `code` (all, outside grids too, when `code` is
    empty); `names` names the units to list, each listed even with nothing to count, plus
    any worker who held one of the cases.
    """
    tallies = _Tallies(level, code)
    for case in cases:
        _walk(case, period, tallies)
    area_level = AREA_LEVEL_BY_LENGTH.get(len(code), "area")
    total = _figures(tallies.total, area_level, code, total_name)
    keys = sorted(set(names) | set(tallies.units))
    items = tuple(
        _figures(tallies.units.get(key, _Tally()), level, key, names.get(key)) for key in keys
    )
    return Evaluation(period, level, code, total, items)


def p90(values: Sequence[float]) -> float | None:
    """The nearest-rank 90th percentile: the smallest value at least 90 % of them do not exceed."""
    if not values:
        return None
    ordered = sorted(values)
    return ordered[math.ceil(0.9 * len(ordered)) - 1]


def _stage_time(values: Sequence[float]) -> StageTime:
    if not values:
        return StageTime(0, None, None)
    return StageTime(len(values), sum(values) / len(values), p90(values))


def _shares(counts: Counter[str], whole: int) -> tuple[Share, ...]:
    ranked = sorted(counts.items(), key=lambda item: (-item[1], item[0]))
    return tuple(Share(key, count, count / whole) for key, count in ranked)


def _rate(part: int, whole: int) -> float | None:
    return part / whole if whole else None


def _figures(tally: _Tally, level: str, code: str, name: str | None) -> Figures:
    return Figures(
        level=level,
        code=code,
        name=name,
        reported=tally.reported,
        dispatched=len(tally.dispatched),
        closed=tally.closed,
        closed_on_time=tally.closed_on_time,
        on_time_rate=_rate(tally.closed_on_time, tally.closed),
        overdue=len(tally.overdue),
        escalations=tally.escalations,
        escalations_by_deadlines=tally.escalations_by_deadlines,
        reopened=tally.reopened,
        reopen_rate=_rate(tally.reopened, tally.closed),
        stages={stage: _stage_time(tally.stays.get(stage, ())) for stage in STAGES},
        by_source=_shares(tally.sources, tally.reported),
        by_category=_shares(tally.categories, tally.reported),
    )
