"""patrol_checkins partitioned by event week too, with one partition maker for both tables

Revision ID: 0023
Revises: 0022
Create Date: 2026-12-05 05:00:00

The compliance engine's copy of the check-ins grows as fast as `checkins`, so it is
rebuilt the same way: `PARTITION BY RANGE (recorded_at)`, one partition per Asia/Shanghai
ISO week (`patrol_checkins_2020w37`), a default partition, its rows moved in, the key
(event_id, recorded_at). 0022's maker becomes `week_partition(parent, t)`, for either
table; `checkin_week_partition(t)` stays, as `week_partition('checkins', t)`, for its
callers (docs/HISTORY.md).
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0023"
down_revision: str | None = "0022"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_COLUMNS = (
    "event_id, worker_id, grid_code, recorded_at, accuracy_m, in_assigned_grid, late,"
    " received_at, mock, implausible_speed"
)
_INDEX = "ix_patrol_checkins_worker_grid_time"

# 0022's maker with the table a parameter. Upgrade makes it `week_partition(parent, t)`;
# downgrade makes it 0022's `checkin_week_partition(t)` again, `parent` then a constant.
_MAKER = """
CREATE OR REPLACE FUNCTION {signature} RETURNS text
LANGUAGE plpgsql SET lock_timeout = '200ms' AS $fn$
DECLARE
    {parent}
    local_start timestamp := date_trunc('week', t AT TIME ZONE 'Asia/Shanghai');
    week_start timestamptz := local_start AT TIME ZONE 'Asia/Shanghai';
    week_end timestamptz := (local_start + interval '7 days') AT TIME ZONE 'Asia/Shanghai';
    name text := parent || '_' || to_char(local_start, 'IYYY"w"IW');
    fallback text := parent || '_default';
BEGIN
    IF to_regclass(name) IS NOT NULL THEN
        RETURN name;
    END IF;
    BEGIN
        -- Serialises creators (readers and writers take weaker locks), so the second one
        -- finds the partition the first made. Attaching locks the default partition
        -- exclusively, which the caller's and other consumers' open transactions may be
        -- reading: rather than wait (two creators could wait on each other), give up
        -- after lock_timeout and leave this week's rows in the default one, stored,
        -- until a later call.
        EXECUTE format('LOCK TABLE %I IN SHARE UPDATE EXCLUSIVE MODE', parent);
        IF to_regclass(name) IS NOT NULL THEN
            RETURN name;
        END IF;
        EXECUTE format('LOCK TABLE %I IN ACCESS EXCLUSIVE MODE', fallback);
        EXECUTE format(
            'CREATE TABLE %I (LIKE %I INCLUDING DEFAULTS INCLUDING CONSTRAINTS)', name, parent
        );
        -- Rows of this week stored before its partition existed move out of the default
        -- one, else attaching would find them there and fail.
        EXECUTE format(
            'WITH moved AS (DELETE FROM %I WHERE recorded_at >= $1'
            ' AND recorded_at < $2 RETURNING *) INSERT INTO %I SELECT * FROM moved',
            fallback, name
        ) USING week_start, week_end;
        EXECUTE format(
            'ALTER TABLE %I ATTACH PARTITION %I FOR VALUES FROM (%L) TO (%L)',
            parent, name, week_start, week_end
        );
        RETURN name;
    EXCEPTION WHEN lock_not_available THEN
        RETURN NULL;
    END;
END
$fn$
"""

_CHECKINS_MAKER = """
CREATE OR REPLACE FUNCTION checkin_week_partition(t timestamptz) RETURNS text
LANGUAGE sql AS $fn$ SELECT week_partition('checkins', t) $fn$
"""


def upgrade() -> None:
    """One partition maker for both tables; patrol_checkins rebuilt by week with its rows."""
    op.execute(_MAKER.format(signature="week_partition(parent text, t timestamptz)", parent=""))
    op.execute(_CHECKINS_MAKER)
    op.execute("ALTER TABLE patrol_checkins RENAME TO patrol_checkins_unpartitioned")
    op.execute(
        "ALTER TABLE patrol_checkins_unpartitioned"
        " RENAME CONSTRAINT pk_patrol_checkins TO pk_patrol_checkins_old"
    )
    op.execute(f"ALTER INDEX {_INDEX} RENAME TO {_INDEX}_old")
    op.execute(
        """
        CREATE TABLE patrol_checkins (
            event_id uuid NOT NULL,
            worker_id varchar(6) NOT NULL,
            grid_code varchar(15),
            recorded_at timestamptz NOT NULL,
            accuracy_m double precision,
            in_assigned_grid boolean NOT NULL,
            late boolean NOT NULL DEFAULT false,
            received_at timestamptz NOT NULL DEFAULT now(),
            mock boolean NOT NULL DEFAULT false,
            implausible_speed boolean NOT NULL DEFAULT false,
            CONSTRAINT pk_patrol_checkins PRIMARY KEY (event_id, recorded_at)
        ) PARTITION BY RANGE (recorded_at)
        """
    )
    op.execute(f"CREATE INDEX {_INDEX} ON patrol_checkins (worker_id, grid_code, recorded_at)")
    op.execute("CREATE TABLE patrol_checkins_default PARTITION OF patrol_checkins DEFAULT")
    # Every week that holds rows, this week and the next, then the rows.
    op.execute(
        "SELECT week_partition('patrol_checkins', w) FROM (SELECT min(recorded_at) AS w"
        " FROM patrol_checkins_unpartitioned"
        " GROUP BY date_trunc('week', recorded_at AT TIME ZONE 'Asia/Shanghai')"
        " UNION ALL SELECT now() UNION ALL SELECT now() + interval '7 days') AS weeks"
    )
    op.execute(
        f"INSERT INTO patrol_checkins ({_COLUMNS})"
        f" SELECT {_COLUMNS} FROM patrol_checkins_unpartitioned"
    )
    op.execute("DROP TABLE patrol_checkins_unpartitioned")


def downgrade() -> None:
    """A plain patrol_checkins keyed by event_id again, and 0022's checkins maker."""
    op.execute("ALTER TABLE patrol_checkins RENAME TO patrol_checkins_partitioned")
    op.execute(
        "ALTER TABLE patrol_checkins_partitioned"
        " RENAME CONSTRAINT pk_patrol_checkins TO pk_patrol_checkins_new"
    )
    op.execute(f"ALTER INDEX {_INDEX} RENAME TO {_INDEX}_new")
    op.execute("CREATE TABLE patrol_checkins (LIKE patrol_checkins_partitioned INCLUDING DEFAULTS)")
    op.execute(
        "ALTER TABLE patrol_checkins ADD CONSTRAINT pk_patrol_checkins PRIMARY KEY (event_id)"
    )
    # An event id stored under two times (docs/HISTORY.md) keeps its earliest row.
    op.execute(
        f"INSERT INTO patrol_checkins ({_COLUMNS}) SELECT DISTINCT ON (event_id) {_COLUMNS}"
        " FROM patrol_checkins_partitioned ORDER BY event_id, recorded_at"
    )
    op.execute("DROP TABLE patrol_checkins_partitioned CASCADE")
    op.execute(f"CREATE INDEX {_INDEX} ON patrol_checkins (worker_id, grid_code, recorded_at)")
    op.execute(
        _MAKER.format(
            signature="checkin_week_partition(t timestamptz)", parent="parent text := 'checkins';"
        )
    )
    op.execute("DROP FUNCTION week_partition(text, timestamptz)")
