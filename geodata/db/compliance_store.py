"""Persistence of the compliance engine: its check-in copy, patrols, statuses, outbox, clock.

Functions run inside the consumer's transaction and never commit.
"""

import uuid
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime

import psycopg

from geodata.compliance import CheckinRecord, ComplianceKey, IsoWeek, Patrol
from geodata.compliance.watermark import PartitionProgress
from geodata.db.partitions import make_week_partitions
from geodata.events import ComplianceChange

CLOCK_NAME = "engine"
OUTBOX_CHANNEL = "wangge_compliance_outbox"
"""The PostgreSQL channel that tells the outbox publisher new changes are queued."""


@dataclass(frozen=True)
class PatrolRow:
    """A patrol as stored, with the event time at which it became valid."""

    patrol: Patrol
    valid_at: datetime | None


@dataclass(frozen=True)
class StoredStatus:
    """The status the engine last recorded (and published) for a key."""

    status: str
    counted: int
    required: int


CheckinKey = tuple[uuid.UUID, datetime]
"""A stored check-in's key: its event id and event time (the table is partitioned by the
time, so its key holds it; docs/HISTORY.md)."""


def insert_checkins(
    conn: psycopg.Connection, rows: Sequence[tuple[CheckinRecord, bool]]
) -> set[CheckinKey]:
    """Copy check-ins in (with `in_assigned_grid`); return the keys that were new."""
    if not rows:
        return set()
    conn.execute(
        "CREATE TEMP TABLE IF NOT EXISTS patrol_checkins_stage (event_id uuid, worker_id text,"
        " grid_code text, recorded_at timestamptz, accuracy_m float8, in_assigned_grid boolean,"
        " mock boolean, implausible_speed boolean) ON COMMIT DELETE ROWS"
    )
    with conn.cursor() as cursor:
        with cursor.copy(
            "COPY patrol_checkins_stage (event_id, worker_id, grid_code, recorded_at,"
            " accuracy_m, in_assigned_grid, mock, implausible_speed) FROM STDIN"
        ) as copy:
            for record, in_assigned in rows:
                copy.write_row(
                    (
                        record.event_id,
                        record.worker_id,
                        record.grid_code,
                        record.recorded_at,
                        record.accuracy_m,
                        in_assigned,
                        record.mock,
                        record.implausible_speed,
                    )
                )
        make_week_partitions(conn, "patrol_checkins", "patrol_checkins_stage")
        cursor.execute(
            "INSERT INTO patrol_checkins (event_id, worker_id, grid_code, recorded_at,"
            " accuracy_m, in_assigned_grid, mock, implausible_speed)"
            " SELECT DISTINCT ON (event_id, recorded_at) * FROM patrol_checkins_stage"
            " ON CONFLICT (event_id, recorded_at) DO NOTHING RETURNING event_id, recorded_at"
        )
        return {(event_id, recorded_at) for event_id, recorded_at in cursor.fetchall()}


def mark_late(conn: psycopg.Connection, keys: Iterable[CheckinKey]) -> None:
    """Flag check-ins that arrived after their week was final."""
    pairs = list(keys)
    if pairs:
        # The times in the condition let each key probe its own week's partition only.
        conn.execute(
            "UPDATE patrol_checkins c SET late = true"
            " FROM unnest(%s::uuid[], %s::timestamptz[]) AS k(event_id, recorded_at)"
            " WHERE c.event_id = k.event_id AND c.recorded_at = k.recorded_at"
            " AND c.recorded_at >= %s AND c.recorded_at <= %s",
            (
                [p[0] for p in pairs],
                [p[1] for p in pairs],
                min(p[1] for p in pairs),
                max(p[1] for p in pairs),
            ),
        )


def lock_clock(conn: psycopg.Connection) -> tuple[datetime | None, date | None]:
    """The watermark and last evaluated day, locked for this transaction.

    The lock serialises compliance batches across consumer processes, which is what
    makes the day-boundary evaluation of every worker safe to run from any of them, and
    each member's read and write of the partitions' progress one step of one sequence.
    """
    conn.execute(
        "INSERT INTO compliance_clock (name, watermark, evaluated_day)"
        " VALUES (%s, NULL, NULL) ON CONFLICT (name) DO NOTHING",
        (CLOCK_NAME,),
    )
    row = conn.execute(
        "SELECT watermark, evaluated_day FROM compliance_clock WHERE name = %s FOR UPDATE",
        (CLOCK_NAME,),
    ).fetchone()
    assert row is not None
    return row[0], row[1]


def save_clock(conn: psycopg.Connection, watermark: datetime, evaluated_day: date | None) -> None:
    """Store the watermark and the last evaluated day."""
    conn.execute(
        "UPDATE compliance_clock SET watermark = %s, evaluated_day = %s WHERE name = %s",
        (watermark, evaluated_day, CLOCK_NAME),
    )


def load_partitions(conn: psycopg.Connection, topic: str) -> dict[int, PartitionProgress]:
    """Every partition's progress as the group's members stored it (`save_partitions`).

    Read after `lock_clock`, so no other member's batch is between the read and the write.
    """
    rows = conn.execute(
        "SELECT partition, newest, read_to_end FROM compliance_partitions WHERE topic = %s",
        (topic,),
    ).fetchall()
    return {partition: PartitionProgress(newest, ended) for partition, newest, ended in rows}


def save_partitions(
    conn: psycopg.Connection, topic: str, progress: Mapping[int, PartitionProgress]
) -> None:
    """Store the progress of a member's own partitions."""
    if not progress:
        return
    conn.execute(
        "INSERT INTO compliance_partitions (topic, partition, newest, read_to_end)"
        " SELECT %s, * FROM unnest(%s::int[], %s::timestamptz[], %s::boolean[])"
        " ON CONFLICT (topic, partition) DO UPDATE SET newest = excluded.newest,"
        " read_to_end = excluded.read_to_end, updated_at = now()",
        (
            topic,
            list(progress),
            [p.newest for p in progress.values()],
            [p.read_to_end for p in progress.values()],
        ),
    )


def load_checkins(
    conn: psycopg.Connection, keys: Iterable[tuple[str, str, datetime, datetime]]
) -> dict[tuple[str, str], list[CheckinRecord]]:
    """On-time check-ins of each (worker, grid) within [from, to), in one query."""
    spans = list(keys)
    if not spans:
        return {}
    rows = conn.execute(
        """
        SELECT DISTINCT c.event_id, c.worker_id, c.grid_code, c.recorded_at, c.accuracy_m,
               c.mock, c.implausible_speed
        FROM unnest(%s::text[], %s::text[], %s::timestamptz[], %s::timestamptz[])
             AS k(worker_id, grid_code, t_from, t_to)
        JOIN patrol_checkins c ON c.worker_id = k.worker_id AND c.grid_code = k.grid_code
         AND c.recorded_at >= k.t_from AND c.recorded_at < k.t_to
        WHERE NOT c.late AND c.recorded_at >= %s AND c.recorded_at < %s
        """,
        (
            [s[0] for s in spans],
            [s[1] for s in spans],
            [s[2] for s in spans],
            [s[3] for s in spans],
            # The spans' bounds as constants: the plan reads only their weeks' partitions,
            # whatever join it picks (docs/HISTORY.md).
            min(s[2] for s in spans),
            max(s[3] for s in spans),
        ),
    ).fetchall()
    result: dict[tuple[str, str], list[CheckinRecord]] = defaultdict(list)
    for event_id, worker, grid, recorded_at, accuracy, mock, fast in rows:
        result[(worker, grid)].append(
            CheckinRecord(
                event_id, worker, grid, recorded_at, accuracy, mock=mock, implausible_speed=fast
            )
        )
    return result


def replace_patrols(
    conn: psycopg.Connection, patrols_by_key: Mapping[ComplianceKey, Sequence[PatrolRow]]
) -> None:
    """Store the patrols of each (worker, grid, week) in place of its previous ones.

    One DELETE and one COPY for the whole batch: per key, the two statements were half
    of the engine's time.
    """
    if not patrols_by_key:
        return
    keys = list(patrols_by_key)
    conn.execute(
        "DELETE FROM patrols p USING unnest(%s::text[], %s::text[], %s::text[])"
        " AS k(worker_id, grid_code, week)"
        " WHERE p.worker_id = k.worker_id AND p.grid_code = k.grid_code AND p.week = k.week",
        _key_arrays(keys),
    )
    _copy_patrols(conn, patrols_by_key.items())


def replace_patrol_days(
    conn: psycopg.Connection,
    days_by_key: Mapping[ComplianceKey, Mapping[date, Sequence[PatrolRow]]],
) -> None:
    """Store the patrols of the given local days of each (worker, grid, week) in place of
    those days' previous ones (an empty day only deletes); other days stay as stored.

    The incremental engine re-decides only the days a batch touches, so a Sunday check-in
    rewrites Sunday's patrols, not the week's.
    """
    cells = [(key, day) for key, days in days_by_key.items() for day in days]
    if not cells:
        return
    conn.execute(
        "DELETE FROM patrols p USING unnest(%s::text[], %s::text[], %s::text[], %s::date[])"
        " AS k(worker_id, grid_code, week, local_day)"
        " WHERE p.worker_id = k.worker_id AND p.grid_code = k.grid_code AND p.week = k.week"
        " AND p.local_day = k.local_day",
        (*_key_arrays([key for key, _ in cells]), [day for _, day in cells]),
    )
    _copy_patrols(conn, ((key, days_by_key[key][day]) for key, day in cells))


def _copy_patrols(
    conn: psycopg.Connection, groups: Iterable[tuple[ComplianceKey, Sequence[PatrolRow]]]
) -> None:
    """COPY each group's patrol rows into `patrols` under its (worker, grid, week)."""
    with (
        conn.cursor() as cursor,
        cursor.copy(
            "COPY patrols (worker_id, grid_code, week, local_day, started_at, ended_at,"
            " checkin_count, valid, valid_at, counted, reason) FROM STDIN"
        ) as copy,
    ):
        for key, rows in groups:
            week = str(key.week)
            for row in rows:
                patrol = row.patrol
                copy.write_row(
                    (key.worker_id, key.grid_code, week, patrol.day, patrol.start, patrol.end,
                     patrol.checkin_count, patrol.valid, row.valid_at, patrol.counted,
                     _reason(patrol))
                )  # fmt: skip


def _key_arrays(keys: Sequence[ComplianceKey]) -> tuple[list[str], list[str], list[str]]:
    """Keys as the three arrays of an `unnest(worker_id, grid_code, week)`."""
    return [k.worker_id for k in keys], [k.grid_code for k in keys], [str(k.week) for k in keys]


def _reason(patrol: Patrol) -> str:
    if patrol.invalid_reason is not None:
        return f"invalid:{patrol.invalid_reason}"
    return patrol.count_reason


def counted_days(
    conn: psycopg.Connection, week: IsoWeek, as_of: datetime, max_per_day: int
) -> dict[tuple[str, str], dict[date, int]]:
    """Counted patrols per (worker, grid) and local day of a week, as of an event time."""
    rows = conn.execute(
        "SELECT worker_id, grid_code, local_day, count(*) FROM patrols"
        " WHERE week = %s AND valid_at IS NOT NULL AND valid_at <= %s"
        " GROUP BY worker_id, grid_code, local_day",
        (str(week), as_of),
    ).fetchall()
    result: dict[tuple[str, str], dict[date, int]] = defaultdict(dict)
    for worker, grid, day, count in rows:
        result[(worker, grid)][day] = min(int(count), max_per_day)
    return result


def keys_valid_between(
    conn: psycopg.Connection, after: datetime, upto: datetime
) -> list[ComplianceKey]:
    """The (worker, grid, week) keys with a patrol that became valid in (after, upto]."""
    rows = conn.execute(
        "SELECT DISTINCT worker_id, grid_code, week FROM patrols"
        " WHERE valid_at > %s AND valid_at <= %s",
        (after, upto),
    ).fetchall()
    return [ComplianceKey(w, g, IsoWeek.parse(week)) for w, g, week in rows]


def counted_days_of(
    conn: psycopg.Connection, keys: Sequence[ComplianceKey], as_of: datetime, max_per_day: int
) -> dict[ComplianceKey, dict[date, int]]:
    """Counted patrols per local day of the given keys' weeks, as of an event time."""
    if not keys:
        return {}
    rows = conn.execute(
        "SELECT p.worker_id, p.grid_code, p.week, p.local_day, count(*)"
        " FROM unnest(%s::text[], %s::text[], %s::text[]) AS k(worker_id, grid_code, week)"
        " JOIN patrols p USING (worker_id, grid_code, week)"
        " WHERE p.week = ANY(%s) AND p.valid_at IS NOT NULL AND p.valid_at <= %s"
        " GROUP BY p.worker_id, p.grid_code, p.week, p.local_day",
        (*_key_arrays(keys), sorted({str(k.week) for k in keys}), as_of),
    ).fetchall()
    result: dict[ComplianceKey, dict[date, int]] = defaultdict(dict)
    for worker, grid, week, day, count in rows:
        result[ComplianceKey(worker, grid, IsoWeek.parse(week))][day] = min(int(count), max_per_day)
    return result


def load_statuses(
    conn: psycopg.Connection, keys: Iterable[ComplianceKey]
) -> dict[ComplianceKey, StoredStatus]:
    """The recorded statuses of the given keys."""
    wanted = list(keys)
    if not wanted:
        return {}
    # The weeks as constants too: else the planner may join the keys to a scan of every
    # week's statuses, which grows with the history.
    rows = conn.execute(
        "SELECT s.worker_id, s.grid_code, s.week, s.status, s.counted, s.required"
        " FROM unnest(%s::text[], %s::text[], %s::text[]) AS k(worker_id, grid_code, week)"
        " JOIN patrol_weeks s USING (worker_id, grid_code, week) WHERE s.week = ANY(%s)",
        (*_key_arrays(wanted), sorted({str(k.week) for k in wanted})),
    ).fetchall()
    return {
        ComplianceKey(w, g, IsoWeek.parse(week)): StoredStatus(status, counted, required)
        for w, g, week, status, counted, required in rows
    }


def record_statuses(
    conn: psycopg.Connection,
    changes: Sequence[tuple[ComplianceKey, str | None, StoredStatus]],
    as_of: datetime,
    final_weeks: set[IsoWeek],
) -> int:
    """Upsert statuses and queue each change of status in the outbox; return the changes."""
    if not changes:
        return 0
    with conn.cursor() as cursor:
        cursor.executemany(
            "INSERT INTO patrol_weeks (worker_id, grid_code, week, required, counted, status,"
            " as_of, final) VALUES (%s, %s, %s, %s, %s, %s, %s, %s)"
            " ON CONFLICT (worker_id, grid_code, week) DO UPDATE SET required = EXCLUDED.required,"
            " counted = EXCLUDED.counted, status = EXCLUDED.status, as_of = EXCLUDED.as_of,"
            " final = EXCLUDED.final",
            [
                (
                    k.worker_id,
                    k.grid_code,
                    str(k.week),
                    s.required,
                    s.counted,
                    s.status,
                    as_of,
                    k.week in final_weeks,
                )
                for k, _old, s in changes
            ],
        )
        moved = [(k, old, s) for k, old, s in changes if old != s.status]
        cursor.executemany(
            "INSERT INTO compliance_changes (change_id, worker_id, grid_code, week, old_status,"
            " new_status, counted, required, changed_at)"
            " VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s)",
            [
                (
                    uuid.uuid4(),
                    k.worker_id,
                    k.grid_code,
                    str(k.week),
                    old,
                    s.status,
                    s.counted,
                    s.required,
                    as_of,
                )
                for k, old, s in moved
            ],
        )
    return len(moved)


def listen_outbox(conn: psycopg.Connection) -> None:
    """Subscribe an autocommit connection to the outbox channel (see `notify_outbox`)."""
    conn.execute(f"LISTEN {OUTBOX_CHANNEL}")


def notify_outbox(conn: psycopg.Connection) -> None:
    """Wake the outbox publisher once this transaction commits (NOTIFY waits for COMMIT)."""
    conn.execute(f"NOTIFY {OUTBOX_CHANNEL}")


_OUTBOX_LOCK_KEY = 0x77616E67  # "wang": one publisher across all consumer processes


def lock_outbox(conn: psycopg.Connection) -> bool:
    """Take the outbox publisher's lock for this transaction; False if another holds it."""
    row = conn.execute("SELECT pg_try_advisory_xact_lock(%s)", (_OUTBOX_LOCK_KEY,)).fetchone()
    return bool(row and row[0])


def pending_changes(conn: psycopg.Connection, limit: int) -> list[tuple[int, ComplianceChange]]:
    """The oldest unpublished status changes, in the order they were queued, with their
    outbox ids (for `mark_published`)."""
    rows = conn.execute(
        "SELECT id, change_id, worker_id, grid_code, week, old_status, new_status,"
        " counted, required, changed_at FROM compliance_changes"
        " WHERE published_at IS NULL ORDER BY id LIMIT %s",
        (limit,),
    ).fetchall()
    return [
        (
            row[0],
            ComplianceChange(
                event_id=row[1],
                worker_id=row[2],
                grid_code=row[3],
                week=row[4],
                old_status=row[5],
                new_status=row[6],
                counted_patrols=row[7],
                required_patrols=row[8],
                changed_at=row[9],
            ),
        )
        for row in rows
    ]


def mark_published(conn: psycopg.Connection, outbox_ids: Sequence[int]) -> None:
    """Record that these outbox entries are on the topic."""
    conn.execute(
        "UPDATE compliance_changes SET published_at = now() WHERE id = ANY(%s)",
        (list(outbox_ids),),
    )


def mark_final(conn: psycopg.Connection, last_final_week: IsoWeek) -> None:
    """Flag every recorded week up to `last_final_week` as final (frozen)."""
    # 'YYYY-Www' names sort like the weeks they name.
    conn.execute(
        "UPDATE patrol_weeks SET final = true WHERE NOT final AND week <= %s",
        (str(last_final_week),),
    )
