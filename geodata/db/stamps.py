"""One value per set of tables that changes whenever any of their rows is added, changed
or removed: what the grid snapshot and the tiles' ETags are checked against.

For each table, the row count and the sum of the rows' `xmin` (the id of the transaction
that wrote each row version): an insert or delete moves the count, and an update or a
delete-and-insert writes rows with a newer, larger xmin, so the sum grows. Unlike a
digest of the rows it reads no geometry, costs well under a millisecond for the grid
tables, and sees every column (names, households, staff periods), not only boundaries.
`StampWatch` keeps stamps in memory, so that a caller (the tiles' ETags) need not read
them per request.
"""

import logging
import threading
import time
from collections.abc import Callable, Sequence
from typing import Generic, TypeVar

from sqlalchemy import Connection, Engine, text
from sqlalchemy.exc import SQLAlchemyError

logger = logging.getLogger(__name__)

Stamps = TypeVar("Stamps")


TABLE_STAMP = "count(*) || ':' || coalesce(sum(xmin::text::bigint), 0)"
"""One table's stamp: an aggregate over its rows, for a query of that table alone."""


def stamp_sql(tables: Sequence[str]) -> str:
    """A scalar SQL expression for the stamp of `tables` (names from the code, never a request).

    One table's stamp is `count:sum`; several are joined by `|` in the given order.
    """
    if not tables:
        raise ValueError("a stamp needs at least one table")
    parts = ", ".join(f"(SELECT {TABLE_STAMP} FROM {table})" for table in tables)
    return f"concat_ws('|', {parts})"


def read_stamp(connection: Connection, tables: Sequence[str]) -> str:
    """The stamp of `tables` as `connection`'s transaction sees them."""
    return str(connection.execute(text(f"SELECT {stamp_sql(tables)}")).scalar_one())


def read_table_stamps(connection: Connection, tables: Sequence[str]) -> dict[str, str]:
    """Each table's stamp, as `read_stamp` of that table alone gives it, in one statement."""
    # A table's stamp is `count:sum` and holds no `|`, so the joined stamp splits cleanly.
    parts = read_stamp(connection, tables).split("|")
    return dict(zip(tables, parts, strict=True))


class StampWatch(Generic[Stamps]):
    """Stamps read by `read` in a background thread, answered from memory.

    A read is trusted for `max_age_s` after it started; the thread re-reads every half of
    that, so under a working database `fresh()` always has stamps, and a change is seen
    within `max_age_s`. When reads fail or fall behind, `fresh()` says None and the caller
    asks the database itself: a stamp older than `max_age_s` is never answered. With
    `max_age_s` 0 nothing is kept (every caller reads the database).
    """

    def __init__(
        self,
        engine: Engine,
        read: Callable[[Connection], Stamps],
        max_age_s: float,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if max_age_s < 0:
            raise ValueError("max_age_s must be >= 0")
        self.engine = engine
        self.read = read
        self.max_age_s = max_age_s
        self._clock = clock
        self._read: tuple[float, Stamps] | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def fresh(self) -> Stamps | None:
        """The stamps if read within `max_age_s`, else None; no I/O."""
        read = self._read
        if read is None or self._clock() - read[0] >= self.max_age_s:
            return None
        return read[1]

    def refresh(self) -> Stamps:
        """Read the stamps now (blocks on the database) and keep them."""
        started = self._clock()
        with self.engine.connect() as connection:
            stamps = self.read(connection)
        self._read = (started, stamps)  # one assignment: readers see the pair whole
        return stamps

    def start(self) -> None:
        """Start re-reading in a daemon thread (nothing when `max_age_s` is 0)."""
        if self.max_age_s > 0 and self._thread is None:
            self._thread = threading.Thread(target=self._run, name="stamp-watch", daemon=True)
            self._thread.start()

    def stop(self) -> None:
        """Stop the thread and wait for it."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
            self._thread = None

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.refresh()
            except SQLAlchemyError:
                # The database is away: the stamps age out and callers read it themselves.
                logger.warning("reading the tables' stamps failed", exc_info=True)
            self._stop.wait(self.max_age_s / 2)
