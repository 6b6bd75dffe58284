"""The API benchmark runs end to end for a quarter second per measurement (each still answers
requests, at every load); no figure is judged."""

import math

import pytest

from wangge.benchmarks.api import CEILING, LOCATE, run_api_benchmark

pytestmark = pytest.mark.integration


def test_api_benchmark_measures_every_endpoint_and_reports_positive_rates(
    postgis_server: str, reference_database_url: str, kafka_bootstrap: str
) -> None:
    stages: list[str] = []
    rows = run_api_benchmark(
        f"{postgis_server}/postgres",
        kafka_bootstrap,
        0.25,
        progress=lambda stage, _done, _total: stages.append(stage),
        reference_database_url=reference_database_url,
        open_rate=200.0,
        tile_rate=20.0,
    )

    closed = [row for row in rows if row.load.startswith("closed")]
    assert [row.endpoint for row in closed][:2] == [CEILING, LOCATE]
    assert len(closed) == 7  # the ceiling, locate, nearest, bbox, z12, z14, OGC items
    assert {row.endpoint for row in rows if row.load.startswith("open")} >= {CEILING, LOCATE}
    for row in rows:
        assert row.result.requests > 0
        assert row.result.failures == 0
        for figure in (row.result.rate, row.rate_ratio, row.result.p50_ms, row.result.p99_ms):
            assert math.isfinite(figure)
            assert figure > 0
    assert [row.met is not None for row in rows].count(True) == 4  # the targets' rows
    assert "Done" in stages
