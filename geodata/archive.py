"""The check-ins archive: which weeks may go, the files' manifest and their checks.

`wangge archive` moves closed weeks of `checkins` (one partition per local ISO week,
docs/HISTORY.md) into GeoParquet files, one per partition, and back. This module holds
the rules and the file format; `geodata.db.archive_store` does the reading, writing,
detaching and loading.

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
from dataclasses import asdict, dataclass
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
"""The zone of the partitions' weeks (migration 0022's `checkin_week_partition`)."""

MANIFEST_NAME: Final = "manifest.json"
MANIFEST_FORMAT: Final = 1

COLUMNS: Final = (
    "event_id", "worker_id", "recorded_at", "lon", "lat", "crs", "accuracy_m", "grid_code",
    "staff_id", "in_assigned_grid", "assignment_rule", "flags", "late", "received_at",
    "assigned_at",
)  # fmt: skip
"""Every column of `checkins` but `geom`, which is the files' geometry column."""

_PARTITION_NAME: Final = re.compile(r"checkins_(\d{4})w(\d{2})")


class ArchiveRefused(WanggeError):
    """The archive or restore was refused before anything was dropped or loaded."""

    code = "archive_refused"


class ArchiveCorrupted(ArchiveRefused):
    """A file does not hold what its manifest entry says (bytes, row count or rows)."""

    code = "archive_corrupted"


@dataclass(frozen=True)
class ArchivedPartition:
    """One manifest entry: a week's partition, its file and what the file must hold."""

    partition: str
    week: str
    start: str
    end: str
    file: str
    rows: int
    sha256: str
    content_sha256: str

    @property
    def bounds(self) -> tuple[datetime, datetime]:
        """The week's [start, end) instants."""
        return datetime.fromisoformat(self.start), datetime.fromisoformat(self.end)


def partition_week(name: str) -> IsoWeek | None:
    """The week a partition such as `checkins_2020w37` holds; None for any other table."""
    match = _PARTITION_NAME.fullmatch(name)
    return IsoWeek(int(match[1]), int(match[2])) if match else None


def partition_name(week: IsoWeek) -> str:
    """`checkins_2020w37` for 2020-W37, as `checkin_week_partition` names it."""
    return f"checkins_{week.year:04d}w{week.week:02d}"


def is_closed(week: IsoWeek, watermark: datetime | None, allowed_lateness: timedelta) -> bool:
    """Whether the week is final: the engine's watermark has passed its end plus the
    lateness allowed, so no check-in can change its compliance any more."""
    end = week.end(PARTITION_ZONE)
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
_TIMES: Final = ("recorded_at", "received_at", "assigned_at")
_FLOATS: Final = ("lon", "lat", "accuracy_m")
_BOOLEANS: Final = ("in_assigned_grid", "late")
_DIGEST_CHUNK: Final = 100_000


def array_text(value: Any) -> str:
    """A text[] value as PostgreSQL writes it (`{a,b}`), \\N for null."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return _NULL
    # A list from PostgreSQL, an array from a file.
    return "{" + ",".join(str(v) for v in value) + "}"


def _column_text(frame: pd.DataFrame, column: str) -> pd.Series:
    """A column in the canonical text form, the same for rows from PostgreSQL and a file:
    instants as microseconds since 1970 UTC, floats as their 64 bits, nulls as \\N."""
    series = frame[column]
    if column in _TIMES:
        micros = pd.to_datetime(series, utc=True).dt.as_unit("us").astype("int64")
        return micros.astype(str)
    if column in _FLOATS:
        values = series.astype("float64").to_numpy()
        bits = pd.Series(values.view("int64").astype(str), index=series.index)
        return bits.where(~np.isnan(values), _NULL)
    if column in _BOOLEANS:
        return series.map({True: "t", False: "f"}).fillna(_NULL).astype(str)
    if column == "flags":
        return series.map(array_text)
    return series.astype(object).where(series.notna(), _NULL).astype(str)


def rows_digest(frame: pd.DataFrame) -> str:
    """SHA-256 of the rows in canonical text (tab between columns, geometry last as hex
    WKB), ordered by (event_id, recorded_at)."""
    ordered = frame.sort_values(["event_id", "recorded_at"], kind="stable")
    digest = hashlib.sha256()
    for first in range(0, len(ordered), _DIGEST_CHUNK):
        chunk = ordered.iloc[first : first + _DIGEST_CHUNK]
        texts = [_column_text(chunk, c) for c in COLUMNS]
        geometry = pd.Series(shapely.to_wkb(chunk.geometry.to_numpy(), hex=True), index=chunk.index)
        lines = texts[0]
        for text in [*texts[1:], geometry.astype(str)]:
            lines = lines + "\t" + text
        digest.update(("\n".join(lines.tolist()) + "\n").encode())
    return digest.hexdigest()


def read_manifest(directory: Path) -> list[ArchivedPartition]:
    """The manifest's entries; none when the directory holds no manifest yet."""
    path = directory / MANIFEST_NAME
    if not path.exists():
        return []
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
        if document.get("format") != MANIFEST_FORMAT or document.get("table") != "checkins":
            raise ArchiveRefused(f"{path} is not a wangge check-ins archive manifest")
        return [ArchivedPartition(**entry) for entry in document["partitions"]]
    except (ValueError, TypeError, KeyError) as exc:
        raise ArchiveRefused(f"{path} cannot be read: {exc}") from exc


def write_manifest(directory: Path, entries: Sequence[ArchivedPartition]) -> None:
    """Write the manifest (entries by week) atomically: a new file renamed over the old."""
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
