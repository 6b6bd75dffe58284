"""wangge archive: closed weeks of check-ins to GeoParquet, dropped, and restored intact.

One reference database for the module, its tests in order: the seeded walk's week
(2020-W37, about 500 check-ins and their patrols) with copies of a third of it a week
earlier and a week later, a check-in in 2020-W39, the engine's copy of all of them in
patrol_checkins, three incidents of W37, and the compliance clock set so that W36 to W39
are final and W40 is not: W36 to W38 may go, W39 may not (the week after it is open).
"""

import shutil
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import geopandas as gpd
import psycopg
import pytest
from sqlalchemy import Engine
from typer.testing import CliRunner

from geodata.archive import ArchiveCorrupted, ArchiveRefused, read_manifest
from geodata.compliance import ComplianceConfig, IsoWeek
from geodata.db import archive_store
from geodata.db.compliance_read import compliance_report, worker_patrols
from geodata.db.compliance_store import CLOCK_NAME
from geodata.db.engine import create_db_engine
from geodata.db.evaluation_read import read_evaluation
from geodata.db.track_read import track_page
from geodata.evaluation import Period
from tests.integration.incident_support import store_incident
from wangge.benchmarks.walk_seed import WEEK, SeededWalk, seed_walk_week
from wangge.cli import app

pytestmark = pytest.mark.integration

LATENESS = ComplianceConfig().allowed_lateness
WEEKS = (IsoWeek.parse("2020-W36"), WEEK, IsoWeek.parse("2020-W38"))
BEFORE = date(2020, 9, 21)  # the Monday after W38: W36 to W38 end by it
PERIOD = Period(date(2020, 9, 1), date(2020, 9, 30))
SPAN = (datetime(2020, 8, 31, tzinfo=UTC), datetime(2020, 9, 28, tzinfo=UTC))

_ROWS = (
    "SELECT event_id, worker_id, recorded_at, lon, lat, crs, accuracy_m, ST_AsEWKB(geom),"
    " grid_code, staff_id, in_assigned_grid, assignment_rule, flags, late, received_at,"
    " assigned_at FROM checkins WHERE recorded_at >= %s AND recorded_at < %s"
    " ORDER BY event_id, recorded_at"
)
_PATROL_ROWS = (
    "SELECT * FROM patrol_checkins WHERE recorded_at >= %s AND recorded_at < %s"
    " ORDER BY event_id, recorded_at"
)


def _seed_other_weeks(url: str) -> None:
    """A third of W37's check-ins a week earlier and a week later, one in W39 (open)."""
    copy = (
        "INSERT INTO checkins (event_id, worker_id, recorded_at, lon, lat, crs, accuracy_m,"
        " geom, grid_code, staff_id, in_assigned_grid, assignment_rule, flags, late)"
        " SELECT gen_random_uuid(), worker_id, recorded_at + %s, lon, lat, crs, accuracy_m,"
        " geom, grid_code, staff_id, in_assigned_grid, assignment_rule, flags, late"
        " FROM checkins WHERE recorded_at >= %s AND recorded_at < %s"
    )
    tz = ComplianceConfig().tz
    with psycopg.connect(url) as conn:
        week = (WEEK.start(tz), WEEK.end(tz))
        for shift in (timedelta(days=-7), timedelta(days=7)):
            conn.execute(copy + " AND get_byte(uuid_send(event_id), 15) %% 3 = 0", (shift, *week))
        conn.execute(copy + " LIMIT 1", (timedelta(days=14), *week))
        # Only W37's partition is made here: W36's and W38's rows wait in checkins_default,
        # and every week's patrol check-ins in patrol_checkins_default, which the archive
        # must empty into their partitions first.
        conn.execute("SELECT checkin_week_partition(%s)", (WEEK.start(tz),))
        conn.execute(
            "INSERT INTO patrol_checkins (event_id, worker_id, grid_code, recorded_at,"
            " accuracy_m, in_assigned_grid, mock, implausible_speed)"
            " SELECT event_id, worker_id, grid_code, recorded_at, accuracy_m,"
            " coalesce(in_assigned_grid, false), 'mocked_location' = ANY(flags),"
            " 'implausible_speed' = ANY(flags) FROM checkins"
        )
        watermark = IsoWeek.parse("2020-W40").start(tz) + LATENESS + timedelta(hours=1)
        conn.execute(
            "INSERT INTO compliance_clock (name, watermark) VALUES (%s, %s)"
            " ON CONFLICT (name) DO UPDATE SET watermark = EXCLUDED.watermark",
            (CLOCK_NAME, watermark),
        )


@pytest.fixture(scope="module")
def seeded(reference_database_factory: Callable[[], str]) -> tuple[str, SeededWalk]:
    url = reference_database_factory()
    walk = seed_walk_week(url)
    _seed_other_weeks(url)
    at = WEEK.start(ComplianceConfig().tz) + timedelta(days=2)
    for status in ("reported", "closed", "in_progress"):
        store_incident(url, walk.grid_code, staff=walk.worker_id, reported_at=at, status=status)
    return url, walk


@pytest.fixture(scope="module")
def db(seeded: tuple[str, SeededWalk]) -> Any:
    engine = create_db_engine(seeded[0])
    yield engine
    engine.dispose()


def _rows(url: str, query: str = _ROWS) -> list[tuple[Any, ...]]:
    with psycopg.connect(url) as conn:
        return conn.execute(query, SPAN).fetchall()


def _figures(engine: Engine, walk: SeededWalk) -> list[Any]:
    """What compliance, evaluation and the worker's track answer for the archived weeks."""
    as_of = datetime(2020, 10, 1, tzinfo=UTC)
    figures: list[Any] = []
    for week in WEEKS:
        figures.append(compliance_report(engine, week, as_of, level="grid"))
        figures.append(worker_patrols(engine, walk.worker_id, week))
    figures.append(read_evaluation(engine, PERIOD, "grid", ""))
    return figures


def _partitions(url: str) -> list[str]:
    with psycopg.connect(url) as conn:
        return sorted(str(w) for w in archive_store.partition_weeks(conn))


def test_an_open_week_is_refused_and_nothing_is_dropped(
    seeded: tuple[str, SeededWalk], tmp_path: Path
) -> None:
    url, _ = seeded
    before = _rows(url)
    with pytest.raises(ArchiveRefused, match="2020-W39 not closed"):
        archive_store.archive(url, date(2020, 10, 1), tmp_path, LATENESS)
    assert _rows(url) == before
    assert list(tmp_path.glob("*.parquet")) == []


def test_a_corrupted_file_is_refused_before_its_partition_is_dropped(
    seeded: tuple[str, SeededWalk], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    url, _ = seeded
    before = _rows(url)
    write = archive_store.write_partition_file

    def write_then_damage(frame: gpd.GeoDataFrame, path: Path) -> None:
        write(frame, path)
        data = bytearray(path.read_bytes())
        data[len(data) // 2] ^= 0xFF
        path.write_bytes(bytes(data))

    monkeypatch.setattr(archive_store, "write_partition_file", write_then_damage)
    with pytest.raises(ArchiveCorrupted):
        archive_store.archive(url, BEFORE, tmp_path, LATENESS)
    assert _rows(url) == before
    assert {"2020-W36", "2020-W37", "2020-W38"} <= set(_partitions(url))
    assert read_manifest(tmp_path) == []
    # The failed week's files were removed, so they stop no later run.
    assert list(tmp_path.glob("*.parquet*")) == []


def test_archive_drop_restore_gives_the_same_rows_and_figures(
    seeded: tuple[str, SeededWalk], db: Engine, tmp_path: Path
) -> None:
    url, walk = seeded
    rows, figures = _rows(url), _figures(db, walk)
    patrol_rows = _rows(url, _PATROL_ROWS)
    track = track_page(db, walk.worker_id, *SPAN, limit=5000)
    assert len(rows) > 600
    assert len(patrol_rows) == len(rows)
    assert figures[-1].total.reported == 3

    out = tmp_path / "archive"
    result = CliRunner().invoke(
        app, ["archive", "--before", BEFORE.isoformat(), "--out", str(out)],
        env={"WANGGE_DATABASE_URL": url},
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    entries = read_manifest(out)
    assert [e.week for e in entries] == [str(w) for w in WEEKS]
    assert sum(e.rows for e in entries) == len(rows) - 1  # W39's stays
    assert sum(e.patrol_rows for e in entries) == len(patrol_rows) - 1
    assert {"2020-W36", "2020-W37", "2020-W38"}.isdisjoint(_partitions(url))
    assert len(_rows(url)) == len(_rows(url, _PATROL_ROWS)) == 1
    # Compliance and evaluation read the engine's tables and incidents, not check-ins.
    assert _figures(db, walk) == figures

    damaged = tmp_path / "damaged"
    shutil.copytree(out, damaged)
    patrol_file = entries[1].parts[0].patrol_checkins
    assert patrol_file is not None
    (damaged / patrol_file.file).write_bytes(b"PAR1 not a parquet file")
    with pytest.raises(ArchiveCorrupted, match=patrol_file.file):
        archive_store.restore(url, damaged)
    assert len(_rows(url)) == 1  # W36's good files were not loaded either

    result = CliRunner().invoke(
        app, ["archive", "restore", str(out)], env={"WANGGE_DATABASE_URL": url}
    )
    assert result.exit_code == 0, result.output
    assert _rows(url) == rows
    assert _rows(url, _PATROL_ROWS) == patrol_rows
    assert _figures(db, walk) == figures
    assert track_page(db, walk.worker_id, *SPAN, limit=5000) == track
    # A second restore adds nothing: every row is already there.
    assert [added for _, added in archive_store.restore(url, out)] == [0, 0, 0]


def _store_late(url: str, archived: tuple[Any, ...]) -> str:
    """What the writers store for W37 once it is archived: a new, very late check-in, and
    `archived` (event id, time) delivered again; each in both tables, copied from W39's
    row, in W37's partitions made again. Returns the new check-in's event id."""
    tz = ComplianceConfig().tz
    late = WEEK.start(tz) + timedelta(days=3)
    with psycopg.connect(url) as conn:
        event_id = str(conn.execute("SELECT gen_random_uuid()").fetchone()[0])  # type: ignore[index]
        keys = (
            "(VALUES (%s::uuid, %s::timestamptz), (%s::uuid, %s::timestamptz))"
            " AS k (event_id, recorded_at)"
        )
        params = (event_id, late, *archived, IsoWeek.parse("2020-W39").start(tz))
        for table, columns in (
            ("checkins", "worker_id, lon, lat, crs, accuracy_m, geom, grid_code, staff_id,"
             " in_assigned_grid, assignment_rule, flags"),
            ("patrol_checkins", "worker_id, grid_code, accuracy_m, in_assigned_grid, mock,"
             " implausible_speed"),
        ):  # fmt: skip
            conn.execute("SELECT week_partition(%s, %s)", (table, late))
            conn.execute(
                f"INSERT INTO {table} (event_id, recorded_at, late, received_at, {columns})"
                f" SELECT k.event_id, k.recorded_at, true, now(), {columns}"
                f" FROM {table}, {keys} WHERE {table}.recorded_at >= %s",
                params,
            )
    return event_id


def test_a_late_checkin_for_an_archived_week_goes_to_a_second_part_and_restores(
    seeded: tuple[str, SeededWalk], db: Engine, tmp_path: Path
) -> None:
    url, walk = seeded
    rows, patrol_rows, figures = _rows(url), _rows(url, _PATROL_ROWS), _figures(db, walk)
    tz = ComplianceConfig().tz
    with psycopg.connect(url) as conn:
        archived = conn.execute(
            "SELECT event_id, recorded_at FROM checkins WHERE recorded_at >= %s"
            " AND recorded_at < %s ORDER BY event_id LIMIT 1",
            (WEEK.start(tz), WEEK.end(tz)),
        ).fetchone()
    assert archived is not None
    out = tmp_path / "archive"
    first = archive_store.archive(url, BEFORE, out, LATENESS)
    assert [d.part.part if d.part else None for d in first] == [1, 1, 1]

    late_id = _store_late(url, archived)
    assert "2020-W37" in _partitions(url)
    second = archive_store.archive(url, BEFORE, out, LATENESS)
    assert [(d.entry.week, d.part.part if d.part else None) for d in second] == [("2020-W37", 2)]
    entry = read_manifest(out)[1]
    assert entry.parts[0] == first[1].entry.parts[0]  # the first part is as it was written
    # Both stored rows are kept: the new check-in, and the redelivered one (its own
    # received_at and late flag), which part 1 holds in another form.
    added = entry.parts[1]
    assert (added.checkins.rows, added.patrol_checkins and added.patrol_checkins.rows) == (2, 2)
    assert sorted(p.name for p in out.glob("*2020w37*")) == [
        "checkins_2020w37.2.parquet", "checkins_2020w37.parquet",
        "patrol_checkins_2020w37.2.parquet", "patrol_checkins_2020w37.parquet",
    ]  # fmt: skip
    assert _figures(db, walk) == figures

    archive_store.restore(url, out)
    # Every row of both parts: the earlier rows as they were (the redelivered event as
    # first stored, the one the table kept) and the new check-in.
    for query, before in ((_ROWS, rows), (_PATROL_ROWS, patrol_rows)):
        restored = _rows(url, query)
        assert [r for r in restored if str(r[0]) != late_id] == before
        assert len(restored) == len(before) + 1
    assert _figures(db, walk) == figures

    # Restored and archived again, the weeks hold nothing new: no part is added.
    manifest = (out / "manifest.json").read_bytes()
    again = archive_store.archive(url, BEFORE, out, LATENESS)
    assert [d.part for d in again] == [None, None, None]
    assert (out / "manifest.json").read_bytes() == manifest
    archive_store.restore(url, out)  # the next test archives W36 and W37 again


def test_an_unlisted_file_where_a_new_part_would_go_is_refused_and_kept(
    seeded: tuple[str, SeededWalk], tmp_path: Path
) -> None:
    url, _ = seeded
    (tmp_path / "checkins_2020w36.parquet").write_bytes(b"someone else's")
    with pytest.raises(ArchiveRefused, match=r"checkins_2020w36\.parquet already exists"):
        archive_store.archive(url, BEFORE, tmp_path, LATENESS)
    assert (tmp_path / "checkins_2020w36.parquet").read_bytes() == b"someone else's"
    assert {"2020-W36", "2020-W37", "2020-W38"} <= set(_partitions(url))


def test_retention_archives_only_closed_weeks_beyond_the_kept_ones(
    seeded: tuple[str, SeededWalk], tmp_path: Path
) -> None:
    url, _ = seeded
    env = {"WANGGE_DATABASE_URL": url}
    command = ["archive", "--apply-retention", "--out", str(tmp_path)]
    unset = CliRunner().invoke(app, command, env=env)
    assert unset.exit_code == 0, unset.output
    assert "every week is kept" in unset.output
    assert read_manifest(tmp_path) == []
    # The watermark is in W40: keeping 3 weeks keeps W38 to W40, so W36 and W37 go.
    env["WANGGE_RETENTION_WEEKS"] = "3"
    kept = CliRunner().invoke(app, command, env=env)
    assert kept.exit_code == 0, kept.output
    assert [e.week for e in read_manifest(tmp_path)] == ["2020-W36", "2020-W37"]
    assert {"2020-W38", "2020-W39"} <= set(_partitions(url))
    assert {"2020-W36", "2020-W37"}.isdisjoint(_partitions(url))
