"""Archiving closed weeks of `checkins` and `patrol_checkins` to files, dropping them, and
loading them back.

Each week is archived in one transaction of its own: lock its two partitions against
writes, read their rows, write `checkins_2020w37.parquet` (GeoParquet) and
`patrol_checkins_2020w37.parquet`, read each file back and compare its bytes' SHA-256,
row count and rows' digest, record both in the manifest, and only then detach and drop
the partitions. Anything that fails before the drop rolls back and leaves the partitions
as they were. A restore checks every file it is asked for before loading any, then loads
each week in one transaction: the week's partitions made again by `week_partition`, the
rows added (a row already there is kept), and the week's rows read back and compared with
the manifest before commit.

The rest of the compliance engine's tables (`patrols`, `patrol_weeks`,
`compliance_changes`), `coverage_days` and incidents stay, so a week's compliance,
coverage and evaluation figures read the same while it is archived (docs/HISTORY.md).
"""

import logging
from collections.abc import Callable, Sequence
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any, Final

import geopandas as gpd
import pandas as pd
import psycopg
import shapely

from geodata.archive import (
    ARCHIVED_TABLES,
    CHECKINS,
    PARTITION_ZONE,
    ArchiveCorrupted,
    ArchivedFile,
    ArchivedPartition,
    ArchivedTable,
    ArchiveRefused,
    array_text,
    file_sha256,
    is_closed,
    partition_week,
    read_manifest,
    retention_cutoff,
    rows_digest,
    weeks_before,
    write_manifest,
)
from geodata.compliance.weeks import IsoWeek
from geodata.db.compliance_store import CLOCK_NAME
from geodata.db.engine import libpq_url

logger = logging.getLogger(__name__)

Progress = Callable[[str, int, int], None]

DETACH_WAIT: Final = "5s"
FETCH_ROWS: Final = 50_000


def _no_progress(step: str, done: int, total: int) -> None:
    """Progress reported to nobody."""


def _connect(database_url: str) -> psycopg.Connection:
    conn = psycopg.connect(libpq_url(database_url))
    # Instants come back in UTC, so the digest's text is the same from any session.
    conn.execute("SET TIME ZONE 'UTC'")
    conn.commit()
    return conn


def _select(table: ArchivedTable) -> str:
    columns = ", ".join("event_id::text" if c == "event_id" else c for c in table.columns)
    return columns + (", ST_AsBinary(geom)" if table.geometry else "")


def _frame(rows: Sequence[tuple[Any, ...]], table: ArchivedTable) -> pd.DataFrame:
    width = len(table.columns)
    frame = pd.DataFrame([r[:width] for r in rows], columns=list(table.columns))
    for column in table.times:
        frame[column] = pd.to_datetime(frame[column], utc=True)
    for column in table.floats:
        frame[column] = frame[column].astype("float64")
    if not table.geometry:
        return frame
    geometry = shapely.from_wkb([bytes(r[-1]) for r in rows]) if rows else []
    # geopandas is untyped: the annotation keeps the Any out of the return.
    located: pd.DataFrame = gpd.GeoDataFrame(
        frame, geometry=gpd.GeoSeries(geometry, crs=4326), crs=4326
    ).rename_geometry("geom")
    return located


def fetch_rows(
    conn: psycopg.Connection, where: str, params: Sequence[Any], table: ArchivedTable = CHECKINS
) -> pd.DataFrame:
    """The rows of `table` that `where` selects, as the archive's frame (a GeoDataFrame,
    geometry column `geom`, for a table with a geometry).

    Read FETCH_ROWS at a time through a server-side cursor: a week's rows as Python
    tuples all at once would take several times the memory of its frame.
    """
    frames: list[pd.DataFrame] = []
    with conn.cursor(name="archive_rows") as cursor:
        cursor.execute(f"SELECT {_select(table)} FROM {table.name} WHERE {where}", params)
        while rows := cursor.fetchmany(FETCH_ROWS):
            frames.append(_frame(rows, table))
    if len(frames) == 1:
        return frames[0]
    if not frames:
        return _frame([], table)
    joined = pd.concat(frames, ignore_index=True)
    return gpd.GeoDataFrame(joined, geometry="geom", crs=4326) if table.geometry else joined


def read_watermark(conn: psycopg.Connection) -> datetime | None:
    """The compliance engine's event-time watermark; None before its first check-in."""
    row = conn.execute(
        "SELECT watermark FROM compliance_clock WHERE name = %s", (CLOCK_NAME,)
    ).fetchone()
    return row[0] if row else None


def partition_weeks(conn: psycopg.Connection, table: ArchivedTable = CHECKINS) -> list[IsoWeek]:
    """The weeks that have a partition of `table`."""
    names = conn.execute(
        "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid"
        " WHERE i.inhparent = %s::regclass",
        (table.name,),
    ).fetchall()
    return sorted(w for (name,) in names if (w := partition_week(name, table)) is not None)


def _make_partition(conn: psycopg.Connection, table: ArchivedTable, t: datetime) -> None:
    """Make `table`'s partition of `t`'s week where missing, or refuse: the maker gave up
    on a lock (migration 0023's `week_partition`)."""
    made = conn.execute("SELECT week_partition(%s, %s)", (table.name, t)).fetchone()
    if made is None or made[0] is None:
        raise ArchiveRefused(f"{table.name}_default is busy; run the command again")


def _settle_default(conn: psycopg.Connection, cutoff: date) -> None:
    """Give every week before `cutoff` that has rows in a default partition its partition,
    so the archive sees them (the maker moves them out of the default one)."""
    limit = datetime.combine(cutoff, datetime.min.time(), PARTITION_ZONE)
    for table in ARCHIVED_TABLES:
        weeks = conn.execute(
            f"SELECT min(recorded_at) FROM {table.name}_default WHERE recorded_at < %s"
            " GROUP BY date_trunc('week', recorded_at AT TIME ZONE 'Asia/Shanghai')",
            (limit,),
        ).fetchall()
        for (t,) in weeks:
            _make_partition(conn, table, t)
    conn.commit()


def plan_archive(
    conn: psycopg.Connection, cutoff: date, allowed_lateness: timedelta, *, skip_open: bool
) -> list[IsoWeek]:
    """The partitions' weeks that end by `cutoff`; an open one among them is refused (or,
    with `skip_open`, left for a later run)."""
    _settle_default(conn, cutoff)
    watermark = read_watermark(conn)
    held = {w for table in ARCHIVED_TABLES for w in partition_weeks(conn, table)}
    weeks = weeks_before(held, cutoff)
    open_weeks = [w for w in weeks if not is_closed(w, watermark, allowed_lateness)]
    if open_weeks and not skip_open:
        raise ArchiveRefused(
            f"{', '.join(map(str, open_weeks))} not closed yet (the compliance watermark"
            f" {watermark.isoformat() if watermark else 'is not set'}, lateness"
            f" {allowed_lateness}): refusing to archive an open week"
        )
    return [w for w in weeks if w not in open_weeks]


def write_partition_file(frame: pd.DataFrame, path: Path) -> None:
    """Write the week's rows as (Geo)Parquet, in full or not at all (a partial file renamed)."""
    partial = path.with_suffix(".parquet.partial")
    frame.to_parquet(partial, index=False)
    partial.replace(path)


def verify_file(
    path: Path, entry: ArchivedFile | ArchivedPartition, table: ArchivedTable = CHECKINS
) -> pd.DataFrame:
    """The file's rows, once its bytes, row count and rows match `entry`; else refused."""
    if not path.exists():
        raise ArchiveCorrupted(f"{path.name} is missing")
    if file_sha256(path) != entry.sha256:
        raise ArchiveCorrupted(f"{path.name}: its SHA-256 is not the manifest's")
    try:
        frame = gpd.read_parquet(path) if table.geometry else pd.read_parquet(path)
    except Exception as exc:  # pyarrow raises many kinds for a damaged file
        raise ArchiveCorrupted(f"{path.name} cannot be read: {exc}") from exc
    if len(frame) != entry.rows:
        raise ArchiveCorrupted(f"{path.name} holds {len(frame)} rows, not {entry.rows}")
    if rows_digest(frame, table) != entry.content_sha256:
        raise ArchiveCorrupted(f"{path.name}: its rows are not the ones archived")
    return frame


def _archive_partition(
    conn: psycopg.Connection, table: ArchivedTable, week: IsoWeek, out: Path
) -> ArchivedFile:
    """Write one week's partition of `table` to its file and check it (nothing dropped)."""
    name = table.partition_name(week)
    start, end = week.start(PARTITION_ZONE), week.end(PARTITION_ZONE)
    frame = fetch_rows(conn, "recorded_at >= %s AND recorded_at < %s", (start, end), table)
    path = out / f"{name}.parquet"
    write_partition_file(frame, path)
    written = ArchivedFile(
        name, path.name, len(frame), file_sha256(path), rows_digest(frame, table)
    )
    verify_file(path, written, table)
    return written


def archive_week(conn: psycopg.Connection, week: IsoWeek, out: Path) -> ArchivedPartition:
    """Archive one closed week's partitions of both tables and drop them, in one transaction."""
    start, end = week.start(PARTITION_ZONE), week.end(PARTITION_ZONE)
    names = [table.partition_name(week) for table in ARCHIVED_TABLES]
    try:
        for table in ARCHIVED_TABLES:
            # A week may have a partition of one table only: the other's is made (empty),
            # so that every week's entry has both files.
            _make_partition(conn, table, start)
        for name in names:
            # Writers of this week wait (readers do not) until the partitions are gone.
            conn.execute(f'LOCK TABLE "{name}" IN SHARE MODE')
        checkins, patrol = (_archive_partition(conn, t, week, out) for t in ARCHIVED_TABLES)
        entry = ArchivedPartition(
            partition=checkins.partition,
            week=str(week),
            start=start.isoformat(),
            end=end.isoformat(),
            file=checkins.file,
            rows=checkins.rows,
            sha256=checkins.sha256,
            content_sha256=checkins.content_sha256,
            patrol_checkins=patrol,
        )
        write_manifest(out, [*read_manifest(out), entry])
        # Detaching waits for every reader of the table, and readers queue behind it: it
        # gives up after DETACH_WAIT rather than hold the API's reads (or the engine's)
        # for longer.
        conn.execute(f"SET LOCAL lock_timeout = '{DETACH_WAIT}'")
        for table, name in zip(ARCHIVED_TABLES, names, strict=True):
            conn.execute(f'ALTER TABLE {table.name} DETACH PARTITION "{name}"')
            conn.execute(f'DROP TABLE "{name}"')
        conn.commit()
    except psycopg.errors.LockNotAvailable as exc:
        conn.rollback()
        raise ArchiveRefused(
            f"{week} is archived to {out} but its tables stayed busy for {DETACH_WAIT}:"
            " nothing was dropped; run the archive again"
        ) from exc
    except BaseException:
        conn.rollback()
        raise
    logger.info(
        "archived %s: %d check-ins, %d patrol check-ins", week, entry.rows, entry.patrol_rows
    )
    return entry


def archive(
    database_url: str,
    cutoff: date,
    out: Path,
    allowed_lateness: timedelta,
    *,
    skip_open: bool = False,
    progress: Progress = _no_progress,
) -> list[ArchivedPartition]:
    """Archive and drop every closed week's partition that ends by `cutoff`."""
    out.mkdir(parents=True, exist_ok=True)
    read_manifest(out)  # a directory holding something else is refused before any work
    with _connect(database_url) as conn:
        weeks = plan_archive(conn, cutoff, allowed_lateness, skip_open=skip_open)
        entries: list[ArchivedPartition] = []
        progress("archiving weeks 归档周分区", 0, len(weeks))
        for i, week in enumerate(weeks, 1):
            entries.append(archive_week(conn, week, out))
            progress(f"archived {week} 已归档", i, len(weeks))
    return entries


def apply_retention(
    database_url: str,
    keep_weeks: int,
    out: Path,
    allowed_lateness: timedelta,
    *,
    progress: Progress = _no_progress,
) -> list[ArchivedPartition]:
    """Archive every closed week older than the `keep_weeks` newest (WANGGE_RETENTION_WEEKS)."""
    with _connect(database_url) as conn:
        watermark = read_watermark(conn)
    if watermark is None:
        return []
    cutoff = retention_cutoff(watermark, keep_weeks)
    return archive(database_url, cutoff, out, allowed_lateness, skip_open=True, progress=progress)


def _copy_text(frame: pd.DataFrame, table: ArchivedTable) -> str:
    """The frame as COPY's CSV (nulls as \\N), written by pandas a column at a time: a
    Python call per value cost 25 of a 300,000-row week's 69 s of loading (profiled)."""
    text = pd.DataFrame({c: frame[c] for c in table.columns})
    for column in table.arrays:
        text[column] = frame[column].map(array_text)
    for column in table.floats:
        # repr's shortest text that reads back as the same 64 bits.
        values = frame[column].astype("float64")
        text[column] = values.map(repr).where(values.notna(), None)
    if table.geometry:
        text["geom"] = shapely.to_wkb(
            shapely.set_srid(frame.geometry.to_numpy(), 4326), hex=True, include_srid=True
        )
    return text.to_csv(
        index=False, header=False, na_rep="\\N", date_format="%Y-%m-%d %H:%M:%S.%f%z"
    )


def _load_partition(
    conn: psycopg.Connection,
    table: ArchivedTable,
    entry: ArchivedPartition,
    expected: ArchivedFile,
    frame: pd.DataFrame,
) -> int:
    """Load one verified file of the week back into `table`, in the caller's transaction,
    and read its rows back against the manifest; the rows added."""
    start, end = entry.bounds
    _make_partition(conn, table, start)
    stage = f"restored_{table.name}"
    conn.execute(f"CREATE TEMP TABLE {stage} (LIKE {table.name} INCLUDING DEFAULTS) ON COMMIT DROP")
    columns = ", ".join(table.columns) + (", geom" if table.geometry else "")
    text = _copy_text(frame, table)
    with conn.cursor().copy(
        f"COPY {stage} ({columns}) FROM STDIN (FORMAT csv, NULL '\\N')"
    ) as copy:
        for first in range(0, len(text), 1 << 20):
            copy.write(text[first : first + (1 << 20)])
    added = conn.execute(
        f"INSERT INTO {table.name} SELECT * FROM {stage} ON CONFLICT DO NOTHING"
    ).rowcount
    back = fetch_rows(
        conn,
        "recorded_at >= %s AND recorded_at < %s"
        f" AND (event_id, recorded_at) IN (SELECT event_id, recorded_at FROM {stage})",
        (start, end),
        table,
    )
    if len(back) != expected.rows or rows_digest(back, table) != expected.content_sha256:
        raise ArchiveCorrupted(f"{expected.partition}: the loaded rows differ from the archive's")
    return added


def _load_week(
    conn: psycopg.Connection, entry: ArchivedPartition, frames: Sequence[pd.DataFrame]
) -> int:
    """Load one verified week back (each of its files), in one transaction; the rows added."""
    try:
        added = sum(
            _load_partition(conn, table, entry, expected, frame)
            for (table, expected), frame in zip(entry.files(), frames, strict=True)
        )
        conn.commit()
    except BaseException:
        conn.rollback()
        raise
    return added


def restore(
    database_url: str,
    directory: Path,
    weeks: Sequence[IsoWeek] | None = None,
    *,
    progress: Progress = _no_progress,
) -> list[tuple[ArchivedPartition, int]]:
    """Load archived weeks (all, or `weeks`) back into `checkins` and `patrol_checkins`;
    every file is checked before any is loaded. Returns each week's entry and the rows
    it added to both."""
    entries = read_manifest(directory)
    if not entries:
        raise ArchiveRefused(f"{directory} holds no archive manifest")
    if weeks is not None:
        wanted = {str(w) for w in weeks}
        missing = wanted - {e.week for e in entries}
        if missing:
            raise ArchiveRefused(f"not in the archive: {', '.join(sorted(missing))}")
        entries = [e for e in entries if e.week in wanted]
    progress("checking files 校验文件", 0, len(entries))
    for i, entry in enumerate(entries, 1):
        # Checked and let go: a year of weeks is not held in memory at once.
        for table, expected in entry.files():
            verify_file(directory / expected.file, expected, table)
        progress(f"checked {entry.week} 已校验", i, len(entries))
    loaded: list[tuple[ArchivedPartition, int]] = []
    with _connect(database_url) as conn:
        progress("restoring weeks 恢复周分区", 0, len(entries))
        for i, entry in enumerate(entries, 1):
            frames = [verify_file(directory / f.file, f, t) for t, f in entry.files()]
            loaded.append((entry, _load_week(conn, entry, frames)))
            progress(f"restored {entry.week} 已恢复", i, len(entries))
    return loaded
