"""Every grid version with its hierarchy and staff, in memory, for locating without a query.

A `GridSnapshot` holds what `grid_queries.grid_detail` reads from PostGIS, for every
boundary version (current and closed) and every staff assignment, beside the consumers'
`GridIndex` built from the same rows; `GridIndexCache` keeps one snapshot fresh. A
locate then answers exactly as the index and `grid_detail` would on the rows the
snapshot was read from, at any `at`: the same versions, the same staff periods
(`valid_from <= at < valid_to`), the same order, GeoJSON as PostGIS wrote it.
"""

import logging
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Final

import shapely
from sqlalchemy import Connection, Engine, text
from sqlalchemy.exc import SQLAlchemyError

from geodata.db.grid_queries import GEOJSON_DECIMALS, GridDetail, StaffMember, detail_of
from geodata.errors import GridNotFound
from geodata.spatial_index import (
    DEFAULT_TOLERANCE_M,
    AssignmentRule,
    GridIndex,
    GridVersion,
    to_epoch_us,
)

logger = logging.getLogger(__name__)

# Every table a detail is read from. A row's xmin is the transaction that wrote that row
# version: an insert or delete moves the count, an update writes a newer xmin, so the sum
# moves (as `tiles.data_stamp`). Unlike `grid_versions.boundary_stamp` it also sees names,
# households and staff, which a detail carries, and reads no geometry.
_STAMPED_TABLES: Final = (
    "grids",
    "worker_assignments",
    "workers",
    "communities",
    "streets",
    "districts",
)
_STAMP_SQL: Final = text(
    "SELECT concat_ws('|', "
    + ", ".join(
        f"(SELECT count(*) || ':' || coalesce(sum(xmin::text::bigint), 0) FROM {table})"
        for table in _STAMPED_TABLES
    )
    + ")"
)
# Every version, with its hierarchy as grid_detail joins it (left: the index takes every
# version, as the consumers' does, even one whose community were missing).
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
# Ordered by the database, as `grid_detail`'s json_agg is, so that its collation decides.
_STAFF_SQL: Final = text(
    """
    SELECT a.grid_code, w.worker_id, w.name, a.valid_from, a.valid_to
    FROM worker_assignments a JOIN workers w ON w.worker_id = a.worker_id
    ORDER BY a.grid_code, w.worker_id
    """
)
# An open period (valid_to NULL) ends after every instant `to_epoch_us` can give.
_OPEN_END_US: Final = 2**63 - 1


@dataclass(frozen=True, slots=True)
class _Assignment:
    """A worker's period on a grid, in µs since the epoch, valid in [from, to)."""

    member: StaffMember
    valid_from_us: int
    valid_to_us: int


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
    """The grid index and every version's detail and staff as read in one transaction."""

    def __init__(
        self,
        index: GridIndex,
        versions: Mapping[str, Sequence[_Version]],
        staff: Mapping[str, Sequence[_Assignment]],
        stamp: str,
    ) -> None:
        """Use `load_snapshot`."""
        self.index = index
        self.stamp = stamp
        self._versions = versions
        self._staff = staff
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

    def detail(self, code: str, at: datetime) -> GridDetail:
        """`grid_queries.grid_detail` from memory: the version valid at `at`, its staff then."""
        when = to_epoch_us(at)
        for version in self._versions.get(code, ()):
            if version.valid_from_us <= when < version.valid_to_us:
                return replace(version.detail, staff=self._staff_at(code, when))
        raise GridNotFound(f"no grid {code} valid at {at.isoformat()}")

    def _staff_at(self, code: str, when: int) -> tuple[StaffMember, ...]:
        members: list[StaffMember] = []
        for assignment in self._staff.get(code, ()):
            # Overlapping periods of one worker count once, as SELECT DISTINCT does.
            if (
                assignment.valid_from_us <= when < assignment.valid_to_us
                and assignment.member not in members
            ):
                members.append(assignment.member)
        return tuple(members)


def data_stamp(connection: Connection) -> str:
    """A value that changes whenever a grid, its hierarchy's names or any staff change."""
    return str(connection.execute(_STAMP_SQL).scalar_one())


def load_snapshot(engine: Engine, tolerance_m: float = DEFAULT_TOLERANCE_M) -> GridSnapshot:
    """Read every grid version, the hierarchy and all staff in one snapshot of the database."""
    with engine.connect().execution_options(isolation_level="REPEATABLE READ") as conn:
        # Read in the same transaction as the rows: the stamp describes exactly them.
        stamp = data_stamp(conn)
        grids = conn.execute(_GRIDS_SQL).all()
        assignments = conn.execute(_STAFF_SQL).all()
    # One vectorised WKB decode; WKB keeps the stored doubles bit for bit, which the index
    # needs to agree with PostGIS on points exactly on an edge.
    geometries = shapely.from_wkb([bytes(row.wkb) for row in grids])
    index_versions: list[GridVersion] = []
    versions: dict[str, list[_Version]] = {}
    for row, geometry in zip(grids, geometries, strict=True):
        index_versions.append(
            GridVersion(row.code, row.community_code, geometry, row.valid_from, row.valid_to)
        )
        if row.district_code is None:
            continue  # grid_detail's inner joins find no such grid either
        detail = detail_of(row, staff=())
        versions.setdefault(row.code, []).append(
            _Version(to_epoch_us(row.valid_from), _end_us(row.valid_to), detail)
        )
    staff: dict[str, list[_Assignment]] = {}
    for row in assignments:
        staff.setdefault(row.grid_code, []).append(
            _Assignment(
                StaffMember(row.worker_id, row.name),
                to_epoch_us(row.valid_from),
                _end_us(row.valid_to),
            )
        )
    index = GridIndex.build(index_versions, tolerance_m)
    return GridSnapshot(index, versions, staff, stamp)


def _end_us(moment: datetime | None) -> int:
    return _OPEN_END_US if moment is None else to_epoch_us(moment)


class GridIndexCache:
    """One engine's `GridSnapshot`, checked for changes about every `check_interval_s`.

    A request locates with the very index, and so the very rules, that assigns events.
    `current()` never waits for the database once a snapshot is loaded: when a check is
    due it starts one in a background thread and answers from the snapshot it has, so a
    boundary import, a renamed community or a staff change shows up within the interval
    plus one check (one small query; a reload only when something changed).
    """

    def __init__(
        self,
        engine: Engine,
        *,
        check_interval_s: float = 5.0,
        tolerance_m: float = DEFAULT_TOLERANCE_M,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.engine = engine
        self.check_interval_s = check_interval_s
        self.tolerance_m = tolerance_m
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
        if snapshot is not None and self._clock() - self._checked_at >= self.check_interval_s:
            self._start_check()
        return snapshot

    def fresh(self) -> GridSnapshot | None:
        """The current snapshot if it was checked within the interval, else None (no I/O)."""
        snapshot = self._snapshot
        if snapshot is None or self._clock() - self._checked_at >= self.check_interval_s:
            return None
        return snapshot

    def snapshot(self, *, force: bool = False) -> GridSnapshot:
        """The current snapshot, checked first when due (or `force`d); blocks on the database."""
        with self._refresh_lock:
            snapshot = self._snapshot
            started = self._clock()
            due = started - self._checked_at >= self.check_interval_s
            if snapshot is not None and not force and not due:
                return snapshot  # another thread checked while this one waited
            if snapshot is None or self._current_stamp() != snapshot.stamp:
                snapshot = load_snapshot(self.engine, self.tolerance_m)
                logger.info("grid snapshot loaded: %d versions", snapshot.index.size)
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

    def _current_stamp(self) -> str:
        with self.engine.connect() as conn:
            return data_stamp(conn)
