"""checkins partitioned by event week: one partition per local ISO week, made on demand

Revision ID: 0022
Revises: 0016
Create Date: 2026-12-04 05:00:00

The table is rebuilt as `PARTITION BY RANGE (recorded_at)` with its rows: the primary key
becomes (event_id, recorded_at), since a unique key of a partitioned table must hold the
partition key. `checkin_week_partition(t)` makes the partition of `t`'s Asia/Shanghai ISO
week when missing (named `checkins_2020w37`), moving into it any row of that week that a
direct insert left in `checkins_default`; the storage stage calls it for every week of a
batch and for the week ahead (docs/HISTORY.md).
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0022"
down_revision: str | None = "0016"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_COLUMNS = (
    "event_id, worker_id, recorded_at, lon, lat, crs, accuracy_m, geom, grid_code, staff_id,"
    " in_assigned_grid, assignment_rule, flags, late, received_at, assigned_at"
)

# Week bounds are local midnights computed on local timestamps, so a week is always
# Monday 00:00 to the next Monday 00:00 in Asia/Shanghai (the compliance week).
WEEK_PARTITION_FUNCTION = """
CREATE OR REPLACE FUNCTION checkin_week_partition(t timestamptz) RETURNS text
LANGUAGE plpgsql SET lock_timeout = '200ms' AS $fn$
DECLARE
    local_start timestamp := date_trunc('week', t AT TIME ZONE 'Asia/Shanghai');
    week_start timestamptz := local_start AT TIME ZONE 'Asia/Shanghai';
    week_end timestamptz := (local_start + interval '7 days') AT TIME ZONE 'Asia/Shanghai';
    name text := 'checkins_' || to_char(local_start, 'IYYY"w"IW');
BEGIN
    IF to_regclass(name) IS NOT NULL THEN
        RETURN name;
    END IF;
    BEGIN
        -- Serialises creators (readers and writers take weaker locks), so the second one
        -- finds the partition the first made. Attaching locks checkins_default exclusively,
        -- which the caller's and other consumers' open transactions may be reading: rather
        -- than wait (two creators could wait on each other), give up after lock_timeout
        -- and leave this week's rows in checkins_default, stored, until a later call.
        LOCK TABLE checkins IN SHARE UPDATE EXCLUSIVE MODE;
        IF to_regclass(name) IS NOT NULL THEN
            RETURN name;
        END IF;
        LOCK TABLE checkins_default IN ACCESS EXCLUSIVE MODE;
        EXECUTE format(
            'CREATE TABLE %I (LIKE checkins INCLUDING DEFAULTS INCLUDING CONSTRAINTS)', name
        );
        -- Rows of this week stored before its partition existed move out of the default
        -- one, else attaching would find them there and fail.
        EXECUTE format(
            'WITH moved AS (DELETE FROM checkins_default WHERE recorded_at >= $1'
            ' AND recorded_at < $2 RETURNING *) INSERT INTO %I SELECT * FROM moved', name
        ) USING week_start, week_end;
        EXECUTE format(
            'ALTER TABLE checkins ATTACH PARTITION %I FOR VALUES FROM (%L) TO (%L)',
            name, week_start, week_end
        );
        RETURN name;
    EXCEPTION WHEN lock_not_available THEN
        RETURN NULL;
    END;
END
$fn$
"""


def upgrade() -> None:
    """Rebuild checkins partitioned by week, its rows included, and the partition maker."""
    op.execute("ALTER TABLE checkins RENAME TO checkins_unpartitioned")
    op.execute(
        "ALTER TABLE checkins_unpartitioned RENAME CONSTRAINT pk_checkins TO pk_checkins_old"
    )
    for index in ("ix_checkins_geom", "ix_checkins_grid_recorded", "ix_checkins_worker_recorded"):
        op.execute(f"ALTER INDEX {index} RENAME TO {index}_old")
    op.execute(
        """
        CREATE TABLE checkins (
            event_id uuid NOT NULL,
            worker_id varchar(6) NOT NULL,
            recorded_at timestamptz NOT NULL,
            lon double precision NOT NULL,
            lat double precision NOT NULL,
            crs text NOT NULL DEFAULT 'EPSG:4326',
            accuracy_m double precision,
            geom geometry(POINT, 4326) NOT NULL,
            grid_code varchar(15),
            staff_id varchar(6),
            in_assigned_grid boolean,
            assignment_rule text NOT NULL,
            flags text[] NOT NULL DEFAULT '{}',
            late boolean NOT NULL DEFAULT false,
            received_at timestamptz NOT NULL DEFAULT now(),
            assigned_at timestamptz NOT NULL DEFAULT now(),
            CONSTRAINT pk_checkins PRIMARY KEY (event_id, recorded_at)
        ) PARTITION BY RANGE (recorded_at)
        """
    )
    op.execute("CREATE INDEX ix_checkins_geom ON checkins USING gist (geom)")
    op.execute("CREATE INDEX ix_checkins_grid_recorded ON checkins (grid_code, recorded_at)")
    op.execute("CREATE INDEX ix_checkins_worker_recorded ON checkins (worker_id, recorded_at)")
    op.execute("CREATE TABLE checkins_default PARTITION OF checkins DEFAULT")
    op.execute(WEEK_PARTITION_FUNCTION)
    # Every week that holds rows, this week and the next, then the rows.
    op.execute(
        "SELECT checkin_week_partition(w) FROM (SELECT min(recorded_at) AS w"
        " FROM checkins_unpartitioned"
        " GROUP BY date_trunc('week', recorded_at AT TIME ZONE 'Asia/Shanghai')"
        " UNION ALL SELECT now() UNION ALL SELECT now() + interval '7 days') AS weeks"
    )
    op.execute(f"INSERT INTO checkins ({_COLUMNS}) SELECT {_COLUMNS} FROM checkins_unpartitioned")
    op.execute("DROP TABLE checkins_unpartitioned")


def downgrade() -> None:
    """A plain checkins table again, with every partition's rows, keyed by event_id."""
    op.execute("ALTER TABLE checkins RENAME TO checkins_partitioned")
    op.execute("ALTER TABLE checkins_partitioned RENAME CONSTRAINT pk_checkins TO pk_checkins_new")
    for index in ("ix_checkins_geom", "ix_checkins_grid_recorded", "ix_checkins_worker_recorded"):
        op.execute(f"ALTER INDEX {index} RENAME TO {index}_new")
    op.execute("CREATE TABLE checkins (LIKE checkins_partitioned INCLUDING DEFAULTS)")
    op.execute("ALTER TABLE checkins ADD CONSTRAINT pk_checkins PRIMARY KEY (event_id)")
    # An event id stored under two times (see docs) keeps its earliest row.
    op.execute(
        f"INSERT INTO checkins ({_COLUMNS}) SELECT DISTINCT ON (event_id) {_COLUMNS}"
        " FROM checkins_partitioned ORDER BY event_id, recorded_at"
    )
    op.execute("DROP TABLE checkins_partitioned CASCADE")
    op.execute("DROP FUNCTION checkin_week_partition(timestamptz)")
    op.execute("CREATE INDEX ix_checkins_geom ON checkins USING gist (geom)")
    op.execute("CREATE INDEX ix_checkins_grid_recorded ON checkins (grid_code, recorded_at)")
    op.execute("CREATE INDEX ix_checkins_worker_recorded ON checkins (worker_id, recorded_at)")
