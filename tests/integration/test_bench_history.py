"""The growth benchmark's own parts on a tiny history (2 weeks and the current week's
first 3 days, 12 workers), in-process: the loader puts every week in every growing table,
each week's check-ins in their own partitions, row for row; the worker reads find the
busiest worker's week; the comparison turns two runs into ratios judged against 1.2×.
The pipeline measures (a consumer process, the API) are the compliance benchmark's,
exercised by test_bench_compliance.py and by the benchmark itself. No figure is judged."""

import psycopg
import pytest
from psycopg import sql

from geodata.compliance import IsoWeek
from geodata.db.engine import libpq_url
from wangge.benchmarks.compliance import Fold
from wangge.benchmarks.compliance_latency import Latency
from wangge.benchmarks.compliance_week import WEEK, plan_week
from wangge.benchmarks.history import (
    LOADED_DAYS,
    HistoryRun,
    Measures,
    as_benchmark_rows,
    load_history,
    time_worker_reads,
)
from wangge.benchmarks.history_load import (
    GROWING,
    WeekLoad,
    disk_bytes,
    load_week,
    partition_name,
    prepare_template,
    rows_by_week,
)

pytestmark = pytest.mark.integration


def _count(conn: psycopg.Connection, table: str) -> int:
    row = conn.execute(sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier(table))).fetchone()
    return int(row[0]) if row else 0


def test_history_loads_every_week_into_its_own_partitions_and_the_reads_find_the_week(
    reference_database_url: str,
) -> None:
    url = libpq_url(reference_database_url)
    plan = plan_week(url, 12)
    with psycopg.connect(url) as conn:
        assert prepare_template(conn, plan.pairs) > 0
        current = load_week(conn, WEEK, 2, LOADED_DAYS, final=False)
    stages: list[str] = []
    loads, _load_s, _vacuum_s = load_history(url, 2, lambda stage, _d, _t: stages.append(stage))

    assert [str(load.week) for load in loads] == ["2020-W35", "2020-W36"]
    full, partial = loads[0].rows, current.rows
    assert all(full[table] > 0 for table in GROWING)
    assert 0 < partial["checkins"] < full["checkins"]  # the current week: Monday to Wednesday
    with psycopg.connect(url) as conn:
        counted = rows_by_week(conn)
        for load in [*loads, current]:
            # Each week of history is the template week moved in time, nothing else.
            assert load.rows == (full if load is not current else partial)
            assert counted[str(load.week)] == load.rows
            # In the week's own partitions, as the storage stage and the engine leave them.
            for table in ("checkins", "patrol_checkins"):
                assert _count(conn, partition_name(load.week, table)) == load.rows[table]
        assert _count(conn, "checkins_default") == _count(conn, "patrol_checkins_default") == 0
        assert all(disk_bytes(conn, table) > 0 for table in GROWING)
    assert stages[-1] == "Vacuuming 2 weeks"

    worker_id, fixes, patrols_ms, track_ms = time_worker_reads(url, 1)
    assert worker_id in {worker for worker, _grid in plan.pairs}
    assert fixes > 0
    assert patrols_ms > 0
    assert track_ms > 0


def _measures(scale: float) -> Measures:
    """A run whose every time is `scale` times the first's (and every rate 1/`scale`)."""
    fold = Fold(records=1000, startup_s=1.0, checkins_s=1.0 * scale, total_s=2.0 * scale)
    latency = Latency(100 * scale, 400 * scale, 500 * scale, 1000, 100.0, 1.0, 90.0, 110.0)
    return Measures(fold, latency, 10 * scale, 20 * scale, 50, 1 * scale, 5 * scale, "W00001", 400)


def test_history_comparison_gives_each_measure_its_ratio_to_week_1_and_judges_it() -> None:
    weeks = [
        WeekLoad(IsoWeek.parse(week), dict.fromkeys(GROWING, 10), 1.0)
        for week in ("2020-W35", "2020-W36", str(WEEK))
    ]
    runs = [
        HistoryRun(
            first=_measures(1.0),
            last=_measures(scale),
            weeks=weeks,
            load_s=10.0,
            vacuum_s=1.0,
            disk=dict.fromkeys(GROWING, 1024**2),
            counted={},
            scale=0.01,
            workers=24,
        )
        for scale in (1.1, 1.5)
    ]
    within, beyond = (as_benchmark_rows(run) for run in runs)

    compared = [row for row in within if row.peer_name.startswith("week 1")]
    assert len(compared) == 7
    for row in compared:
        assert row.name.endswith("week 3")
        assert row.met is True
        # Times grow 1.1×, rates fall to 1/1.1.
        assert row.ratio == pytest.approx(1 / 1.1 if row.unit == "events/s" else 1.1)
    assert [row.met for row in beyond if row.peer_name.startswith("week 1")] == [False] * 7
