"""The archive's rules: which weeks may go, and the rows' digest and manifest."""

import json
from dataclasses import asdict
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import geopandas as gpd
import numpy as np
import pandas as pd
import pytest
from shapely.geometry import Point

from geodata.archive import (
    CHECKINS,
    COLUMNS,
    PATROL_CHECKINS,
    ArchivedFile,
    ArchivedPart,
    ArchivedWeek,
    ArchiveRefused,
    is_closed,
    not_archived,
    part_file_name,
    partition_name,
    partition_week,
    read_manifest,
    retention_cutoff,
    rows_digest,
    union_of_parts,
    weeks_before,
    write_manifest,
)
from geodata.compliance import IsoWeek

W37 = IsoWeek.parse("2020-W37")  # Monday 2020-09-07 to Monday 2020-09-14, Asia/Shanghai
LATENESS = timedelta(hours=48)


def test_partition_names_round_trip_and_other_tables_are_not_weeks() -> None:
    assert partition_name(W37) == "checkins_2020w37"
    assert partition_week("checkins_2020w37") == W37
    assert partition_week("checkins_default") is None
    assert PATROL_CHECKINS.partition_name(W37) == "patrol_checkins_2020w37"
    assert partition_week("patrol_checkins_2020w37", PATROL_CHECKINS) == W37
    assert partition_week("patrol_checkins_2020w37") is None


def test_a_week_closes_when_the_watermark_passes_the_next_weeks_end_plus_lateness() -> None:
    # W38's evaluation reads W37's last half hour of patrol check-ins while W38 is open.
    end = datetime(2020, 9, 20, 16, tzinfo=UTC)  # Monday 00:00 in Shanghai after W38
    assert not is_closed(W37, end + LATENESS - timedelta(seconds=1), LATENESS)
    assert is_closed(W37, end + LATENESS, LATENESS)
    assert not is_closed(W37, None, LATENESS)


def test_only_weeks_that_end_by_the_cutoff_day_are_taken() -> None:
    weeks = [W37, W37.next(), W37.next().next()]
    assert weeks_before(weeks, date(2020, 9, 14)) == [W37]
    assert weeks_before(weeks, date(2020, 9, 20)) == [W37]  # W38 is cut by the day: kept
    assert weeks_before(weeks, date(2020, 9, 21)) == weeks[:2]


def test_retention_keeps_the_watermarks_week_and_the_ones_before() -> None:
    watermark = datetime(2020, 9, 16, 3, tzinfo=UTC)  # Wednesday of W38
    assert retention_cutoff(watermark, 1) == date(2020, 9, 14)
    assert retention_cutoff(watermark, 2) == date(2020, 9, 7)
    with pytest.raises(ArchiveRefused):
        retention_cutoff(watermark, 0)


def _frame(flags: object) -> gpd.GeoDataFrame:
    row = dict.fromkeys(COLUMNS) | {
        "event_id": "a0000000-0000-0000-0000-000000000001",
        "recorded_at": pd.Timestamp("2020-09-08T01:02:03.456789Z"),
        "lon": 107.1,
        "lat": 34.3,
        "accuracy_m": float("nan"),
        "flags": flags,
        "late": False,
    }
    return gpd.GeoDataFrame([row], geometry=[Point(107.1, 34.3)], crs=4326)


def test_the_digest_reads_a_list_and_a_files_array_alike_and_sees_a_changed_value() -> None:
    digest = rows_digest(_frame(["mocked_location"]))
    assert rows_digest(_frame(np.array(["mocked_location"], dtype=object))) == digest
    assert rows_digest(_frame([])) != digest
    later = _frame(["mocked_location"])
    later["recorded_at"] = later["recorded_at"] + pd.Timedelta(microseconds=1)
    assert rows_digest(later) != digest
    # A file may give microseconds where PostgreSQL's rows gave nanoseconds: the same rows.
    coarse = _frame(["mocked_location"])
    coarse["recorded_at"] = coarse["recorded_at"].astype("datetime64[us, UTC]")
    assert rows_digest(coarse) == digest


def _file(name: str, rows: int) -> ArchivedFile:
    return ArchivedFile(name.split(".")[0], name, rows, f"sha-{name}", f"rows-{name}")


FIRST = ArchivedPart(
    1,
    _file("checkins_2020w37.parquet", 3),
    _file("patrol_checkins_2020w37.parquet", 2),
)
SECOND = ArchivedPart(
    2,
    _file("checkins_2020w37.2.parquet", 1),
    _file("patrol_checkins_2020w37.2.parquet", 0),
)
ENTRY = ArchivedWeek(
    "checkins_2020w37", "2020-W37", "2020-09-07T00:00:00+08:00", "2020-09-14T00:00:00+08:00",
    (FIRST,),
)  # fmt: skip


def test_a_second_part_is_named_beside_the_first() -> None:
    assert part_file_name(CHECKINS, W37, 1) == "checkins_2020w37.parquet"
    assert part_file_name(CHECKINS, W37, 2) == "checkins_2020w37.2.parquet"
    assert part_file_name(PATROL_CHECKINS, W37, 2) == "patrol_checkins_2020w37.2.parquet"


def test_the_manifest_round_trips_with_parts_and_a_foreign_one_is_refused(
    tmp_path: Path,
) -> None:
    assert read_manifest(tmp_path) == []
    write_manifest(tmp_path, [ENTRY, ENTRY])
    assert read_manifest(tmp_path) == [ENTRY]
    both = ENTRY.with_part(SECOND)
    write_manifest(tmp_path, [ENTRY, both])  # a later entry of the week replaces the earlier
    assert read_manifest(tmp_path) == [both]
    assert (both.rows, both.patrol_rows) == (4, 2)
    assert [(t.name, f.file) for t, f in both.files()] == [
        ("checkins", "checkins_2020w37.parquet"),
        ("patrol_checkins", "patrol_checkins_2020w37.parquet"),
        ("checkins", "checkins_2020w37.2.parquet"),
        ("patrol_checkins", "patrol_checkins_2020w37.2.parquet"),
    ]
    assert both.files_of(PATROL_CHECKINS) == [FIRST.patrol_checkins, SECOND.patrol_checkins]
    (tmp_path / "manifest.json").write_text('{"format": 1, "table": "patrols"}')
    with pytest.raises(ArchiveRefused, match="not a wangge"):
        read_manifest(tmp_path)


def test_format_1_and_2_manifests_read_as_one_part_a_week(tmp_path: Path) -> None:
    old = {
        "partition": ENTRY.partition, "week": ENTRY.week, "start": ENTRY.start,
        "end": ENTRY.end, "file": FIRST.checkins.file, "rows": 3,
        "sha256": FIRST.checkins.sha256, "content_sha256": FIRST.checkins.content_sha256,
    }  # fmt: skip
    patrol = asdict(FIRST.patrol_checkins) if FIRST.patrol_checkins else None
    format_2 = {"format": 2, "table": "checkins", "partitions": [old | {"patrol_checkins": patrol}]}
    (tmp_path / "manifest.json").write_text(json.dumps(format_2))
    assert read_manifest(tmp_path) == [ENTRY]
    format_1 = {"format": 1, "table": "checkins", "partitions": [old]}
    (tmp_path / "manifest.json").write_text(json.dumps(format_1))
    week = ArchivedWeek(ENTRY.partition, ENTRY.week, ENTRY.start, ENTRY.end, (
        ArchivedPart(1, FIRST.checkins),
    ))  # fmt: skip
    assert read_manifest(tmp_path) == [week]
    assert [t.name for t, _ in week.files()] == ["checkins"]


def test_a_manifest_naming_a_file_outside_its_folder_or_skipping_a_part_is_refused(
    tmp_path: Path,
) -> None:
    wrong = ArchivedPart(2, _file("../checkins_2020w37.2.parquet", 1))
    write_manifest(tmp_path, [ENTRY.with_part(wrong)])
    with pytest.raises(ArchiveRefused, match="not a file name"):
        read_manifest(tmp_path)
    write_manifest(tmp_path, [ENTRY.with_part(SECOND).with_part(SECOND)])
    with pytest.raises(ArchiveRefused, match="not numbered"):
        read_manifest(tmp_path)


def _rows(*events: tuple[int, str | None]) -> gpd.GeoDataFrame:
    """Check-ins by event number, each with its own `received_at`."""
    frames = []
    for number, received in events:
        frame = _frame(["mocked_location"])
        frame["event_id"] = f"a0000000-0000-0000-0000-{number:012d}"
        frame["received_at"] = pd.Timestamp(received) if received else pd.NaT
        frames.append(frame)
    return gpd.GeoDataFrame(pd.concat(frames, ignore_index=True), crs=4326)


def test_a_week_archived_again_adds_only_rows_no_earlier_part_holds() -> None:
    first = _rows((1, None), (2, None))
    # After a restore the partition holds the archived rows again; a late check-in (3) and
    # event 1 stored again on redelivery, received later, are what is new.
    now = _rows((1, None), (2, None), (3, "2020-10-01T00:00Z"), (1, "2020-10-02T00:00Z"))
    fresh = not_archived(now, [first])
    assert list(fresh["event_id"].str[-1]) == ["3", "1"]
    assert not_archived(first, [first]).empty
    assert not_archived(now, []) is now
    # Restored, a week is its parts' union; where two parts hold the same event at the
    # same time, the first part's row (the one the table kept) is restored.
    union = union_of_parts([first, fresh])
    assert rows_digest(union) == rows_digest(_rows((1, None), (2, None), (3, "2020-10-01T00:00Z")))
