"""One snapshot of every grid version, the hierarchy and the staff, for both adapters.

A `GridSnapshot` holds, as read in one transaction: the `GridIndex` over every boundary
version (current and closed), which assigns the consumers' events and answers the API's
locate and nearest; each version's detail as `grid_queries.grid_detail` reads it; and
the staff as one `WorkerRoster`. `GridSnapshotCache` keeps one snapshot fresh under one
`SnapshotPolicy`; the API asks it without waiting (`current`), the consumers block on it
at each batch (`snapshot`). Both adapters thus locate and staff with the same code over
the same rows: they agree by construction. A locate answers exactly as the index and
`grid_detail` would on the rows the snapshot was read from, at any `at`: the same
versions, the same staff periods (`valid_from <= at < valid_to`), the same order, GeoJSON
as PostGIS wrote it.
"""

import logging
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Final

from sqlalchemy import Engine, text
from sqlalchemy.exc import SQLAlchemyError

from geodata.db.grid_queries import (
    GEOJSON_DECIMALS,
    GridDetail,
    GridRecord,
    StaffMember,
    detail_of,
)
from geodata.db.grid_versions import decode_versions
from geodata.db.stamps import read_stamp
from geodata.errors import GridNotFound
from geodata.snapshot_policy import DEFAULT_TOLERANCE_M, SnapshotPolicy
from geodata.spatial_index import AssignmentRule, GridIndex, to_epoch_us
from geodata.staffing import AssignmentPeriod, WorkerRoster

logger = logging.getLogger(__name__)

#: Every table the snapshot is read from; its stamp (`stamps.read_stamp`) moves on any
#: change to them, names, households and staff included.
SNAPSHOT_TABLES: Final = (
    "grids",
    "worker_assignments",
    "workers",
    "communities",
    "streets",
    "districts",
)
# Every version, with its hierarchy as grid_detail joins it (left: the index takes every
# version, even one whose community were missing).
_GRIDS_SQL: Final = text(
    f"""
    SELECT g.code, g.name, g.community_code, g.households, g.valid_from, g.valid_to,
           ST_AsBinary(g.geom) AS wkb, ST_AsGeoJSON(g.geom, {GEOJSON_DECIMALS}) AS geojson,
           c.name AS community_name, s.code AS street_code, s.name AS street_name,
           d.code AS district_code, d.name AS district_name
    FROM grids g
    LEFT JOIN communities c ON c.code = g.community_code
    LEFT JOIN streets s ON s.code = c.street_code
    LEFT JOIN districts d ON d.code = s.district_code
    ORDER BY g.code, g.valid_from
    """
)
_WORKERS_SQL: Final = text("SELECT worker_id, name FROM workers")
# Ordered by the database, as `grid_detail`'s json_agg is, so that its collation decides
# the order of a grid's staff (`WorkerRoster.workers_of` keeps this order).
_PERIODS_SQL: Final = text(
    """
    SELECT a.worker_id, a.grid_code, a.valid_from, a.valid_to
    FROM worker_assignments a JOIN workers w ON w.worker_id = a.worker_id
    ORDER BY a.grid_code, w.worker_id, a.valid_from
    """
)
# An open period (valid_to NULL) ends after every instant `to_epoch_us` can give.
_OPEN_END_US: Final = 2**63 - 1


@dataclass(frozen=True, slots=True)
class _Version:
    """One boundary version's detail without staff, and when it is valid."""

    valid_from_us: int
    valid_to_us: int
    detail: GridDetail


@dataclass(frozen=True, slots=True)
class LocatedGrid:
    """Where a point fell: the grid's detail at that time, the rule and the distance (m)."""

    detail: GridDetail
    rule: AssignmentRule
    distance_m: float


class GridSnapshot:
    """The grid index, every version's detail and the staff, as read in one transaction."""

    def __init__(
        self,
        index: GridIndex,
        versions: Mapping[str, Sequence[_Version]],
        roster: WorkerRoster,
        stamp: str,
        records: Sequence[GridRecord],
    ) -> None:
        """Use `load_snapshot`."""
        self.index = index
        self.roster = roster
        self.stamp = stamp
        self._versions = versions
        # Each indexed version as served, in the index's order (the load's: by code, then start).
        self._records = tuple(records)
        # The index's prepared GEOS geometries are not documented as safe to share between
        # threads; a lookup takes microseconds, so serialising is cheaper than finding out.
        self._lock = threading.Lock()

    @property
    def tolerance_m(self) -> float:
        """How far outside every grid (metres) a point is still given to the nearest."""
        return self.index.tolerance_m

    def locate(self, lon: float, lat: float, at: datetime) -> LocatedGrid | None:
        """The grid a WGS84 point falls in at `at`, with its detail; None when outside."""
        with self._lock:
            code, rule, distance_m = self.index.locate_one(lon, lat, at)
        if code is None:
            return None
        return LocatedGrid(self.detail(code, at), rule, distance_m)

    def nearest(self, lon: float, lat: float, k: int, at: datetime) -> tuple[GridRecord, ...]:
        """`grid_queries.nearest_grids` from memory: the `k` versions valid at `at` nearest
        a WGS84 point, nearest first (ties by code), with geography distances in metres."""
        with self._lock:
            found = self.index.nearest(lon, lat, k, at)
        return tuple(replace(self._records[i], distance_m=metres) for i, metres in found)

    def in_force(
        self, at: datetime, box: tuple[float, float, float, float] | None = None
    ) -> list[GridRecord]:
        """The versions valid at `at` as the `grids` table holds them (a version whose
        community is missing included), those meeting the lon/lat `box` if given, by code."""
        with self._lock:
            positions = self.index.valid_intersecting(at, box)
        # Ascending positions are the load's order, `ORDER BY g.code, g.valid_from`: by
        # code as the database sorts it, so nothing is sorted here.
        return [self._records[i] for i in positions.tolist()]

    def detail(self, code: str, at: datetime) -> GridDetail:
        """`grid_queries.grid_detail` from memory: the version valid at `at`, its staff then."""
        when = to_epoch_us(at)
        for version in self._versions.get(code, ()):
            if version.valid_from_us <= when < version.valid_to_us:
                staff = tuple(
                    StaffMember(worker_id, self.roster.name_of(worker_id) or "")
                    for worker_id in self.roster.workers_of(code, at)
                )
                return replace(version.detail, staff=staff)
        raise GridNotFound(f"no grid {code} valid at {at.isoformat()}")


def load_snapshot(engine: Engine, tolerance_m: float = DEFAULT_TOLERANCE_M) -> GridSnapshot:
    """Read every grid version, the hierarchy and all staff in one snapshot of the database."""
    with engine.connect().execution_options(isolation_level="REPEATABLE READ") as conn:
        # Read in the same transaction as the rows: the stamp describes exactly them.
        stamp = read_stamp(conn, SNAPSHOT_TABLES)
        grids = conn.execute(_GRIDS_SQL).all()
        workers = conn.execute(_WORKERS_SQL).all()
        periods = conn.execute(_PERIODS_SQL).all()
    versions: dict[str, list[_Version]] = {}
    records: list[GridRecord] = []
    for row in grids:
        detail = detail_of(row, staff=())
        records.append(detail.grid)  # nearest reads every version, as its query does
        if row.district_code is None:
            continue  # grid_detail's inner joins find no such grid either
        versions.setdefault(row.code, []).append(
            _Version(to_epoch_us(row.valid_from), _end_us(row.valid_to), detail)
        )
    roster = WorkerRoster(
        (AssignmentPeriod(str(w), str(g), start, end) for w, g, start, end in periods),
        {str(worker_id): str(name) for worker_id, name in workers},
    )
    index = GridIndex.build(decode_versions(grids), tolerance_m)
    return GridSnapshot(index, versions, roster, stamp, records)


def _end_us(moment: datetime | None) -> int:
    return _OPEN_END_US if moment is None else to_epoch_us(moment)


class GridSnapshotCache:
    """One engine's `GridSnapshot`, checked for changes as its `SnapshotPolicy` says.

    The one refresh policy of both adapters: a check is due `check_interval_s` after the
    last one, reads the stamp of `SNAPSHOT_TABLES` (one small query, no geometry) and
    reloads only when it moved, so a boundary import, a renamed community or a staff
    change shows up within the interval plus one check. The API asks `current()`, which
    never waits for the database once a snapshot is loaded (a due check runs in a
    background thread); the consumers ask `snapshot()`, which checks in their own thread
    at the start of a batch.
    """

    def __init__(
        self,
        engine: Engine,
        policy: SnapshotPolicy | None = None,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.engine = engine
        self.policy = policy or SnapshotPolicy()
        self._clock = clock
        # Held by the one thread that checks or reloads; readers never take it.
        self._refresh_lock = threading.Lock()
        self._snapshot: GridSnapshot | None = None
        self._checked_at = -float("inf")
        self._background_lock = threading.Lock()
        self._checking = False

    def current(self) -> GridSnapshot | None:
        """The snapshot to answer from, without I/O; None until one is loaded (`snapshot`).

        When a check is due, one starts in the background; this call does not wait for it.
        """
        snapshot = self._snapshot
        if snapshot is not None and self._due():
            self._start_check()
        return snapshot

    def fresh(self) -> GridSnapshot | None:
        """The current snapshot if it was checked within the interval, else None (no I/O)."""
        snapshot = self._snapshot
        if snapshot is None or self._due():
            return None
        return snapshot

    def snapshot(self, *, force: bool = False) -> GridSnapshot:
        """The current snapshot, checked first when due (or `force`d); blocks on the database."""
        with self._refresh_lock:
            snapshot = self._snapshot
            started = self._clock()
            due = started - self._checked_at >= self.policy.check_interval_s
            if snapshot is not None and not force and not due:
                return snapshot  # another thread checked while this one waited
            if snapshot is None or self._current_stamp() != snapshot.stamp:
                snapshot = load_snapshot(self.engine, self.policy.tolerance_m)
                logger.info(
                    "grid snapshot loaded: %d grid versions, %d workers",
                    snapshot.index.size,
                    len(snapshot.roster),
                )
                self._snapshot = snapshot
            # Set after the snapshot: a reader may pair the old snapshot with the new time,
            # never a new snapshot with a time it was not checked at.
            self._checked_at = started
            return snapshot

    def _start_check(self) -> None:
        with self._background_lock:
            if self._checking:
                return
            self._checking = True
        threading.Thread(target=self._check, name="grid-snapshot-check", daemon=True).start()

    def _check(self) -> None:
        try:
            self.snapshot()
        except SQLAlchemyError:
            # The database is away: keep answering from the last snapshot, and try again
            # an interval later rather than on every request.
            logger.warning("grid snapshot check failed; answering from the last one", exc_info=True)
            with self._refresh_lock:
                self._checked_at = self._clock()
        finally:
            with self._background_lock:
                self._checking = False

    def _due(self) -> bool:
        return self._clock() - self._checked_at >= self.policy.check_interval_s

    def _current_stamp(self) -> str:
        with self.engine.connect() as conn:
            return read_stamp(conn, SNAPSHOT_TABLES)
