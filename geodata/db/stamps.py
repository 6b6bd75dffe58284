"""One value per set of tables that changes whenever any of their rows is added, changed
or removed: what the grid snapshot and the tiles' ETags are checked against.

For each table, the row count and the sum of the rows' `xmin` (the id of the transaction
that wrote each row version): an insert or delete moves the count, and an update or a
delete-and-insert writes rows with a newer, larger xmin, so the sum grows. Unlike a
digest of the rows it reads no geometry, costs well under a millisecond for the grid
tables, and sees every column (names, households, staff periods), not only boundaries.
"""

from collections.abc import Sequence

from sqlalchemy import Connection, text


def stamp_sql(tables: Sequence[str]) -> str:
    """A scalar SQL expression for the stamp of `tables` (names from the code, never a request).

    One table's stamp is `count:sum`; several are joined by `|` in the given order.
    """
    if not tables:
        raise ValueError("a stamp needs at least one table")
    parts = ", ".join(
        f"(SELECT count(*) || ':' || coalesce(sum(xmin::text::bigint), 0) FROM {table})"
        for table in tables
    )
    return f"concat_ws('|', {parts})"


def read_stamp(connection: Connection, tables: Sequence[str]) -> str:
    """The stamp of `tables` as `connection`'s transaction sees them."""
    return str(connection.execute(text(f"SELECT {stamp_sql(tables)}")).scalar_one())
