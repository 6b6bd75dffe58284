"""The consumers' in-memory view of grids and staff, rebuilt when the database changes."""

import logging
import time

import psycopg
from sqlalchemy import Engine

from geodata.db import event_store
from geodata.db.grid_versions import boundary_stamp, load_grid_versions
from geodata.spatial_index import GridIndex
from geodata.staffing import WorkerRoster

logger = logging.getLogger(__name__)


class BoundaryCache:
    """The grid index (every boundary version) and the worker roster, kept fresh.

    Checking costs two tiny queries, so it runs at most every `check_interval_s`; a
    boundary import or a staff change shows up in the next batch after that. Without
    `with_index` only the roster is kept (the compliance engine locates nothing, and the
    boundary check hashes every geometry).
    """

    def __init__(
        self,
        engine: Engine,
        tolerance_m: float = 30.0,
        check_interval_s: float = 2.0,
        *,
        with_index: bool = True,
    ):
        self.engine = engine
        self.with_index = with_index
        self.tolerance_m = tolerance_m
        self.check_interval_s = check_interval_s
        self._boundary_stamp: object = None
        self._roster_stamp: object = None
        self._checked_at = -float("inf")
        self._index: GridIndex | None = None
        self._roster: WorkerRoster | None = None

    @property
    def index(self) -> GridIndex:
        """The current grid index (all versions, with their validity)."""
        assert self.with_index, "this cache keeps the roster only"
        assert self._index is not None, "refresh_if_changed() must run first"
        return self._index

    @property
    def roster(self) -> WorkerRoster:
        """The current worker roster."""
        assert self._roster is not None, "refresh_if_changed() must run first"
        return self._roster

    def refresh_if_changed(self, conn: psycopg.Connection) -> None:
        """Rebuild what changed since the last check."""
        if time.monotonic() - self._checked_at < self.check_interval_s:
            return
        self._checked_at = time.monotonic()
        if self.with_index:
            self._refresh_index()
        roster_stamp = event_store.roster_stamp(conn)
        if roster_stamp != self._roster_stamp:
            self._roster = event_store.load_roster(conn)
            self._roster_stamp = roster_stamp
            logger.info("worker roster loaded: %d workers", len(self._roster))

    def _refresh_index(self) -> None:
        stamp = boundary_stamp(self.engine)
        if stamp != self._boundary_stamp:
            versions = load_grid_versions(self.engine)
            self._index = GridIndex.build(versions, tolerance_m=self.tolerance_m)
            self._boundary_stamp = stamp
            logger.info("grid index built from %d boundary versions", len(versions))
