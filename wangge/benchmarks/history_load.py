"""The growth benchmark's history: a year of a city's weeks, generated in SQL.

One template week is drawn once (`prepare_template`): every sampled worker's walks of a
week (3 to 5 on different days, 1 lazy worker in 10 walking 0 to 2), a fix every 30 s
for 40 to 90 minutes at points inside their grid, about 1.15 million fixes for Baoji.
Each week is then that template moved in time with fresh event ids (`load_week`), into
every table that grows with check-ins: `checkins` and `patrol_checkins` (each week's
partition filled as a table of its own, indexed, then attached: fast to load, and what
the storage stage and the engine leave, a week in its own partition, not in the default
one), `patrols`, `patrol_weeks`, `compliance_changes` and `coverage_days`, as the
storage stage and the compliance engine would have left them. Incidents grow with
reports, not check-ins, and none of the growth benchmark's measures reads them.
"""

import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta

import psycopg
from psycopg import sql

from geodata.compliance import ComplianceConfig, IsoWeek
from geodata.db.compliance_store import CLOCK_NAME

#: Every table that grows with check-ins, and so with the history.
GROWING = (
    "checkins",
    "patrol_checkins",
    "patrols",
    "patrol_weeks",
    "compliance_changes",
    "coverage_days",
)
#: The key and indexes of each week-partitioned table's partitions (migrations 0022, 0023).
_PARTITION_INDEXES = {
    "checkins": (
        "ALTER TABLE {} ADD PRIMARY KEY (event_id, recorded_at)",
        "CREATE INDEX ON {} USING gist (geom)",
        "CREATE INDEX ON {} (grid_code, recorded_at)",
        "CREATE INDEX ON {} (worker_id, recorded_at)",
    ),
    "patrol_checkins": (
        "ALTER TABLE {} ADD PRIMARY KEY (event_id, recorded_at)",
        "CREATE INDEX ON {} (worker_id, grid_code, recorded_at)",
    ),
}
POINTS_PER_GRID = 32
FIX_EVERY_S = 30
CELL_M = 10.0  # the coverage lattice's cell (geodata.coverage.CoverageConfig.cell_m)

_TEMPLATE = """
CREATE UNLOGGED TABLE hist_points AS
SELECT p.grid_code, d.path[1] - 1 AS k, ST_X(d.geom) AS lon, ST_Y(d.geom) AS lat
FROM (SELECT DISTINCT grid_code FROM hist_pairs) p
JOIN grids g ON g.code = p.grid_code AND g.valid_to IS NULL
CROSS JOIN LATERAL ST_Dump(ST_GeneratePoints(g.geom, {points}, 37)) d;

CREATE UNLOGGED TABLE hist_walks AS
WITH p AS (SELECT worker_id, grid_code, random() < 0.1 AS lazy, floor(random() * 7)::int AS d0
           FROM hist_pairs),
n AS (SELECT *, CASE WHEN lazy THEN floor(random() * 3)::int
                     ELSE 3 + floor(random() * 3)::int END AS walks FROM p)
SELECT n.worker_id, n.grid_code, j AS walk, (n.d0 + 3 * j) % 7 AS day,
       ((n.d0 + 3 * j) % 7) * 86400 + (7 + floor(random() * 12))::int * 3600
       + floor(random() * 3600)::int AS start_s,
       (80 + floor(random() * 101))::int AS fixes
FROM n CROSS JOIN LATERAL generate_series(0, n.walks - 1) AS j;

-- In time order, as the storage stage would have written them.
CREATE UNLOGGED TABLE hist_fixes AS
SELECT gen_random_uuid() AS event_id, w.worker_id, w.grid_code, w.day,
       w.start_s + i * {every} AS at_s, q.lon, q.lat,
       ST_SetSRID(ST_MakePoint(q.lon, q.lat), 4326) AS geom,
       round((5 + random() * 10)::numeric, 1)::float8 AS accuracy_m
FROM hist_walks w
CROSS JOIN LATERAL generate_series(0, w.fixes - 1) AS i
JOIN hist_points pt ON pt.grid_code = w.grid_code AND pt.k = (w.walk * 5 + i / 6) % {points}
CROSS JOIN LATERAL (SELECT pt.lon + (random() - 0.5) * 2e-4 AS lon,
                           pt.lat + (random() - 0.5) * 2e-4 AS lat) q
ORDER BY at_s;

-- A grid's covered cells on a day: its lattice window's bits, one in ten set.
CREATE UNLOGGED TABLE hist_cells AS
SELECT g.code AS grid_code, g.valid_from AS grid_from,
       substring(repeat('0000100000', n / 10 + 1), 1, n)::varbit AS cells
FROM grids g
CROSS JOIN LATERAL (SELECT greatest(1, ceil((ST_XMax(g.geom) - ST_XMin(g.geom)) * 111320
       * cos(radians(ST_Y(ST_Centroid(g.geom)))) / {cell})
       * ceil((ST_YMax(g.geom) - ST_YMin(g.geom)) * 110574 / {cell}))::int AS n) c
WHERE g.valid_to IS NULL AND g.code IN (SELECT grid_code FROM hist_pairs);
ANALYZE hist_walks; ANALYZE hist_fixes;
"""

# Parameters: tag (4 hex digits making the template's ids this week's), monday (the
# week's start), days (how many of its days), week ('2020-W37'), final, as_of.
_CHECKINS = """
INSERT INTO {part} (event_id, worker_id, recorded_at, lon, lat, crs, accuracy_m, geom,
    grid_code, staff_id, in_assigned_grid, assignment_rule, flags, late, received_at,
    assigned_at)
SELECT overlay(event_id::text PLACING %(tag)s FROM 1 FOR 4)::uuid, worker_id, t, lon, lat,
       'EPSG:4326', accuracy_m, geom, grid_code, worker_id, true, 'contains', '{{}}', false,
       t + interval '2 s', t + interval '2 s'
FROM hist_fixes CROSS JOIN LATERAL (SELECT %(monday)s + at_s * interval '1 s' AS t) x
WHERE day < %(days)s
"""
_PATROL_CHECKINS = """
INSERT INTO {part} (event_id, worker_id, grid_code, recorded_at, accuracy_m,
    in_assigned_grid, late, received_at, mock, implausible_speed)
SELECT overlay(event_id::text PLACING %(tag)s FROM 1 FOR 4)::uuid, worker_id, grid_code, t,
       accuracy_m, true, false, t + interval '3 s', false, false
FROM hist_fixes CROSS JOIN LATERAL (SELECT %(monday)s + at_s * interval '1 s' AS t) x
WHERE day < %(days)s
"""
# Every walk is valid (long enough) and counted (one a day): a patrol each.
_PATROLS = """
INSERT INTO patrols (worker_id, grid_code, week, local_day, started_at, ended_at,
    checkin_count, valid, valid_at, counted, reason)
SELECT worker_id, grid_code, %(week)s, %(day0)s::date + day, t,
       t + (fixes - 1) * interval '{every} s', fixes, true, t + interval '10 min', true,
       'counted'
FROM hist_walks CROSS JOIN LATERAL (SELECT %(monday)s + start_s * interval '1 s' AS t) x
WHERE day < %(days)s
"""
_PATROL_WEEKS = """
INSERT INTO patrol_weeks (worker_id, grid_code, week, required, counted, status, as_of, final)
SELECT p.worker_id, p.grid_code, %(week)s, 3, coalesce(w.n, 0),
       CASE WHEN coalesce(w.n, 0) >= 3 THEN 'met' WHEN %(final)s THEN 'missed'
            ELSE 'on_track' END, %(as_of)s, %(final)s
FROM hist_pairs p
LEFT JOIN (SELECT worker_id, grid_code, count(*) AS n FROM hist_walks WHERE day < %(days)s
           GROUP BY 1, 2) w USING (worker_id, grid_code)
"""
# A change as each of the first three patrols counts, and `missed` when a week closes short.
_CHANGES = """
INSERT INTO compliance_changes (change_id, worker_id, grid_code, week, old_status,
    new_status, counted, required, changed_at, created_at, published_at)
SELECT gen_random_uuid(), worker_id, grid_code, %(week)s,
       CASE WHEN r = 1 THEN NULL ELSE 'on_track' END,
       CASE WHEN r >= 3 THEN 'met' ELSE 'on_track' END, r, 3, t, t, t + interval '1 s'
FROM (SELECT worker_id, grid_code, start_s,
             row_number() OVER (PARTITION BY worker_id, grid_code ORDER BY start_s) AS r
      FROM hist_walks WHERE day < %(days)s) w
CROSS JOIN LATERAL (SELECT %(monday)s + (start_s + 600) * interval '1 s' AS t) x
WHERE r <= 3
UNION ALL
SELECT gen_random_uuid(), p.worker_id, p.grid_code, %(week)s, 'on_track', 'missed',
       coalesce(w.n, 0), 3, %(as_of)s, %(as_of)s, %(as_of)s + interval '1 s'
FROM hist_pairs p
LEFT JOIN (SELECT worker_id, grid_code, count(*) AS n FROM hist_walks GROUP BY 1, 2) w
     USING (worker_id, grid_code)
WHERE %(final)s AND coalesce(w.n, 0) < 3
"""
_COVERAGE = """
INSERT INTO coverage_days (grid_code, grid_from, local_day, cells)
SELECT c.grid_code, c.grid_from, %(day0)s::date + d.day, c.cells
FROM (SELECT DISTINCT grid_code, day FROM hist_walks WHERE day < %(days)s) d
JOIN hist_cells c USING (grid_code)
"""


@dataclass(frozen=True)
class WeekLoad:
    """One week loaded: its rows per table and the seconds it took."""

    week: IsoWeek
    rows: dict[str, int]
    seconds: float


def prepare_template(conn: psycopg.Connection, pairs: Sequence[tuple[str, str]]) -> int:
    """Draw the template week for these (worker, grid) pairs; the fixes it holds."""
    conn.execute("CREATE UNLOGGED TABLE hist_pairs (worker_id varchar(6), grid_code varchar(15))")
    with conn.cursor().copy("COPY hist_pairs FROM STDIN") as copy:
        for pair in pairs:
            copy.write_row(pair)
    conn.execute("SELECT setseed(0.37)")
    template = _TEMPLATE.format(points=POINTS_PER_GRID, every=FIX_EVERY_S, cell=CELL_M)
    conn.execute(template)
    conn.commit()
    row = conn.execute("SELECT count(*) FROM hist_fixes").fetchone()
    return int(row[0]) if row else 0


def drop_template(conn: psycopg.Connection) -> None:
    """Drop the template's tables."""
    for table in ("hist_fixes", "hist_walks", "hist_points", "hist_cells", "hist_pairs"):
        conn.execute(sql.SQL("DROP TABLE IF EXISTS {}").format(sql.Identifier(table)))
    conn.commit()


def partition_name(week: IsoWeek, table: str = "checkins") -> str:
    """The week's partition of `table`, named as `week_partition` names it."""
    return f"{table}_{week.year}w{week.week:02d}"


def load_week(
    conn: psycopg.Connection, week: IsoWeek, index: int, days: int = 7, *, final: bool = True
) -> WeekLoad:
    """Write the template as week `week` (its first `days` days) into every growing table.

    `index` (0 to 65,535) makes the week's event ids its own. The check-ins and the
    engine's copy of them each fill a table of their own, indexed once full and attached
    as the week's partition of `checkins` and `patrol_checkins`.
    """
    config = ComplianceConfig()
    began = time.perf_counter()
    monday, end = week.start(config.tz), week.end(config.tz)
    as_of = end + config.allowed_lateness if final else monday + timedelta(days=days)
    params = {
        "tag": f"{index:04x}",
        "monday": monday,
        "day0": week.days()[0],
        "days": days,
        "week": str(week),
        "final": final,
        "as_of": as_of,
    }
    rows = {
        table: _fill_partition(conn, table, week, statement, params)
        for table, statement in (("checkins", _CHECKINS), ("patrol_checkins", _PATROL_CHECKINS))
    }
    for table, statement in (
        ("patrols", _PATROLS.format(every=FIX_EVERY_S)),
        ("patrol_weeks", _PATROL_WEEKS),
        ("compliance_changes", _CHANGES),
        ("coverage_days", _COVERAGE),
    ):
        rows[table] = conn.execute(statement, params).rowcount
    conn.commit()
    return WeekLoad(week, rows, time.perf_counter() - began)


def _fill_partition(
    conn: psycopg.Connection, table: str, week: IsoWeek, insert: str, params: dict[str, object]
) -> int:
    """Fill a new table with the week's rows of `table`, give it the parent's key and
    indexes once full, attach it as the week's partition; its rows."""
    config = ComplianceConfig()
    monday, end = week.start(config.tz), week.end(config.tz)
    name = partition_name(week, table)
    part = sql.Identifier(name)
    conn.execute(
        sql.SQL("CREATE TABLE {} (LIKE {} INCLUDING DEFAULTS INCLUDING CONSTRAINTS)").format(
            part, sql.Identifier(table)
        )
    )
    conn.execute(sql.SQL(insert).format(part=part), params)
    # Built once on the full week; attaching adopts them as the parent's.
    for index_sql in _PARTITION_INDEXES[table]:
        conn.execute(sql.SQL(index_sql).format(part))
    # A constraint proving the bounds spares ATTACH a scan of the week.
    bounds = sql.Identifier(f"{name}_bounds")
    conn.execute(
        sql.SQL(
            "ALTER TABLE {} ADD CONSTRAINT {} CHECK (recorded_at >= {} AND recorded_at < {})"
        ).format(part, bounds, sql.Literal(monday), sql.Literal(end))
    )
    conn.execute(
        sql.SQL("ALTER TABLE {} ATTACH PARTITION {} FOR VALUES FROM ({}) TO ({})").format(
            sql.Identifier(table), part, sql.Literal(monday), sql.Literal(end)
        )
    )
    conn.execute(sql.SQL("ALTER TABLE {} DROP CONSTRAINT {}").format(part, bounds))
    return _rowcount(conn, sql.SQL("SELECT count(*) FROM {}").format(part))


def _rowcount(conn: psycopg.Connection, query: sql.Composed) -> int:
    row = conn.execute(query).fetchone()
    return int(row[0]) if row else 0


def set_engine_clock(conn: psycopg.Connection, watermark: datetime, evaluated_day: date) -> None:
    """Leave the compliance engine's clock where the loaded history ends."""
    conn.execute(
        "INSERT INTO compliance_clock (name, watermark, evaluated_day) VALUES (%s, %s, %s)"
        " ON CONFLICT (name) DO UPDATE SET watermark = EXCLUDED.watermark,"
        " evaluated_day = EXCLUDED.evaluated_day",
        (CLOCK_NAME, watermark, evaluated_day),
    )
    conn.commit()


def vacuum_analyze(url: str, tables: Sequence[str] = GROWING) -> None:
    """VACUUM ANALYZE the tables, as autovacuum would have over the weeks."""
    with psycopg.connect(url, autocommit=True) as conn:
        for table in tables:
            conn.execute(sql.SQL("VACUUM (ANALYZE) {}").format(sql.Identifier(table)))


def disk_bytes(conn: psycopg.Connection, table: str) -> int:
    """Bytes of a table with its indexes and TOAST, every partition included."""
    row = conn.execute(
        # pg_partition_tree lists nothing for a plain table.
        "SELECT coalesce((SELECT sum(pg_total_relation_size(relid))"
        " FROM pg_partition_tree(%s::regclass)), pg_total_relation_size(%s::regclass))",
        (table, table),
    ).fetchone()
    return int(row[0]) if row and row[0] is not None else 0


def rows_by_week(conn: psycopg.Connection) -> dict[str, dict[str, int]]:
    """Rows per local ISO week ('2020-W37') in every growing table, counted in the database."""
    tz = ComplianceConfig().timezone
    local = sql.SQL("to_char(recorded_at AT TIME ZONE {}, 'IYYY-\"W\"IW')").format(sql.Literal(tz))
    counts: dict[str, dict[str, int]] = {}
    for table, week in (
        ("checkins", local),
        ("patrol_checkins", local),
        ("patrols", sql.SQL("week")),
        ("patrol_weeks", sql.SQL("week")),
        ("compliance_changes", sql.SQL("week")),
        ("coverage_days", sql.SQL("to_char(local_day, 'IYYY-\"W\"IW')")),
    ):
        query = sql.SQL("SELECT {}, count(*) FROM {} GROUP BY 1").format(
            week, sql.Identifier(table)
        )
        for name, count in conn.execute(query):
            counts.setdefault(str(name), dict.fromkeys(GROWING, 0))[table] = int(count)
    return counts
