"""Reading a worker's walk: a page of their stored check-ins and the patrols around it,
and the workers a search names.

The check-ins come in (recorded_at, event_id) order from `ix_checkins_worker_recorded`,
one page after a cursor; the patrols are those whose span overlaps the page. Both read in
one REPEATABLE READ snapshot, so a fix is never matched against a patrol the engine
rewrote between the two queries.
"""

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Final

from sqlalchemy import Connection, Engine, text

from geodata.db.compliance_read import read_snapshot
from geodata.errors import WorkerNotFound
from geodata.track import Cursor, PatrolSpan, StoredFix

_FIXES: Final = text(
    """
    SELECT event_id::text, recorded_at, ST_X(geom) AS lon, ST_Y(geom) AS lat, accuracy_m,
           grid_code, in_assigned_grid, flags
    FROM checkins
    WHERE worker_id = :worker_id
      AND recorded_at >= :start AND recorded_at < :end
      AND (recorded_at, event_id) > (:after_at, :after_id)
      AND (CAST(:prefix AS text) IS NULL OR grid_code LIKE :prefix || '%')
    ORDER BY recorded_at, event_id
    LIMIT :limit
    """
)

_PATROLS: Final = text(
    """
    SELECT grid_code, started_at, ended_at, valid, counted, reason
    FROM patrols
    WHERE worker_id = :worker_id AND started_at <= :last AND ended_at >= :first
      AND (CAST(:prefix AS text) IS NULL OR grid_code LIKE :prefix || '%')
    ORDER BY grid_code, started_at
    """
)

_SEARCH: Final = text(
    """
    SELECT w.worker_id, w.name,
           array_agg(DISTINCT a.grid_code ORDER BY a.grid_code) AS grid_codes
    FROM workers w
    JOIN worker_assignments a ON a.worker_id = w.worker_id
    WHERE (CAST(:prefix AS text) IS NULL OR a.grid_code LIKE :prefix || '%')
      AND (CAST(:only AS text) IS NULL OR w.worker_id = :only)
      AND (w.worker_id ILIKE :pattern || '%' OR w.name ILIKE '%' || :pattern || '%')
    GROUP BY w.worker_id, w.name
    ORDER BY w.worker_id
    LIMIT :limit
    """
)


@dataclass(frozen=True)
class TrackPage:
    """One page of a worker's fixes, the patrols overlapping it, and whether more follow."""

    worker_id: str
    name: str
    fixes: list[StoredFix]
    patrols: list[PatrolSpan]
    more: bool


_BEFORE_ALL: Final = uuid.UUID(int=0)


_STAMP: Final = text(
    """
    SELECT (SELECT count(*) FROM checkins WHERE worker_id = :worker_id
              AND recorded_at >= :start AND recorded_at < :end),
           (SELECT count(*) FROM patrols WHERE worker_id = :worker_id AND ended_at >= :start),
           (SELECT max(id) FROM patrols WHERE worker_id = :worker_id AND ended_at >= :start)
    """
)


def track_stamp(
    bind: Engine | Connection, worker_id: str, start: datetime, end: datetime
) -> tuple[object, ...]:
    """What changes whenever the worker's track in [start, end) could: the count of its
    check-ins (stored once each, never changed or deleted), and the count and highest id
    of the worker's patrols ending at or after `start` (the engine replaces a patrol by
    deleting and inserting, a new one with a higher id than any: a patrol of the interval
    that goes lowers the count or comes with a higher id). Those that end before `start`
    cannot overlap the interval, and leaving them out keeps the stamp's cost a week's,
    not the worker's history's."""
    params = {"worker_id": worker_id, "start": start, "end": end}
    if isinstance(bind, Connection):
        return tuple(bind.execute(_STAMP, params).one())
    # One statement needs no transaction of its own: in autocommit it is one round trip
    # to the server rather than three (BEGIN, the statement, ROLLBACK on return), and a
    # kept page's check is nothing but this.
    with bind.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
        return tuple(connection.execute(_STAMP, params).one())


def track_page(
    engine: Engine | Connection,
    worker_id: str,
    start: datetime,
    end: datetime,
    *,
    limit: int,
    after: Cursor | None = None,
    area_prefix: str | None = None,
    timezone: str = "UTC",
) -> TrackPage:
    """Up to `limit` fixes of the worker in [start, end) after `after`, under `area_prefix`
    (None: everywhere), and the patrols they may belong to; WorkerNotFound if unknown.

    Times come back in `timezone` (the transaction's TimeZone): a page's 500 conversions
    in Python were a quarter of the route's time.
    """
    prefix = _like_escaped(area_prefix)
    with read_snapshot(engine) as connection:
        connection.execute(text("SELECT set_config('TimeZone', :tz, true)"), {"tz": timezone})
        name = connection.execute(
            text("SELECT name FROM workers WHERE worker_id = :w"), {"w": worker_id}
        ).scalar_one_or_none()
        if name is None:
            raise WorkerNotFound(f"no worker has the id {worker_id!r}")
        rows = connection.execute(
            _FIXES,
            {
                "worker_id": worker_id,
                "start": start,
                "end": end,
                "after_at": after.recorded_at if after else start,
                "after_id": after.event_id if after else _BEFORE_ALL,
                "prefix": prefix,
                "limit": limit + 1,
            },
        ).all()
        more = len(rows) > limit
        fixes = [
            StoredFix(
                event_id=row.event_id,
                recorded_at=row.recorded_at,
                lon=row.lon,
                lat=row.lat,
                accuracy_m=row.accuracy_m,
                grid_code=row.grid_code,
                in_assigned_grid=row.in_assigned_grid,
                flags=row.flags or (),
            )
            for row in rows[:limit]
        ]
        patrols: list[PatrolSpan] = []
        if fixes:
            patrols = [
                PatrolSpan(
                    row.grid_code, row.started_at, row.ended_at, row.valid, row.counted, row.reason
                )
                for row in connection.execute(
                    _PATROLS,
                    {
                        "worker_id": worker_id,
                        "first": fixes[0].recorded_at,
                        "last": fixes[-1].recorded_at,
                        "prefix": prefix,
                    },
                )
            ]
    return TrackPage(worker_id, name, fixes, patrols, more)


@dataclass(frozen=True)
class WorkerMatch:
    """A worker a search found, with the grids (under the searcher's area) they had."""

    worker_id: str
    name: str
    grid_codes: list[str]


def search_workers(
    engine: Engine,
    pattern: str,
    *,
    limit: int,
    area_prefix: str | None = None,
    only: str | None = None,
) -> list[WorkerMatch]:
    """Workers whose id starts with `pattern` (any case) or whose name holds it, who have
    (had) a grid under `area_prefix` (None: anywhere); `only`: that worker alone."""
    with engine.connect() as connection:
        rows = connection.execute(
            _SEARCH,
            {
                "prefix": _like_escaped(area_prefix),
                "only": only,
                "pattern": _like_escaped(pattern),
                "limit": limit,
            },
        ).all()
    return [WorkerMatch(row.worker_id, row.name, list(row.grid_codes)) for row in rows]


def _like_escaped(value: str | None) -> str | None:
    # LIKE's default escape is the backslash; a search for "50%" means the characters.
    if value is None:
        return None
    return value.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
