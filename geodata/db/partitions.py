"""Week partitions of the tables that grow with events, made by their writers ahead of time.

`checkins` and `patrol_checkins` are partitioned by the local ISO week of `recorded_at`
(migrations 0022 and 0023). The database's `week_partition(parent, t)` makes the
partition of `t`'s week when missing; a writer calls it, in its batch's transaction,
through `make_week_partitions` before it inserts (docs/HISTORY.md).
"""

from typing import Final, Literal

import psycopg
from psycopg import sql

WeekPartitioned = Literal["checkins", "patrol_checkins"]
"""The tables partitioned by event week."""

# The partition of every week the staged rows hold, and of next week, made if missing: a
# week's rows thus land in its own partition, and a partition is normally made a week
# before its first row. Made or not (a maker that would have to wait gives up), every row
# is stored: one of a week without its partition yet goes to the default partition and
# moves into the week's when it is made.
_MAKE: Final = """
SELECT week_partition({parent}, t) FROM (
    SELECT min(recorded_at) AS t FROM {stage}
    GROUP BY date_trunc('week', recorded_at AT TIME ZONE 'Asia/Shanghai')
    UNION ALL SELECT now() + interval '7 days'
) AS weeks
"""


def make_week_partitions(conn: psycopg.Connection, table: WeekPartitioned, stage: str) -> None:
    """Make `table`'s partitions for the weeks of `stage`'s rows (by `recorded_at`) and
    for the week after now, where missing."""
    conn.execute(sql.SQL(_MAKE).format(parent=sql.Literal(table), stage=sql.Identifier(stage)))
