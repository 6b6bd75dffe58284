"""The pipeline benchmark runs end to end on a small stream; no figure is judged here."""

import math

import pytest

from wangge.benchmarks.pipeline import run_pipeline_benchmark

pytestmark = pytest.mark.integration


def test_pipeline_benchmark_stores_every_event_once_and_reports_positive_figures(
    postgis_server: str, reference_database_url: str, kafka_bootstrap: str
) -> None:
    stages: list[str] = []
    rows = run_pipeline_benchmark(
        f"{postgis_server}/postgres",
        kafka_bootstrap,
        events=3000,
        progress=lambda stage, _done, _total: stages.append(stage),
        reference_database_url=reference_database_url,
        process_counts=(1, 2),
        latency_seconds=1.0,  # a thousand events: the latency stage runs, nothing is judged
    )

    drains = [row for row in rows if row.stored is not None]
    assert len(drains) == 2
    for row in drains:
        # Every distinct event has exactly one row, and exactly one assignment was produced.
        assert row.stored == row.expected == row.republished
        assert row.expected is not None
        assert 0 < row.expected <= 3000
    assert {row.unit for row in rows} == {"events/s", "ms", "points/s"}
    for row in rows:
        assert math.isfinite(row.ours)
        assert row.ours > 0
        if row.ratio is not None:
            assert row.peer is not None
            assert row.peer > 0
            assert row.ratio > 0
    assert "Done" in stages
