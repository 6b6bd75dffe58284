"""Read side of patrol compliance: how each (worker, grid) stood in a week as of a time T.

Two set-based queries, the assignment periods overlapping the week and the patrols valid
by T per local day, feed the pure rules of `geodata.compliance`; grids and areas are pure
aggregations of the per-worker results. A patrol is valid as of T exactly when its
`valid_at` is at or before T (patrol runs only grow, so validity is prefix-stable).
"""

import re
from collections import Counter, defaultdict
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import date, datetime
from typing import Final, Literal, Self

from sqlalchemy import ColumnElement, Connection, Engine, func, or_, select, true
from sqlalchemy.orm import InstrumentedAttribute

from geodata.compliance import ComplianceConfig, IsoWeek, required_patrols, status_as_of
from geodata.compliance.weeks import check_supported_time
from geodata.db.models import Community, District, Grid, Patrol, Street, Worker, WorkerAssignment
from geodata.errors import GridNotFound, InvalidAreaCode, InvalidWeek, WorkerNotFound
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

Bind = Engine | Connection


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


# --------------------------------------------------------------------------- pure rules

PairKey = tuple[str, str]
"""(worker_id, grid_code)."""


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


# --------------------------------------------------------------------------- queries


def _under(column: InstrumentedAttribute[str], code: str) -> ColumnElement[bool]:
    # No LIKE at all for the whole city, so the planner is not asked to reason about '%'.
    return column.startswith(code, autoescape=True) if code else true()


@contextmanager
def _snapshot(bind: Bind) -> Iterator[Connection]:
    # Periods and patrols must come from one snapshot, or a patrol committed between
    # the two queries could be counted against a roster that does not hold it yet.
    if isinstance(bind, Connection):
        yield bind
        return
    with bind.connect() as connection:
        connection.execution_options(isolation_level="REPEATABLE READ", postgresql_readonly=True)
        with connection.begin():
            yield connection


def fetch_periods(
    connection: Connection, week: IsoWeek, code: str, config: ComplianceConfig
) -> tuple[list[AssignmentPeriod], dict[str, str]]:
    """Assignment periods overlapping the week in grids under `code`, and the workers' names."""
    tz = config.tz
    rows = connection.execute(
        select(
            WorkerAssignment.worker_id,
            WorkerAssignment.grid_code,
            WorkerAssignment.valid_from,
            WorkerAssignment.valid_to,
            Worker.name,
        )
        .join(Worker, Worker.worker_id == WorkerAssignment.worker_id)
        .where(
            WorkerAssignment.valid_from < week.end(tz),
            or_(WorkerAssignment.valid_to.is_(None), WorkerAssignment.valid_to > week.start(tz)),
            _under(WorkerAssignment.grid_code, code),
        )
    ).all()
    # Rows are unpacked as tuples: by-name access on SQLAlchemy rows costs about 1 µs
    # each, tens of milliseconds over a city-wide week.
    periods = [AssignmentPeriod(w, g, start, end) for w, g, start, end, _ in rows]
    return periods, {worker_id: name for worker_id, _, _, _, name in rows}


def fetch_valid_per_day(
    connection: Connection, week: IsoWeek, code: str, as_of: datetime
) -> dict[PairKey, dict[date, int]]:
    """Patrols of the week valid by `as_of`, per (worker, grid) and local day, uncapped."""
    days = week.days()
    rows = connection.execute(
        select(Patrol.worker_id, Patrol.grid_code, Patrol.local_day, func.count().label("valid"))
        .where(
            Patrol.week == str(week),
            _under(Patrol.grid_code, code),
            Patrol.valid_at <= as_of,
            Patrol.local_day >= days[0],
            Patrol.local_day <= days[-1],
        )
        .group_by(Patrol.worker_id, Patrol.grid_code, Patrol.local_day)
    ).all()
    valid: dict[PairKey, dict[date, int]] = defaultdict(dict)
    for worker_id, grid_code, day, count in rows:
        valid[(worker_id, grid_code)][day] = count
    return valid


_AREA_COLUMNS: Final = {
    "community": (Community.code, Community.name),
    "street": (Street.code, Street.name),
    "district": (District.code, District.name),
}


def fetch_names(connection: Connection, level: Level, code: str) -> dict[str, str]:
    """Names of the grids or areas of `level` under `code` (a grid's latest version)."""
    if level == "worker":
        return {}
    if level == "grid":
        # Oldest version first, so that each grid ends up with its latest name.
        query = (
            select(Grid.code, Grid.name).where(_under(Grid.code, code)).order_by(Grid.valid_from)
        )
    else:
        area_code, area_name = _AREA_COLUMNS[level]
        query = select(area_code, area_name).where(_under(area_code, code))
    # Not dict(result): a Result has keys(), so dict() would take it for a mapping.
    return {area: name for area, name in connection.execute(query)}  # noqa: C416


def _grid_exists(connection: Connection, code: str) -> bool:
    return connection.execute(select(Grid.id).where(Grid.code == code).limit(1)).first() is not None


def compliance_report(
    bind: Bind,
    week: IsoWeek,
    as_of: datetime,
    *,
    level: Level = "worker",
    code: str | None = None,
    config: ComplianceConfig | None = None,
) -> ComplianceReport:
    """Compliance of a week as of `as_of` at `level`, for the grids under `code`.

    A full 15-digit code names one grid, so an unknown one is GridNotFound; a shorter
    prefix names a set, which may be empty.
    """
    config = config or ComplianceConfig()
    # Before any query: a naive T has no local day, and one outside the supported span
    # cannot even be converted to UTC.
    check_supported_time(as_of, "as_of")
    prefix = check_code(code, level)
    with _snapshot(bind) as connection:
        periods, worker_names = fetch_periods(connection, week, prefix, config)
        full_grid_code = len(prefix) == CODE_LENGTH["grid"]
        if not periods and full_grid_code and not _grid_exists(connection, prefix):
            raise GridNotFound(f"no grid has the code {prefix}")
        valid = fetch_valid_per_day(connection, week, prefix, as_of) if periods else {}
        names = fetch_names(connection, level, prefix) if periods else {}
    workers = evaluate_pairs(periods, valid, worker_names, week, as_of, config)
    items: ReportItems
    if level == "worker":
        items = workers
    elif level == "grid":
        items = by_grid(workers, names)
    else:
        items = by_area(workers, level, names)
    return ComplianceReport(week=week, as_of=as_of, level=level, code=prefix, items=items)


# --------------------------------------------------------------------------- patrols


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


def worker_patrols(
    bind: Bind, worker_id: str, week: IsoWeek, config: ComplianceConfig | None = None
) -> WorkerPatrols:
    """The worker's patrols of the week grouped per grid; WorkerNotFound for an unknown id."""
    config = config or ComplianceConfig()
    tz = config.tz
    with _snapshot(bind) as connection:
        name = connection.execute(
            select(Worker.name).where(Worker.worker_id == worker_id)
        ).scalar_one_or_none()
        if name is None:
            raise WorkerNotFound(f"no worker has the id {worker_id!r}")
        assigned = connection.execute(
            select(WorkerAssignment.grid_code).where(
                WorkerAssignment.worker_id == worker_id,
                WorkerAssignment.valid_from < week.end(tz),
                or_(
                    WorkerAssignment.valid_to.is_(None),
                    WorkerAssignment.valid_to > week.start(tz),
                ),
            )
        ).scalars()
        grids: dict[str, list[PatrolRecord]] = {grid_code: [] for grid_code in assigned}
        rows = connection.execute(
            select(
                Patrol.grid_code,
                Patrol.local_day,
                Patrol.started_at,
                Patrol.ended_at,
                Patrol.checkin_count,
                Patrol.valid,
                Patrol.valid_at,
                Patrol.counted,
                Patrol.reason,
            )
            .where(Patrol.worker_id == worker_id, Patrol.week == str(week))
            .order_by(Patrol.grid_code, Patrol.started_at, Patrol.id)
        )
        for row in rows:
            grids.setdefault(row.grid_code, []).append(
                PatrolRecord(
                    local_day=row.local_day,
                    started_at=row.started_at,
                    ended_at=row.ended_at,
                    checkin_count=row.checkin_count,
                    valid=row.valid,
                    valid_at=row.valid_at,
                    counted=row.counted,
                    reason=row.reason,
                )
            )
    return WorkerPatrols(
        worker_id=worker_id,
        name=name,
        week=week,
        grids=tuple(GridPatrols(code, tuple(grids[code])) for code in sorted(grids)),
    )
