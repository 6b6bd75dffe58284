"""The check-ins archive: which weeks may go, the files' manifest and their checks.

`wangge archive` moves closed weeks of `checkins` and of the compliance engine's copy,
`patrol_checkins` (each one partition per local ISO week, docs/HISTORY.md), into
Parquet files, one per partition (GeoParquet for `checkins`, which has a geometry), and
back. This module holds the rules and the file format; `geodata.db.archive_store` does
the reading, writing, detaching and loading.

A week can be archived more than once: a very late check-in for an archived week is still
stored, in its week's partition made anew, and the next run archives that partition as a
new part of the week (`checkins_2020w37.2.parquet`, ...), with only the rows no earlier
part holds. A part is never rewritten, and a restore loads the union of a week's parts.

Two checksums guard a file: `sha256`, of the file's bytes, catches a file changed on disk;
`content_sha256`, of the rows in a canonical text form (`rows_digest`), is computed from
the rows as read from the database and again from the rows read back from the file (and,
after a restore, from the database again), so it proves the rows survived the trip, not
only the bytes.
"""

import hashlib
import json
import math
import re
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, replace
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any, Final
from zoneinfo import ZoneInfo

import numpy as np
import pandas as pd
import shapely

from geodata.compliance.weeks import IsoWeek
from geodata.errors import WanggeError

PARTITION_ZONE: Final = ZoneInfo("Asia/Shanghai")
"""The zone of the partitions' weeks (the database's `week_partition`, migration 0023)."""

MANIFEST_NAME: Final = "manifest.json"
MANIFEST_FORMAT: Final = 3
"""3 made a week a list of parts (one per run that archived it); 2 added each week's
`patrol_checkins` file. A format 1 or 2 manifest reads as one part a week."""

COLUMNS: Final = (
    "event_id", "worker_id", "recorded_at", "lon", "lat", "crs", "accuracy_m", "grid_code",
    "staff_id", "in_assigned_grid", "assignment_rule", "flags", "late", "received_at",
    "assigned_at",
)  # fmt: skip
"""Every column of `checkins` but `geom`, which is the files' geometry column."""
KEY: Final = ["event_id", "recorded_at"]
"""A row's key in both tables (their primary key)."""


@dataclass(frozen=True)
class ArchivedTable:
    """A table partitioned by week as the archive reads and writes it: its columns (but
    `geom`) and which of them are instants, floats, booleans and text arrays."""

    name: str
    columns: tuple[str, ...]
    times: tuple[str, ...]
    floats: tuple[str, ...]
    booleans: tuple[str, ...]
    arrays: tuple[str, ...] = ()
    geometry: bool = False
    """Whether it has the point `geom`: its files are then GeoParquet, else Parquet."""

    def partition_name(self, week: IsoWeek) -> str:
        """`checkins_2020w37` for 2020-W37, as the database's `week_partition` names it."""
        return f"{self.name}_{week.year:04d}w{week.week:02d}"


CHECKINS: Final = ArchivedTable(
    "checkins",
    COLUMNS,
    times=("recorded_at", "received_at", "assigned_at"),
    floats=("lon", "lat", "accuracy_m"),
    booleans=("in_assigned_grid", "late"),
    arrays=("flags",),
    geometry=True,
)
_PATROL_COLUMNS: Final = (
    "event_id", "worker_id", "grid_code", "recorded_at", "accuracy_m", "in_assigned_grid",
    "late", "received_at", "mock", "implausible_speed",
)  # fmt: skip
PATROL_CHECKINS: Final = ArchivedTable(
    "patrol_checkins",
    _PATROL_COLUMNS,
    times=("recorded_at", "received_at"),
    floats=("accuracy_m",),
    booleans=("in_assigned_grid", "late", "mock", "implausible_speed"),
)
ARCHIVED_TABLES: Final = (CHECKINS, PATROL_CHECKINS)


class ArchiveRefused(WanggeError):
    """The archive or restore was refused before anything was dropped or loaded."""

    code = "archive_refused"


class ArchiveCorrupted(ArchiveRefused):
    """A file does not hold what its manifest entry says (bytes, row count or rows)."""

    code = "archive_corrupted"


@dataclass(frozen=True)
class ArchivedFile:
    """One partition's file and what it must hold."""

    partition: str
    file: str
    rows: int
    sha256: str
    content_sha256: str


@dataclass(frozen=True)
class ArchivedPart:
    """What one archive run took of a week: its `checkins` file and its `patrol_checkins`
    file (None in an archive written before 0023)."""

    part: int
    checkins: ArchivedFile
    patrol_checkins: ArchivedFile | None = None

    def files(self) -> list[tuple[ArchivedTable, ArchivedFile]]:
        """Each archived table of the part with its file."""
        patrol = [(PATROL_CHECKINS, self.patrol_checkins)] if self.patrol_checkins else []
        return [(CHECKINS, self.checkins), *patrol]


@dataclass(frozen=True)
class ArchivedWeek:
    """One manifest entry: a week, its `checkins` partition's name and its parts, in the
    order they were archived (a week archived again, after a very late check-in made its
    partition anew, gains a part; none is ever replaced)."""

    partition: str
    week: str
    start: str
    end: str
    parts: tuple[ArchivedPart, ...]

    @property
    def bounds(self) -> tuple[datetime, datetime]:
        """The week's [start, end) instants."""
        return datetime.fromisoformat(self.start), datetime.fromisoformat(self.end)

    @property
    def rows(self) -> int:
        """The `checkins` rows of all its parts."""
        return sum(p.checkins.rows for p in self.parts)

    @property
    def patrol_rows(self) -> int:
        """The `patrol_checkins` rows of all its parts."""
        return sum(p.patrol_checkins.rows for p in self.parts if p.patrol_checkins)

    def files(self) -> list[tuple[ArchivedTable, ArchivedFile]]:
        """Each archived table of each part with its file, part by part."""
        return [pair for part in self.parts for pair in part.files()]

    def files_of(self, table: ArchivedTable) -> list[ArchivedFile]:
        """The files of `table`, part by part."""
        return [f for t, f in self.files() if t == table]

    def with_part(self, part: ArchivedPart) -> "ArchivedWeek":
        """The entry with `part` added after the others."""
        return replace(self, parts=(*self.parts, part))


@dataclass(frozen=True)
class WeekArchived:
    """What one archive run did to a week: its manifest entry, and the part it added (None
    when every row was in the archive already, so the partitions were only dropped)."""

    entry: ArchivedWeek
    part: ArchivedPart | None


def part_file_name(table: ArchivedTable, week: IsoWeek, part: int) -> str:
    """`checkins_2020w37.parquet` for a week's first part (the name archives had before
    parts), `checkins_2020w37.2.parquet` for its second."""
    name = table.partition_name(week)
    return f"{name}.parquet" if part == 1 else f"{name}.{part}.parquet"


def partition_week(name: str, table: ArchivedTable = CHECKINS) -> IsoWeek | None:
    """The week a partition of `table` such as `checkins_2020w37` holds; None for any
    other table."""
    match = re.fullmatch(re.escape(table.name) + r"_(\d{4})w(\d{2})", name)
    return IsoWeek(int(match[1]), int(match[2])) if match else None


def partition_name(week: IsoWeek) -> str:
    """`checkins_2020w37` for 2020-W37, as `checkin_week_partition` names it."""
    return CHECKINS.partition_name(week)


def is_closed(week: IsoWeek, watermark: datetime | None, allowed_lateness: timedelta) -> bool:
    """Whether the week may go: it is final, and so is the week after it.

    Final is the engine's watermark past the week's end plus the lateness allowed: no
    check-in can change its compliance any more. The next week must be final too because
    the engine, folding that week again (after a restart), reads the check-ins of this
    week's last `patrol_gap` from `patrol_checkins`, to know whether a walk began here.
    """
    end = week.next().end(PARTITION_ZONE)
    return watermark is not None and watermark >= end + allowed_lateness


def weeks_before(weeks: Iterable[IsoWeek], cutoff: date) -> list[IsoWeek]:
    """The weeks that end by local midnight of `cutoff` (a week the day cuts is kept)."""
    limit = datetime.combine(cutoff, datetime.min.time(), PARTITION_ZONE)
    return sorted(w for w in weeks if w.end(PARTITION_ZONE) <= limit)


def retention_cutoff(watermark: datetime, keep_weeks: int) -> date:
    """The first day kept by WANGGE_RETENTION_WEEKS: the Monday `keep_weeks` weeks before
    the watermark's week (that week and the `keep_weeks` - 1 before it are kept)."""
    if keep_weeks < 1:
        raise ArchiveRefused("WANGGE_RETENTION_WEEKS must be at least 1")
    current = IsoWeek.week_of(watermark, PARTITION_ZONE)
    return current.monday - timedelta(weeks=keep_weeks - 1)


def file_sha256(path: Path) -> str:
    """SHA-256 of a file's bytes, hex."""
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


_NULL: Final = "\\N"
_DIGEST_CHUNK: Final = 100_000


def array_text(value: Any) -> str:
    """A text[] value as PostgreSQL writes it (`{a,b}`), \\N for null."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return _NULL
    # A list from PostgreSQL, an array from a file.
    return "{" + ",".join(str(v) for v in value) + "}"


def _column_text(frame: pd.DataFrame, column: str, table: ArchivedTable) -> pd.Series:
    """A column in the canonical text form, the same for rows from PostgreSQL and a file:
    instants as microseconds since 1970 UTC, floats as their 64 bits, nulls as \\N."""
    series = frame[column]
    if column in table.times:
        micros = pd.to_datetime(series, utc=True).dt.as_unit("us").astype("int64")
        return micros.astype(str)
    if column in table.floats:
        values = series.astype("float64").to_numpy()
        bits = pd.Series(values.view("int64").astype(str), index=series.index)
        return bits.where(~np.isnan(values), _NULL)
    if column in table.booleans:
        return series.map({True: "t", False: "f"}).fillna(_NULL).astype(str)
    if column in table.arrays:
        return series.map(array_text)
    return series.astype(object).where(series.notna(), _NULL).astype(str)


def _row_lines(frame: pd.DataFrame, table: ArchivedTable) -> pd.Series:
    """Each row in canonical text: its columns with a tab between them, the geometry, if
    the table has one, last as hex WKB."""
    texts = [_column_text(frame, c, table) for c in table.columns]
    if table.geometry:
        wkb = shapely.to_wkb(frame.geometry.to_numpy(), hex=True)
        texts.append(pd.Series(wkb, index=frame.index).astype(str))
    lines = texts[0]
    for text in texts[1:]:
        lines = lines + "\t" + text
    return lines


def rows_digest(frame: pd.DataFrame, table: ArchivedTable = CHECKINS) -> str:
    """SHA-256 of the rows in canonical text (`_row_lines`), ordered by (event_id,
    recorded_at)."""
    ordered = frame.sort_values(KEY, kind="stable")
    digest = hashlib.sha256()
    for first in range(0, len(ordered), _DIGEST_CHUNK):
        lines = _row_lines(ordered.iloc[first : first + _DIGEST_CHUNK], table)
        digest.update(("\n".join(lines.tolist()) + "\n").encode())
    return digest.hexdigest()


def not_archived(
    frame: pd.DataFrame, archived: Sequence[pd.DataFrame], table: ArchivedTable = CHECKINS
) -> pd.DataFrame:
    """The rows of `frame` that no archived part holds, every column equal: what a week
    archived again must add. A row differing in any column (a redelivered event stored
    again, say, with its own `received_at`) is kept: the archive keeps all it was given."""
    if not archived or frame.empty:
        return frame
    known = set().union(*(_row_lines(f, table) for f in archived))
    fresh = ~_row_lines(frame, table).isin(known)
    return frame[fresh].reset_index(drop=True)


def union_of_parts(frames: Sequence[pd.DataFrame]) -> pd.DataFrame:
    """A week's rows from its parts' files, the earliest part's row kept where two parts
    hold the same (event_id, recorded_at): the one the table held first, which the
    writers' ON CONFLICT DO NOTHING would have kept had the week never left."""
    if len(frames) == 1:
        return frames[0]
    joined = pd.concat(frames, ignore_index=True)
    return joined.drop_duplicates(KEY, keep="first").reset_index(drop=True)


def _file(document: Any) -> ArchivedFile:
    """An `ArchivedFile` from the manifest, its file a plain name in the archive's folder."""
    found = ArchivedFile(**document)
    if not found.file or Path(found.file).name != found.file or found.file.startswith("."):
        raise ValueError(f"{found.file!r} is not a file name in the archive's folder")
    return found


def _week(entry: dict[str, Any], version: int) -> ArchivedWeek:
    """A manifest entry; before format 3 a week had one part, its fields in the entry."""
    if version == MANIFEST_FORMAT:
        parts = tuple(
            ArchivedPart(
                int(p["part"]),
                _file(p["checkins"]),
                _file(p["patrol_checkins"]) if p.get("patrol_checkins") else None,
            )
            for p in entry.pop("parts")
        )
        if not parts or [p.part for p in parts] != list(range(1, len(parts) + 1)):
            raise ValueError(f"{entry.get('week')}: its parts are not numbered 1, 2, ...")
    else:
        patrol = entry.pop("patrol_checkins", None)
        own = {k: entry.pop(k) for k in ("file", "rows", "sha256", "content_sha256")}
        checkins = _file({"partition": entry["partition"], **own})
        parts = (ArchivedPart(1, checkins, _file(patrol) if patrol is not None else None),)
    return ArchivedWeek(**entry, parts=parts)


def read_manifest(directory: Path) -> list[ArchivedWeek]:
    """The manifest's entries; none when the directory holds no manifest yet."""
    path = directory / MANIFEST_NAME
    if not path.exists():
        return []
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
        version = document.get("format")
        if version not in (1, 2, MANIFEST_FORMAT) or document.get("table") != "checkins":
            raise ArchiveRefused(f"{path} is not a wangge check-ins archive manifest")
        return [_week(entry, version) for entry in document["partitions"]]
    except (ValueError, TypeError, KeyError, AttributeError) as exc:
        raise ArchiveRefused(f"{path} cannot be read: {exc}") from exc


def write_manifest(directory: Path, entries: Sequence[ArchivedWeek]) -> None:
    """Write the manifest (entries by week, a later entry of a week replacing an earlier
    one) atomically: a new file renamed over the old."""
    by_partition = {e.partition: e for e in entries}
    document = {
        "format": MANIFEST_FORMAT,
        "table": "checkins",
        "partitions": [asdict(by_partition[k]) for k in sorted(by_partition)],
    }
    path = directory / MANIFEST_NAME
    partial = path.with_suffix(".json.partial")
    partial.write_text(json.dumps(document, indent=2) + "\n", encoding="utf-8")
    partial.replace(path)
