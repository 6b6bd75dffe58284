"""The compliance engine end to end: real broker, real consumer processes, real PostGIS.

Random check-in histories are produced in a random order with random duplicates, the
consumer is killed and restarted at random points, and the result must equal the
deliberately simple reference implementation, with each status change published once.
"""

import itertools
import json
import random
import uuid
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

import psycopg
import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from geodata.compliance import CheckinRecord, ComplianceConfig
from geodata.contract import Topics
from geodata.staffing import AssignmentPeriod
from tests.integration.pipeline_support import (
    WEEK_START,
    ConsumerProcess,
    Placement,
    count_rows,
    keep_assigned_only,
    placements,
    produce,
    read_topic,
    wait_until,
)
from tests.reference_compliance import reference_week

pytestmark = pytest.mark.integration

WEEK = "2020-W37"
MONDAY = WEEK_START.replace(hour=0)
CONFIG = ComplianceConfig()
WORKERS = 4


@dataclass(frozen=True)
class Walk:
    """A planned walk: which worker, when it starts, how many fixes how far apart."""

    worker: int
    day: int
    start_minute: int
    fixes: int
    spacing_minutes: int
    poor_accuracy: bool


walks = st.lists(
    st.builds(
        Walk,
        worker=st.integers(0, WORKERS - 1),
        day=st.integers(0, 6),
        start_minute=st.integers(0, 24 * 60 - 1),
        fixes=st.integers(1, 6),
        spacing_minutes=st.sampled_from([1, 3, 5, 10, 29, 30, 31]),
        poor_accuracy=st.booleans(),
    ),
    min_size=4,
    max_size=18,
)


def _events(plan: list[Walk], spots: list[Placement]) -> list[dict[str, object]]:
    events = []
    for walk in plan:
        spot = spots[walk.worker]
        start = MONDAY + timedelta(days=walk.day, minutes=walk.start_minute)
        for i in range(walk.fixes):
            recorded = start + timedelta(minutes=i * walk.spacing_minutes)
            if recorded >= MONDAY + timedelta(days=7):
                break  # the whole history stays inside the week, within the lateness bound
            events.append(
                {
                    "event_id": str(uuid.uuid4()),
                    "worker_id": spot.worker_id,
                    "lon": spot.lon,
                    "lat": spot.lat,
                    "recorded_at": recorded.isoformat(),
                    "accuracy_m": 150.0 if walk.poor_accuracy and i == 0 else 8.0,
                }
            )
    return events


@settings(
    max_examples=4,
    deadline=None,
    # Each example runs real processes for many seconds: report the failure as found
    # rather than spend minutes shrinking it.
    phases=[Phase.explicit, Phase.reuse, Phase.generate],
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(plan=walks, seed=st.integers(0, 2**32 - 1), restarts=st.integers(0, 2))
def test_engine_agrees_with_the_reference_under_shuffles_duplicates_and_restarts(
    plan: list[Walk],
    seed: int,
    restarts: int,
    reference_database_factory: Callable[[], str],
    kafka_bootstrap: str,
    topic_factory: Callable[..., Topics],
    tmp_path: Path,
) -> None:
    rng = random.Random(seed)
    url = reference_database_factory()
    topics = topic_factory()
    spots = placements(url, per_grid=1, seed=seed % 1000 + 1)[: WORKERS * 97 : 97]
    keep_assigned_only(url, (s.worker_id for s in spots))
    events = _events(plan, spots)
    deliveries = events + rng.sample(events, k=len(events) // 3)  # retried uploads
    rng.shuffle(deliveries)
    produce(
        kafka_bootstrap,
        topics.checkins,
        ((str(e["worker_id"]).encode(), json.dumps(e).encode()) for e in deliveries),
    )

    group = f"engine-{uuid.uuid4().hex[:8]}"

    def consumer() -> ConsumerProcess:
        return ConsumerProcess(url, kafka_bootstrap, topics, group, tmp_path)

    for _ in range(restarts):
        process = consumer().start()
        goal = rng.randint(1, max(1, len(events)))

        def progressed(goal: int = goal) -> bool:
            return (
                count_rows(url, "SELECT count(*) FROM patrol_checkins") >= goal
                or count_rows(url, "SELECT count(*) FROM checkins") >= goal
            )

        try:
            wait_until(progressed, 120, "progress before the kill")
        finally:
            process.kill()
    final = consumer().start()
    try:
        wait_until(
            lambda: (
                count_rows(url, "SELECT count(*) FROM patrol_checkins") == len(events)
                and count_rows(
                    url, "SELECT count(*) FROM compliance_changes WHERE published_at IS NULL"
                )
                == 0
            ),
            180,
            "every check-in folded in and every change published",
        )
    finally:
        final.stop()

    records = [
        CheckinRecord(
            uuid.UUID(str(e["event_id"])),
            str(e["worker_id"]),
            next(s.grid_code for s in spots if s.worker_id == e["worker_id"]),
            datetime.fromisoformat(str(e["recorded_at"])),
            float(e["accuracy_m"]),  # type: ignore[arg-type]
        )
        for e in events
    ]
    watermark = max(r.recorded_at for r in records)
    with psycopg.connect(url) as conn:
        periods = [
            AssignmentPeriod(w, g, f, t)
            for w, g, f, t in conn.execute(
                "SELECT worker_id, grid_code, valid_from, valid_to FROM worker_assignments"
            ).fetchall()
        ]
        statuses = {
            (w, g): (status, counted, required)
            for w, g, status, counted, required in conn.execute(
                "SELECT worker_id, grid_code, status, counted, required FROM patrol_weeks"
                " WHERE week = %s",
                (WEEK,),
            ).fetchall()
        }
        stored_patrols = defaultdict(list)
        for w, g, start, end, n, valid, counted in conn.execute(
            "SELECT worker_id, grid_code, started_at, ended_at, checkin_count, valid, counted"
            " FROM patrols WHERE week = %s ORDER BY started_at",
            (WEEK,),
        ).fetchall():
            stored_patrols[(w, g)].append((start, end, n, valid, counted))
        clock = conn.execute("SELECT watermark FROM compliance_clock").fetchone()
    assert clock is not None
    assert clock[0] == watermark

    for spot in spots:
        expected = reference_week(
            records, periods, spot.worker_id, spot.grid_code, WEEK, watermark, CONFIG
        )
        key = (spot.worker_id, spot.grid_code)
        assert statuses[key] == (expected.status, expected.counted, expected.required)
        assert stored_patrols[key] == [
            (p.start, p.end, p.checkins, p.validity == "valid", p.count_reason == "counted")
            for p in expected.patrols
        ]

    # Each change once, and the changes of a key chain from nothing to its final status.
    published = [json.loads(r.value) for r in read_topic(kafka_bootstrap, topics.compliance)]  # type: ignore[attr-defined]
    assert len({c["event_id"] for c in published}) == len(published)
    assert len(published) == count_rows(url, "SELECT count(*) FROM compliance_changes")
    chains: dict[tuple[str, str, str], list[dict[str, object]]] = defaultdict(list)
    for change in published:
        chains[(change["worker_id"], change["grid_code"], change["week"])].append(change)
    for (worker, grid, week), chain in chains.items():
        assert chain[0]["old_status"] is None
        for before, after in itertools.pairwise(chain):
            assert after["old_status"] == before["new_status"]
        if week == WEEK:
            assert chain[-1]["new_status"] == statuses[(worker, grid)][0]
