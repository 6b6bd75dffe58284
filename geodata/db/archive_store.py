"""Archiving closed weeks of `checkins` to GeoParquet, dropping them, and loading them back.

Each week's partition is archived in one transaction of its own: lock the partition
against writes, read its rows, write `checkins_2020w37.parquet`, read the file back with
geopandas and compare its bytes' SHA-256, row count and rows' digest, record it in the
manifest, and only then detach and drop the partition. Anything that fails before the
drop rolls back and leaves the partition as it was. A restore checks every file it is
asked for before loading any, then loads each week in one transaction: the week's
partition made again by `checkin_week_partition`, the rows added (a row already there is
kept), and the week's rows read back and compared with the manifest before commit.

Only `checkins` is archived. The compliance engine's tables (`patrol_checkins`,
`patrols`, `patrol_weeks`, `compliance_changes`), `coverage_days` and incidents stay, so a
week's compliance, coverage and evaluation figures read the same while it is archived
(docs/HISTORY.md).
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
    COLUMNS,
    PARTITION_ZONE,
    ArchiveCorrupted,
    ArchivedPartition,
    ArchiveRefused,
    array_text,
    file_sha256,
    is_closed,
    partition_name,
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

_SELECT: Final = (
    ", ".join("event_id::text" if c == "event_id" else c for c in COLUMNS) + ", ST_AsBinary(geom)"
)


def _no_progress(step: str, done: int, total: int) -> None:
    """Progress reported to nobody."""


def _connect(database_url: str) -> psycopg.Connection:
    conn = psycopg.connect(libpq_url(database_url))
    # Instants come back in UTC, so the digest's text is the same from any session.
    conn.execute("SET TIME ZONE 'UTC'")
    conn.commit()
    return conn


def _frame(rows: Sequence[tuple[Any, ...]]) -> gpd.GeoDataFrame:
    frame = pd.DataFrame([r[:-1] for r in rows], columns=list(COLUMNS))
    for column in ("recorded_at", "received_at", "assigned_at"):
        frame[column] = pd.to_datetime(frame[column], utc=True)
    for column in ("lon", "lat", "accuracy_m"):
        frame[column] = frame[column].astype("float64")
    geometry = shapely.from_wkb([bytes(r[-1]) for r in rows]) if rows else []
    return gpd.GeoDataFrame(
        frame, geometry=gpd.GeoSeries(geometry, crs=4326), crs=4326
    ).rename_geometry("geom")


def fetch_rows(conn: psycopg.Connection, where: str, params: Sequence[Any]) -> gpd.GeoDataFrame:
    """The check-ins `where` selects, as the archive's frame (geometry column `geom`).

    Read FETCH_ROWS at a time through a server-side cursor: a week's rows as Python
    tuples all at once would take several times the memory of its frame.
    """
    frames: list[gpd.GeoDataFrame] = []
    with conn.cursor(name="archive_rows") as cursor:
        cursor.execute(f"SELECT {_SELECT} FROM checkins WHERE {where}", params)
        while rows := cursor.fetchmany(FETCH_ROWS):
            frames.append(_frame(rows))
    if len(frames) == 1:
        return frames[0]
    if not frames:
        return _frame([])
    return gpd.GeoDataFrame(pd.concat(frames, ignore_index=True), geometry="geom", crs=4326)


def read_watermark(conn: psycopg.Connection) -> datetime | None:
    """The compliance engine's event-time watermark; None before its first check-in."""
    row = conn.execute(
        "SELECT watermark FROM compliance_clock WHERE name = %s", (CLOCK_NAME,)
    ).fetchone()
    return row[0] if row else None


def partition_weeks(conn: psycopg.Connection) -> list[IsoWeek]:
    """The weeks that have a partition of `checkins`."""
    names = conn.execute(
        "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid"
        " WHERE i.inhparent = 'checkins'::regclass"
    ).fetchall()
    return sorted(w for (name,) in names if (w := partition_week(name)) is not None)


def _settle_default(conn: psycopg.Connection, cutoff: date) -> None:
    """Give every week before `cutoff` that has rows in `checkins_default` its partition,
    so the archive sees them (the maker moves them out of the default one)."""
    limit = datetime.combine(cutoff, datetime.min.time(), PARTITION_ZONE)
    weeks = conn.execute(
        "SELECT min(recorded_at) FROM checkins_default WHERE recorded_at < %s"
        " GROUP BY date_trunc('week', recorded_at AT TIME ZONE 'Asia/Shanghai')",
        (limit,),
    ).fetchall()
    for (t,) in weeks:
        if conn.execute("SELECT checkin_week_partition(%s)", (t,)).fetchone() == (None,):
            raise ArchiveRefused("checkins_default is busy; run the archive again")
    conn.commit()


def plan_archive(
    conn: psycopg.Connection, cutoff: date, allowed_lateness: timedelta, *, skip_open: bool
) -> list[IsoWeek]:
    """The partitions' weeks that end by `cutoff`; an open one among them is refused (or,
    with `skip_open`, left for a later run)."""
    _settle_default(conn, cutoff)
    watermark = read_watermark(conn)
    weeks = weeks_before(partition_weeks(conn), cutoff)
    open_weeks = [w for w in weeks if not is_closed(w, watermark, allowed_lateness)]
    if open_weeks and not skip_open:
        raise ArchiveRefused(
            f"{', '.join(map(str, open_weeks))} not closed yet (the compliance watermark"
            f" {watermark.isoformat() if watermark else 'is not set'}, lateness"
            f" {allowed_lateness}): refusing to archive an open week"
        )
    return [w for w in weeks if w not in open_weeks]


def write_partition_file(frame: gpd.GeoDataFrame, path: Path) -> None:
    """Write the week's rows as GeoParquet, in full or not at all (a partial file renamed)."""
    partial = path.with_suffix(".parquet.partial")
    frame.to_parquet(partial, index=False)
    partial.replace(path)


def verify_file(path: Path, entry: ArchivedPartition) -> gpd.GeoDataFrame:
    """The file's rows, once its bytes, row count and rows match `entry`; else refused."""
    if not path.exists():
        raise ArchiveCorrupted(f"{path.name} is missing")
    if file_sha256(path) != entry.sha256:
        raise ArchiveCorrupted(f"{path.name}: its SHA-256 is not the manifest's")
    try:
        frame = gpd.read_parquet(path)
    except Exception as exc:  # pyarrow raises many kinds for a damaged file
        raise ArchiveCorrupted(f"{path.name} cannot be read: {exc}") from exc
    if len(frame) != entry.rows:
        raise ArchiveCorrupted(f"{path.name} holds {len(frame)} rows, not {entry.rows}")
    if rows_digest(frame) != entry.content_sha256:
        raise ArchiveCorrupted(f"{path.name}: its rows are not the ones archived")
    return frame


def archive_week(conn: psycopg.Connection, week: IsoWeek, out: Path) -> ArchivedPartition:
    """Archive one closed week's partition and drop it, in one transaction."""
    name = partition_name(week)
    start, end = week.start(PARTITION_ZONE), week.end(PARTITION_ZONE)
    try:
        # Writers of this week wait (readers do not) until the partition is gone.
        conn.execute(f'LOCK TABLE "{name}" IN SHARE MODE')
        frame = fetch_rows(conn, "recorded_at >= %s AND recorded_at < %s", (start, end))
        path = out / f"{name}.parquet"
        write_partition_file(frame, path)
        entry = ArchivedPartition(
            partition=name,
            week=str(week),
            start=start.isoformat(),
            end=end.isoformat(),
            file=path.name,
            rows=len(frame),
            sha256=file_sha256(path),
            content_sha256=rows_digest(frame),
        )
        verify_file(path, entry)
        write_manifest(out, [*read_manifest(out), entry])
        # Detaching waits for every reader of checkins, and readers queue behind it: it
        # gives up after DETACH_WAIT rather than hold the API's reads for longer.
        conn.execute(f"SET LOCAL lock_timeout = '{DETACH_WAIT}'")
        conn.execute(f'ALTER TABLE checkins DETACH PARTITION "{name}"')
        conn.execute(f'DROP TABLE "{name}"')
        conn.commit()
    except psycopg.errors.LockNotAvailable as exc:
        conn.rollback()
        raise ArchiveRefused(
            f"{name} is archived to {out} but checkins stayed busy for {DETACH_WAIT}:"
            " nothing was dropped; run the archive again"
        ) from exc
    except BaseException:
        conn.rollback()
        raise
    logger.info("archived %s: %d rows to %s", name, entry.rows, entry.file)
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


def _copy_text(frame: gpd.GeoDataFrame) -> str:
    """The frame as COPY's CSV (nulls as \\N), written by pandas a column at a time: a
    Python call per value cost 25 of a 300,000-row week's 69 s of loading (profiled)."""
    table = pd.DataFrame({c: frame[c] for c in COLUMNS})
    table["flags"] = frame["flags"].map(array_text)
    for column in ("lon", "lat", "accuracy_m"):
        # repr's shortest text that reads back as the same 64 bits.
        values = frame[column].astype("float64")
        table[column] = values.map(repr).where(values.notna(), None)
    table["geom"] = shapely.to_wkb(
        shapely.set_srid(frame.geometry.to_numpy(), 4326), hex=True, include_srid=True
    )
    return table.to_csv(
        index=False, header=False, na_rep="\\N", date_format="%Y-%m-%d %H:%M:%S.%f%z"
    )


def _load_week(conn: psycopg.Connection, entry: ArchivedPartition, frame: gpd.GeoDataFrame) -> int:
    """Load one verified week back, in one transaction; the rows added."""
    start, end = entry.bounds
    try:
        made = conn.execute("SELECT checkin_week_partition(%s)", (start,)).fetchone()
        if made is None or made[0] is None:
            raise ArchiveRefused("checkins_default is busy; run the restore again")
        conn.execute("CREATE TEMP TABLE restored (LIKE checkins INCLUDING DEFAULTS) ON COMMIT DROP")
        columns = ", ".join(COLUMNS)
        text = _copy_text(frame)
        with conn.cursor().copy(
            f"COPY restored ({columns}, geom) FROM STDIN (FORMAT csv, NULL '\\N')"
        ) as copy:
            for first in range(0, len(text), 1 << 20):
                copy.write(text[first : first + (1 << 20)])
        added = conn.execute(
            "INSERT INTO checkins SELECT * FROM restored ON CONFLICT DO NOTHING"
        ).rowcount
        back = fetch_rows(
            conn,
            "recorded_at >= %s AND recorded_at < %s"
            " AND (event_id, recorded_at) IN (SELECT event_id, recorded_at FROM restored)",
            (start, end),
        )
        if len(back) != entry.rows or rows_digest(back) != entry.content_sha256:
            raise ArchiveCorrupted(f"{entry.partition}: the loaded rows differ from the archive's")
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
    """Load archived weeks (all, or `weeks`) back into `checkins`; every file is checked
    before any is loaded. Returns each week's entry and the rows it added."""
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
        verify_file(directory / entry.file, entry)
        progress(f"checked {entry.week} 已校验", i, len(entries))
    loaded: list[tuple[ArchivedPartition, int]] = []
    with _connect(database_url) as conn:
        progress("restoring weeks 恢复周分区", 0, len(entries))
        for i, entry in enumerate(entries, 1):
            frame = verify_file(directory / entry.file, entry)
            loaded.append((entry, _load_week(conn, entry, frame)))
            progress(f"restored {entry.week} 已恢复", i, len(entries))
    return loaded
