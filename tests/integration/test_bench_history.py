"""The growth benchmark runs end to end on a tiny history (3 weeks of 1% of Baoji): every
week it loaded is in the database, row for row, and every measure has a week-1 peer and a
ratio; no figure is judged."""

import math

import pytest

from wangge.benchmarks.compliance_week import WEEK
from wangge.benchmarks.history import as_benchmark_rows, run_history_benchmark
from wangge.benchmarks.history_load import GROWING

pytestmark = pytest.mark.integration


def test_history_benchmark_loads_every_week_into_every_growing_table_and_compares_week_1(
    postgis_server: str, reference_database_url: str, kafka_bootstrap: str
) -> None:
    stages: list[str] = []
    run = run_history_benchmark(
        f"{postgis_server}/postgres",
        kafka_bootstrap,
        weeks=3,
        scale=0.01,
        progress=lambda stage, _done, _total: stages.append(stage),
        events=500,
        latency_seconds=0.5,
        query_runs=2,
        reference_database_url=reference_database_url,
    )

    assert [str(load.week) for load in run.weeks] == ["2020-W35", "2020-W36", str(WEEK)]
    full, partial = run.weeks[0].rows, run.weeks[-1].rows
    assert all(full[table] > 0 for table in GROWING)
    assert 0 < partial["checkins"] < full["checkins"]  # the current week: Monday to Wednesday
    for load in run.weeks[:-1]:
        assert load.rows == full  # each week of history is the template week moved in time
        # Counted in the database before it was dropped; history weeks hold nothing else.
        assert run.counted[str(load.week)] == load.rows
    # Counted before week 3 was measured: the current week holds what was loaded.
    assert run.counted[str(WEEK)] == partial
    assert all(size > 0 for size in run.disk.values())

    rows = as_benchmark_rows(run)
    compared = [row for row in rows if row.peer_name.startswith("week 1")]
    assert len(compared) == 7
    for row in compared:
        assert row.name.endswith("week 3")
        assert row.ratio is not None
        assert math.isfinite(row.ratio)
        assert row.ratio > 0
        assert row.met is not None
    assert "Done" in stages
