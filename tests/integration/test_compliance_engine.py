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


def _records(events: list[dict[str, object]], spots: list[Placement]) -> list[CheckinRecord]:
    """The check-ins as the reference reads them, each in its worker's grid."""
    return [
        CheckinRecord(
            uuid.UUID(str(e["event_id"])),
            str(e["worker_id"]),
            next(s.grid_code for s in spots if s.worker_id == e["worker_id"]),
            datetime.fromisoformat(str(e["recorded_at"])),
            float(e["accuracy_m"]),  # type: ignore[arg-type]
        )
        for e in events
    ]


def _assert_agrees_with_the_reference(
    url: str, spots: list[Placement], records: list[CheckinRecord]
) -> dict[tuple[str, str], tuple[str, int, int]]:
    """Each spot's stored status and patrols of WEEK equal the reference's, judged with
    the assignment periods stored now; the stored statuses."""
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
    return statuses


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

    records = _records(events, spots)
    statuses = _assert_agrees_with_the_reference(url, spots, records)

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


def test_a_roster_change_reaches_the_week_held_in_memory_at_its_next_check_in(
    reference_database_factory: Callable[[], str],
    kafka_bootstrap: str,
    topic_factory: Callable[..., Topics],
    tmp_path: Path,
) -> None:
    """The stage holds each open week's fold in memory. The worker's assignment is moved
    to start on Tuesday at noon while the patrols of Monday and Tuesday morning are held;
    the grid snapshot brings the change, and the week's next check-ins are judged with the
    new period: those two patrols no longer count, as the reference says."""
    url = reference_database_factory()
    topics = topic_factory()
    spot = placements(url, per_grid=1, seed=5)[0]
    keep_assigned_only(url, [spot.worker_id])

    def walk(day: int, hour: int, fixes: int, spacing_minutes: int) -> list[dict[str, object]]:
        start = MONDAY + timedelta(days=day, hours=hour)
        return [
            {
                "event_id": str(uuid.uuid4()),
                "worker_id": spot.worker_id,
                "lon": spot.lon,
                "lat": spot.lat,
                "recorded_at": (start + timedelta(minutes=i * spacing_minutes)).isoformat(),
                "accuracy_m": 8.0,
            }
            for i in range(fixes)
        ]

    def send(events: list[dict[str, object]]) -> None:
        messages = ((spot.worker_id.encode(), json.dumps(e).encode()) for e in events)
        produce(kafka_bootstrap, topics.checkins, messages)

    def folded() -> int:
        return count_rows(url, "SELECT count(*) FROM patrol_checkins")

    early = walk(0, 9, 4, 10) + walk(1, 9, 4, 10)  # one patrol a day counts
    thursday = walk(3, 9, 24, 3)  # one fix at a time until the stage has the new roster
    process = ConsumerProcess(url, kafka_bootstrap, topics, "roster", tmp_path).start()
    try:
        send(early)
        wait_until(lambda: folded() == len(early), 120, "the early walks folded in")
        wait_until(lambda: _counted(url, spot) == 2, 60, "both early patrols counted")

        def loads() -> int:
            return process.log().count(
                "wangge-compliance-stage geodata.db.grid_cache grid snapshot loaded"
            )

        before = loads()
        with psycopg.connect(url) as conn:
            conn.execute(
                "UPDATE worker_assignments SET valid_from = %s WHERE worker_id = %s",
                (MONDAY + timedelta(days=1, hours=12), spot.worker_id),
            )
        sent = 0

        def roster_reloaded() -> bool:
            nonlocal sent
            if loads() > before:
                return True
            if sent < len(thursday) - 1:  # the last fix comes after the reload
                send(thursday[sent : sent + 1])
                sent += 1
            return False

        wait_until(roster_reloaded, 60, "the compliance stage loaded the new roster", every=0.5)
        send(thursday[sent:])
        wait_until(
            lambda: (
                folded() == len(early) + len(thursday)
                and count_rows(
                    url, "SELECT count(*) FROM compliance_changes WHERE published_at IS NULL"
                )
                == 0
            ),
            120,
            "Thursday's walk folded in and every change published",
        )
    finally:
        process.stop()
    statuses = _assert_agrees_with_the_reference(url, [spot], _records(early + thursday, [spot]))
    assert statuses[(spot.worker_id, spot.grid_code)][1] == 1, "only Thursday's patrol counts"


def _counted(url: str, spot: Placement) -> int | None:
    with psycopg.connect(url) as conn:
        row = conn.execute(
            "SELECT counted FROM patrol_weeks"
            " WHERE worker_id = %s AND grid_code = %s AND week = %s",
            (spot.worker_id, spot.grid_code, WEEK),
        ).fetchone()
    return None if row is None else int(row[0])
