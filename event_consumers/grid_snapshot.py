"""The consumers' grids and staff: the shared `GridSnapshotCache`, checked at each batch."""

import psycopg
from sqlalchemy.exc import DBAPIError

from geodata.db.grid_cache import GridSnapshot, GridSnapshotCache


def batch_snapshot(grids: GridSnapshotCache) -> GridSnapshot:
    """The snapshot a batch assigns with, checked for changes first when a check is due.

    A database that is away raises psycopg's own error, as the batch's statements do, so
    that the runner takes it as a transient failure (back off, retry the batch) rather
    than as a record it cannot handle.
    """
    try:
        return grids.snapshot()
    except DBAPIError as exc:
        if isinstance(exc.orig, psycopg.OperationalError | psycopg.InterfaceError):
            raise exc.orig from exc
        raise
