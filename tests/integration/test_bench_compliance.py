"""The compliance benchmark runs end to end on a few workers' week; no timing is judged here."""

import math

import pytest

from wangge.benchmarks.compliance import run_compliance_benchmark

pytestmark = pytest.mark.integration


def test_compliance_benchmark_folds_every_checkin_once_and_records_statuses(
    postgis_server: str, reference_database_url: str, kafka_bootstrap: str
) -> None:
    stages: list[str] = []
    rows = run_compliance_benchmark(
        f"{postgis_server}/postgres",
        kafka_bootstrap,
        workers=30,
        progress=lambda stage, _done, _total: stages.append(stage),
        reference_database_url=reference_database_url,
        latency_rate=200.0,
        # A second per latency window (the steady one and each rate of the search) and one
        # timed read: enough to run every stage; no figure is judged.
        latency_seconds=1.0,
        query_runs=1,
        sample_workers=30,
    )

    by_name = {row.name: row for row in rows}
    folded = by_name["check-ins folded in exactly once"]
    # Every produced check-in has exactly one engine row (its key is the event id).
    assert folded.expected is not None
    assert folded.expected > 30 * 100  # most of 30 workers walk 3-5 times, 80+ fixes a walk
    assert folded.stored == folded.expected
    assert folded.met is True
    # Every assigned worker of the city has a status for the week, not only the 30 walkers.
    assert folded.republished is not None
    assert folded.republished >= 30
    agreeing = by_name["statuses equal evaluate_week's"]
    assert agreeing.peer == 30
    # Correctness, not a figure: every sampled week as evaluate_week has it at the watermark.
    assert (agreeing.ours, agreeing.met) == (30, True)
    # The compliance stage is fed the storage stage's assignments directly, and the same
    # search runs end to end: both tried at least their first step.
    stage = by_name["compliance stage: highest rate with p99 ≤ 1 s, × check-in stage"]
    end_to_end = by_name[
        "end to end: highest rate with arrival → status p99 ≤ 1 s, × check-in stage"
    ]
    assert "0.25× (" in stage.detail
    assert "0.25× (" in end_to_end.detail
    assert "never drained" not in stage.detail  # the stage read every assignment sent
    assert stage.met is not None
    assert end_to_end.met is None
    for row in rows:
        assert math.isfinite(row.ours)
    assert "Done" in stages
