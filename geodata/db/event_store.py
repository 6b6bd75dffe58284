"""Where the pipeline keeps events: bulk writes through COPY, offsets beside them.

Functions take a psycopg connection inside the caller's transaction and never commit:
the consumer commits the rows and the Kafka offsets that produced them together.
"""

import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime

import psycopg
from psycopg.types.json import Jsonb

from geodata.db.partitions import make_week_partitions
from geodata.quality import Fix


@dataclass(frozen=True)
class StoredIncident:
    """An incident report with its grid, staff member or escalation."""

    incident_id: uuid.UUID
    event_id: uuid.UUID
    category: str
    description: str | None
    source: str
    reporter_id: str | None
    reported_at: datetime
    lon: float
    lat: float
    wgs_lon: float
    wgs_lat: float
    grid_code: str | None
    community_code: str | None
    staff_id: str | None
    assignment_rule: str
    escalated_to: str | None
    flags: list[str]
    payload: dict[str, object]


_CHECKIN_STAGE = """
CREATE TEMP TABLE IF NOT EXISTS checkins_stage (
    event_id uuid, worker_id text, recorded_at timestamptz, lon float8, lat float8,
    crs text, accuracy_m float8, wgs_lon float8, wgs_lat float8, grid_code text,
    in_assigned_grid boolean, assignment_rule text, flags text[]
) ON COMMIT DELETE ROWS
"""

_CHECKIN_COPY = (
    "COPY checkins_stage (event_id, worker_id, recorded_at, lon, lat, crs, accuracy_m,"
    " wgs_lon, wgs_lat, grid_code, in_assigned_grid, assignment_rule, flags) FROM STDIN"
)

# event_id comes back as text: the consumer already holds each id as text (for the
# CloudEvents ce_id), and comparing strings beats building a UUID object per row.
_CHECKIN_INSERT = """
INSERT INTO checkins (event_id, worker_id, recorded_at, lon, lat, crs, accuracy_m, geom,
                      grid_code, staff_id, in_assigned_grid, assignment_rule, flags)
SELECT event_id, worker_id, recorded_at, lon, lat, crs, accuracy_m,
       ST_SetSRID(ST_MakePoint(wgs_lon, wgs_lat), 4326), grid_code, worker_id,
       in_assigned_grid, assignment_rule, flags
FROM checkins_stage
ON CONFLICT (event_id, recorded_at) DO NOTHING
RETURNING event_id::text
"""

# COPY's text format: backslash, tab, newline and carriage return must be escaped.
_COPY_ESCAPES = str.maketrans({"\\": "\\\\", "\t": "\\t", "\n": "\\n", "\r": "\\r"})
_COPY_NULL = "\\N"


@dataclass(frozen=True)
class CheckinBatch:
    """Check-ins column by column, as the consumer computes them for a whole batch.

    `event_ids` are in UUID text form; the flags are plain identifiers.
    """

    event_ids: Sequence[str]
    worker_ids: Sequence[str]
    recorded_at: Sequence[datetime]
    lon: Sequence[float]
    lat: Sequence[float]
    crs: Sequence[str]
    accuracy_m: Sequence[float | None]
    wgs_lon: Sequence[float]
    wgs_lat: Sequence[float]
    grid_codes: Sequence[str | None]
    in_assigned_grid: Sequence[bool]
    assignment_rules: Sequence[str]
    flags: Sequence[Sequence[str]]

    def __len__(self) -> int:
        """Number of check-ins."""
        return len(self.event_ids)


def format_checkins(batch: CheckinBatch) -> str:
    """The batch as COPY text rows, formatted in one pass (no per-value adaptation)."""
    columns = (
        batch.event_ids,
        batch.worker_ids,
        batch.recorded_at,
        batch.lon,
        batch.lat,
        batch.crs,
        batch.accuracy_m,
        batch.wgs_lon,
        batch.wgs_lat,
        batch.grid_codes,
        batch.in_assigned_grid,
        batch.assignment_rules,
        batch.flags,
    )
    return "".join([_copy_line(*row) for row in zip(*columns, strict=True)])


def _copy_line(
    event_id: str,
    worker: str,
    at: datetime,
    lon: float,
    lat: float,
    crs: str,
    accuracy: float | None,
    wgs_lon: float,
    wgs_lat: float,
    code: str | None,
    assigned: bool,
    rule: str,
    flags: Sequence[str],
) -> str:
    # repr() of a float is the shortest text that reads back as the very same double.
    return (
        f"{event_id}\t{worker.translate(_COPY_ESCAPES)}\t{at.isoformat()}\t{lon!r}\t{lat!r}\t"
        f"{crs.translate(_COPY_ESCAPES)}\t{_COPY_NULL if accuracy is None else repr(accuracy)}\t"
        f"{wgs_lon!r}\t{wgs_lat!r}\t"
        f"{_COPY_NULL if code is None else code.translate(_COPY_ESCAPES)}\t"
        f"{'t' if assigned else 'f'}\t{rule}\t{{{','.join(flags)}}}\n"
    )


def insert_formatted_checkins(conn: psycopg.Connection, rows: str) -> set[str]:
    """COPY rows made by `format_checkins` in; return the ids (text) that were new."""
    if not rows:
        return set()
    conn.execute(_CHECKIN_STAGE)
    with conn.cursor() as cursor:
        with cursor.copy(_CHECKIN_COPY) as copy:
            copy.write(rows)
        # Each week's rows land in their own partition (docs/HISTORY.md).
        make_week_partitions(conn, "checkins", "checkins_stage")
        cursor.execute(_CHECKIN_INSERT)
        return {row[0] for row in cursor.fetchall()}


def insert_incidents(conn: psycopg.Connection, rows: Sequence[StoredIncident]) -> set[uuid.UUID]:
    """Insert incidents; return the event ids that were new."""
    inserted: set[uuid.UUID] = set()
    with conn.cursor() as cursor:
        for r in rows:
            cursor.execute(
                """
                INSERT INTO incidents (incident_id, event_id, category, description, source,
                    reporter_id, reported_at, lon, lat, geom, grid_code, community_code,
                    staff_id, assignment_rule, escalated_to, flags, payload)
                VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s,
                    ST_SetSRID(ST_MakePoint(%s, %s), 4326), %s, %s, %s, %s, %s, %s, %s)
                ON CONFLICT DO NOTHING
                RETURNING event_id
                """,
                (
                    r.incident_id,
                    r.event_id,
                    r.category,
                    r.description,
                    r.source,
                    r.reporter_id,
                    r.reported_at,
                    r.lon,
                    r.lat,
                    r.wgs_lon,
                    r.wgs_lat,
                    r.grid_code,
                    r.community_code,
                    r.staff_id,
                    r.assignment_rule,
                    r.escalated_to,
                    r.flags,
                    Jsonb(r.payload),
                ),
            )
            row = cursor.fetchone()
            if row is not None:
                inserted.add(row[0])
    return inserted


def open_incident_counts(conn: psycopg.Connection, worker_ids: Iterable[str]) -> dict[str, int]:
    """How many incidents each worker holds that are not closed yet."""
    ids = sorted(set(worker_ids))
    if not ids:
        return {}
    rows = conn.execute(
        "SELECT staff_id, count(*) FROM incidents WHERE staff_id = ANY(%s)"
        " AND status NOT IN ('closed', 'cancelled') GROUP BY staff_id",
        (ids,),
    ).fetchall()
    return {str(worker): int(count) for worker, count in rows}


def stored_incident_events(
    conn: psycopg.Connection, event_ids: Sequence[uuid.UUID]
) -> set[uuid.UUID]:
    """Which of `event_ids` are stored as the report of an incident."""
    if not event_ids:
        return set()
    rows = conn.execute(
        "SELECT event_id FROM incidents WHERE event_id = ANY(%s)", (list(event_ids),)
    ).fetchall()
    return {row[0] for row in rows}


def load_offsets(
    conn: psycopg.Connection,
    group: str,
    topic: str,
    partitions: Iterable[int],
    topic_id: str | None = None,
) -> dict[int, int]:
    """The next offset to read per partition, as committed with the rows.

    With `topic_id`, offsets stored for another incarnation of the topic (one the broker
    has lost since) are left out: they count in a log that no longer exists.
    """
    rows = conn.execute(
        "SELECT partition, next_offset FROM consumer_offsets"
        " WHERE consumer_group = %s AND topic = %s AND partition = ANY(%s)"
        " AND (%s::text IS NULL OR topic_id IS NULL OR topic_id = %s::text)",
        (group, topic, sorted(partitions), topic_id, topic_id),
    ).fetchall()
    return {int(p): int(o) for p, o in rows}


def store_offsets(
    conn: psycopg.Connection,
    group: str,
    topic: str,
    next_offsets: dict[int, int],
    topic_id: str | None = None,
) -> None:
    """Record next offsets; never move one backwards (a fenced-off zombie may still write),
    except into a new incarnation of the topic, whose offsets start again at 0."""
    if not next_offsets:
        return
    with conn.cursor() as cursor:
        cursor.executemany(
            """
            INSERT INTO consumer_offsets (consumer_group, topic, partition, next_offset, topic_id)
            VALUES (%s, %s, %s, %s, %s)
            ON CONFLICT (consumer_group, topic, partition)
            DO UPDATE SET
                next_offset = CASE
                    WHEN EXCLUDED.topic_id IS NOT NULL
                         AND consumer_offsets.topic_id IS DISTINCT FROM EXCLUDED.topic_id
                    THEN EXCLUDED.next_offset
                    ELSE GREATEST(consumer_offsets.next_offset, EXCLUDED.next_offset)
                END,
                topic_id = COALESCE(EXCLUDED.topic_id, consumer_offsets.topic_id)
            """,
            [(group, topic, p, o, topic_id) for p, o in sorted(next_offsets.items())],
        )


def last_fixes(conn: psycopg.Connection, worker_ids: Iterable[str]) -> dict[str, Fix]:
    """Each worker's latest stored fix (by event time), for the speed plausibility check."""
    ids = sorted(set(worker_ids))
    if not ids:
        return {}
    # One newest row per worker, read backwards from each week's (worker, time) index,
    # rather than every row of the worker's whole history sorted.
    rows = conn.execute(
        "SELECT w.worker_id, c.recorded_at, ST_X(c.geom), ST_Y(c.geom)"
        " FROM unnest(%s::text[]) AS w(worker_id) CROSS JOIN LATERAL"
        " (SELECT recorded_at, geom FROM checkins WHERE worker_id = w.worker_id"
        "  ORDER BY recorded_at DESC LIMIT 1) AS c",
        (ids,),
    ).fetchall()
    return {str(w): Fix(t, float(x), float(y)) for w, t, x, y in rows}
