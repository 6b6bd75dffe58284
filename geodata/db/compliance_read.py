"""Read side of patrol compliance: the queries behind a week's report and a worker's patrols.

Two set-based queries, the assignment periods overlapping the week and the patrols valid
by T per local day, feed the pure rules of `geodata.compliance` (statuses per worker, then
rolled up to grids and areas). A patrol is valid as of T exactly when its `valid_at` is at
or before T (patrol runs only grow, so validity is prefix-stable).
"""

from collections import defaultdict
from collections.abc import Collection, Iterator
from contextlib import contextmanager
from datetime import date, datetime
from typing import Final

from sqlalchemy import ColumnElement, Connection, Engine, func, or_, select, true, tuple_
from sqlalchemy.orm import InstrumentedAttribute

from geodata.compliance import ComplianceConfig, IsoWeek
from geodata.compliance.report import (
    CODE_LENGTH,
    ComplianceReport,
    GridPatrols,
    Level,
    PairKey,
    PatrolRecord,
    WorkerPatrols,
    check_code,
    evaluate_pairs,
    report_items,
)
from geodata.compliance.weeks import check_supported_time
from geodata.db.models import Community, District, Grid, Patrol, Street, Worker, WorkerAssignment
from geodata.errors import GridNotFound, WorkerNotFound
from geodata.staffing import AssignmentPeriod

Bind = Engine | Connection


# --------------------------------------------------------------------------- queries


def _under(column: InstrumentedAttribute[str], code: str) -> ColumnElement[bool]:
    # No LIKE at all for the whole city, so the planner is not asked to reason about '%'.
    return column.startswith(code, autoescape=True) if code else true()


@contextmanager
def read_snapshot(bind: Bind) -> Iterator[Connection]:
    """A read-only REPEATABLE READ transaction (or `bind` itself, if a connection)."""
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


def fetch_valid_times(
    connection: Connection, week: IsoWeek, pairs: Collection[PairKey] | None = None
) -> dict[PairKey, dict[date, tuple[datetime, ...]]]:
    """When each valid patrol of the week became valid, per (worker, grid) and local day,
    in order: what `fetch_valid_per_day` counts, for any `as_of`. All pairs, or `pairs`."""
    days = week.days()
    query = select(Patrol.worker_id, Patrol.grid_code, Patrol.local_day, Patrol.valid_at).where(
        Patrol.week == str(week),
        Patrol.valid_at.is_not(None),
        Patrol.local_day >= days[0],
        Patrol.local_day <= days[-1],
    )
    if pairs is not None:
        if not pairs:
            return {}
        query = query.where(tuple_(Patrol.worker_id, Patrol.grid_code).in_(sorted(pairs)))
    found: dict[PairKey, dict[date, list[datetime]]] = defaultdict(lambda: defaultdict(list))
    for worker_id, grid_code, day, valid_at in connection.execute(query.order_by(Patrol.valid_at)):
        if valid_at is not None:  # none are: the query leaves them out
            found[(worker_id, grid_code)][day].append(valid_at)
    return {
        key: {day: tuple(times) for day, times in by_day.items()} for key, by_day in found.items()
    }


def last_patrol_id(connection: Connection) -> int:
    """The highest patrol id stored (0 for none): later changes have higher ones."""
    return int(connection.execute(select(func.coalesce(func.max(Patrol.id), 0))).scalar_one())


def patrols_written_since(
    connection: Connection, after_id: int
) -> tuple[dict[str, set[PairKey]], int]:
    """The (worker, grid) pairs per week whose patrols were written after patrol `after_id`,
    and the highest id now stored (`after_id` when none is newer)."""
    rows = connection.execute(
        select(Patrol.worker_id, Patrol.grid_code, Patrol.week, func.max(Patrol.id))
        .where(Patrol.id > after_id)
        .group_by(Patrol.worker_id, Patrol.grid_code, Patrol.week)
    ).all()
    written: dict[str, set[PairKey]] = defaultdict(set)
    last = after_id
    for worker_id, grid_code, week, highest in rows:
        written[week].add((worker_id, grid_code))
        last = max(last, int(highest))
    return written, last


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
    with read_snapshot(bind) as connection:
        periods, worker_names = fetch_periods(connection, week, prefix, config)
        full_grid_code = len(prefix) == CODE_LENGTH["grid"]
        if not periods and full_grid_code and not _grid_exists(connection, prefix):
            raise GridNotFound(f"no grid has the code {prefix}")
        valid = fetch_valid_per_day(connection, week, prefix, as_of) if periods else {}
        names = fetch_names(connection, level, prefix) if periods else {}
    workers = evaluate_pairs(periods, valid, worker_names, week, as_of, config)
    items = report_items(workers, level, names)
    return ComplianceReport(week=week, as_of=as_of, level=level, code=prefix, items=items)


# --------------------------------------------------------------------------- patrols


def worker_patrols(
    bind: Bind, worker_id: str, week: IsoWeek, config: ComplianceConfig | None = None
) -> WorkerPatrols:
    """The worker's patrols of the week grouped per grid; WorkerNotFound for an unknown id."""
    config = config or ComplianceConfig()
    tz = config.tz
    with read_snapshot(bind) as connection:
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
