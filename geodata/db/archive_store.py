"""Archiving closed weeks of `checkins` and `patrol_checkins` to files, dropping them, and
loading them back.

Each week is archived in one transaction of its own: lock its two partitions against
writes, read their rows, write `checkins_2020w37.parquet` (GeoParquet) and
`patrol_checkins_2020w37.parquet`, read each file back and compare its bytes' SHA-256,
row count and rows' digest, record both in the manifest, and only then detach and drop
the partitions. Anything that fails before the drop rolls back and leaves the partitions
as they were. A week already in the manifest (a very late check-in made its partition
again) gets a new part, `checkins_2020w37.2.parquet` and so on, holding the rows its
earlier parts (read and checked first) do not; no file is ever written over. A restore
checks every file it is asked for before loading any, then loads each week in one
transaction: the week's partitions made again by `week_partition`, the union of its parts
added (a row already there is kept), and read back and compared before commit.

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
    MANIFEST_NAME,
    PARTITION_ZONE,
    ArchiveCorrupted,
    ArchivedFile,
    ArchivedPart,
    ArchivedTable,
    ArchivedWeek,
    ArchiveRefused,
    WeekArchived,
    array_text,
    file_sha256,
    is_closed,
    not_archived,
    part_file_name,
    partition_week,
    read_manifest,
    retention_cutoff,
    rows_digest,
    union_of_parts,
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


def verify_file(path: Path, entry: ArchivedFile, table: ArchivedTable = CHECKINS) -> pd.DataFrame:
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


def _part_paths(out: Path, week: IsoWeek, part: int, listed: set[str]) -> list[Path]:
    """The new part's files, one per table; refused if one is already there: a file the
    manifest lists is never written over, and one it does not list (left by a run that
    was killed, or not this archive's) is not either, nor guessed about."""
    paths = [out / part_file_name(table, week, part) for table in ARCHIVED_TABLES]
    for path in paths:
        if path.name in listed or path.exists():
            raise ArchiveRefused(
                f"{path} already exists but {MANIFEST_NAME} does not list it as {week}'s part"
                f" {part} (a file of an interrupted run, or not this archive's): nothing of"
                f" {week} was archived; move the file away and run the archive again"
            )
    return paths


def _write_part(
    frame: pd.DataFrame, table: ArchivedTable, week: IsoWeek, path: Path
) -> ArchivedFile:
    """Write one table's rows of the part to `path` and check the file."""
    write_partition_file(frame, path)
    written = ArchivedFile(
        table.partition_name(week),
        path.name,
        len(frame),
        file_sha256(path),
        rows_digest(frame, table),
    )
    verify_file(path, written, table)
    return written


def _discard(paths: Sequence[Path]) -> None:
    """Remove the files of a part that failed before the manifest listed it, so that they
    stop no later run (a listed file is never removed)."""
    for path in paths:
        path.unlink(missing_ok=True)
        path.with_suffix(".parquet.partial").unlink(missing_ok=True)


def archive_week(conn: psycopg.Connection, week: IsoWeek, out: Path) -> WeekArchived:
    """Archive one closed week's partitions of both tables and drop them, in one transaction.

    A week already in the manifest gets a new part with the rows its earlier parts do not
    hold (none when they hold them all: the partitions are then only dropped)."""
    start, end = week.start(PARTITION_ZONE), week.end(PARTITION_ZONE)
    names = [table.partition_name(week) for table in ARCHIVED_TABLES]
    manifest = read_manifest(out)
    earlier = next((e for e in manifest if e.week == str(week)), None)
    number = len(earlier.parts) + 1 if earlier else 1
    paths = _part_paths(out, week, number, {f.file for e in manifest for _, f in e.files()})
    unlisted: list[Path] = []  # this run's files until the manifest lists them
    try:
        for table in ARCHIVED_TABLES:
            # A week may have a partition of one table only: the other's is made (empty),
            # so that every part has both files.
            _make_partition(conn, table, start)
        for name in names:
            # Writers of this week wait (readers do not) until the partitions are gone.
            conn.execute(f'LOCK TABLE "{name}" IN SHARE MODE')
        frames = [
            fetch_rows(conn, "recorded_at >= %s AND recorded_at < %s", (start, end), table)
            for table in ARCHIVED_TABLES
        ]
        if earlier is not None:
            # What earlier runs wrote is read back (and checked) so that a row is never
            # archived twice, e.g. when a restored week goes again.
            frames = [
                not_archived(
                    frame, [verify_file(out / f.file, f, t) for f in earlier.files_of(t)], t
                )
                for t, frame in zip(ARCHIVED_TABLES, frames, strict=True)
            ]
        part: ArchivedPart | None = None
        entry = earlier
        if earlier is None or any(len(frame) for frame in frames):
            unlisted.extend(paths)
            checkins, patrol = (
                _write_part(frame, table, week, path)
                for table, frame, path in zip(ARCHIVED_TABLES, frames, paths, strict=True)
            )
            part = ArchivedPart(number, checkins, patrol)
            new = ArchivedWeek(names[0], str(week), start.isoformat(), end.isoformat(), ())
            entry = (earlier or new).with_part(part)
            write_manifest(out, [*manifest, entry])
            unlisted.clear()
        assert entry is not None
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
        _discard(unlisted)
        raise ArchiveRefused(
            f"{week} is archived to {out} but its tables stayed busy for {DETACH_WAIT}:"
            " nothing was dropped; run the archive again (it finds the rows archived)"
        ) from exc
    except BaseException:
        conn.rollback()
        _discard(unlisted)
        raise
    if part is None:
        logger.info("archived %s before: its partitions held nothing new", week)
    else:
        logger.info(
            "archived %s part %d: %d check-ins, %d patrol check-ins",
            week,
            number,
            part.checkins.rows,
            part.patrol_checkins.rows if part.patrol_checkins else 0,
        )
    return WeekArchived(entry, part)


def archive(
    database_url: str,
    cutoff: date,
    out: Path,
    allowed_lateness: timedelta,
    *,
    skip_open: bool = False,
    progress: Progress = _no_progress,
) -> list[WeekArchived]:
    """Archive and drop every closed week's partition that ends by `cutoff`."""
    out.mkdir(parents=True, exist_ok=True)
    read_manifest(out)  # a directory holding something else is refused before any work
    with _connect(database_url) as conn:
        weeks = plan_archive(conn, cutoff, allowed_lateness, skip_open=skip_open)
        done: list[WeekArchived] = []
        progress("archiving weeks 归档周分区", 0, len(weeks))
        for i, week in enumerate(weeks, 1):
            done.append(archive_week(conn, week, out))
            progress(f"archived {week} 已归档", i, len(weeks))
    return done


def apply_retention(
    database_url: str,
    keep_weeks: int,
    out: Path,
    allowed_lateness: timedelta,
    *,
    progress: Progress = _no_progress,
) -> list[WeekArchived]:
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
    entry: ArchivedWeek,
    files: Sequence[ArchivedFile],
    frames: Sequence[pd.DataFrame],
) -> int:
    """Load the verified files of the week's parts back into `table`, in the caller's
    transaction, and read the rows back against their union; the rows added."""
    start, end = entry.bounds
    _make_partition(conn, table, start)
    union = union_of_parts(frames)
    # One part is its file, whose rows' digest the file was just checked against.
    digest = files[0].content_sha256 if len(files) == 1 else rows_digest(union, table)
    stage = f"restored_{table.name}"
    conn.execute(f"CREATE TEMP TABLE {stage} (LIKE {table.name} INCLUDING DEFAULTS) ON COMMIT DROP")
    columns = ", ".join(table.columns) + (", geom" if table.geometry else "")
    text = _copy_text(union, table)
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
    if len(back) != len(union) or rows_digest(back, table) != digest:
        raise ArchiveCorrupted(
            f"{entry.week} {table.name}: the loaded rows differ from the archive's"
        )
    return added


def _verified(directory: Path, entry: ArchivedWeek, table: ArchivedTable) -> list[pd.DataFrame]:
    """The rows of each of the week's files of `table`, part by part, each checked."""
    return [verify_file(directory / f.file, f, table) for f in entry.files_of(table)]


def _load_week(conn: psycopg.Connection, directory: Path, entry: ArchivedWeek) -> int:
    """Load one week back (the union of its parts, table by table), in one transaction;
    the rows added."""
    try:
        added = 0
        for table in ARCHIVED_TABLES:
            files = entry.files_of(table)
            if files:  # a week archived before 0023 has no patrol_checkins file
                frames = _verified(directory, entry, table)
                added += _load_partition(conn, table, entry, files, frames)
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
) -> list[tuple[ArchivedWeek, int]]:
    """Load archived weeks (all, or `weeks`) back into `checkins` and `patrol_checkins`,
    every part of each; every file is checked before any is loaded. Returns each week's
    entry and the rows it added to both."""
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
    loaded: list[tuple[ArchivedWeek, int]] = []
    with _connect(database_url) as conn:
        progress("restoring weeks 恢复周分区", 0, len(entries))
        for i, entry in enumerate(entries, 1):
            loaded.append((entry, _load_week(conn, directory, entry)))
            progress(f"restored {entry.week} 已恢复", i, len(entries))
    return loaded
