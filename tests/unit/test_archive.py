"""The archive's rules: which weeks may go, and the rows' digest and manifest."""

from dataclasses import replace
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import geopandas as gpd
import numpy as np
import pandas as pd
import pytest
from shapely.geometry import Point

from geodata.archive import (
    COLUMNS,
    PATROL_CHECKINS,
    ArchivedFile,
    ArchivedPartition,
    ArchiveRefused,
    is_closed,
    partition_name,
    partition_week,
    read_manifest,
    retention_cutoff,
    rows_digest,
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


def test_the_manifest_round_trips_and_a_foreign_one_is_refused(tmp_path: Path) -> None:
    entry = ArchivedPartition(
        "checkins_2020w37", "2020-W37", "2020-09-07T00:00:00+08:00",
        "2020-09-14T00:00:00+08:00", "checkins_2020w37.parquet", 3, "ab", "cd",
    )  # fmt: skip
    assert read_manifest(tmp_path) == []
    write_manifest(tmp_path, [entry, entry])
    assert read_manifest(tmp_path) == [entry]
    patrol = ArchivedFile(
        "patrol_checkins_2020w37", "patrol_checkins_2020w37.parquet", 2, "ef", "01"
    )
    both = replace(entry, patrol_checkins=patrol)
    write_manifest(tmp_path, [both])
    assert read_manifest(tmp_path) == [both]
    assert [t.name for t, _ in both.files()] == ["checkins", "patrol_checkins"]
    (tmp_path / "manifest.json").write_text('{"format": 1, "table": "patrols"}')
    with pytest.raises(ArchiveRefused, match="not a wangge"):
        read_manifest(tmp_path)
