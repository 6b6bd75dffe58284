"""Late check-ins: folded in within the lateness bound, frozen out (and counted) after it."""

import json
import uuid
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

import psycopg
import pytest

from geodata.contract import Topics
from tests.integration.pipeline_support import (
    WEEK_START,
    ConsumerProcess,
    count_rows,
    free_port,
    keep_assigned_only,
    placements,
    produce,
    running,
    wait_until,
)

pytestmark = pytest.mark.integration

MONDAY = WEEK_START.replace(hour=0)  # 2020-09-07 00:00 Asia/Shanghai, 2020-W37


def _walk(worker: str, lon: float, lat: float, day: int, hour: int) -> list[dict[str, object]]:
    """A valid patrol: four fixes over 15 minutes."""
    start = MONDAY + timedelta(days=day, hours=hour)
    return [
        {
            "event_id": str(uuid.uuid4()),
            "worker_id": worker,
            "lon": lon,
            "lat": lat,
            "recorded_at": (start + timedelta(minutes=5 * i)).isoformat(),
            "accuracy_m": 8.0,
        }
        for i in range(4)
    ]


def _status(url: str, worker: str) -> tuple[str, int]:
    with psycopg.connect(url) as conn:
        row = conn.execute(
            "SELECT status, counted FROM patrol_weeks WHERE worker_id = %s AND week = '2020-W37'",
            (worker,),
        ).fetchone()
    assert row is not None
    return str(row[0]), int(row[1])


def test_late_checkins_count_until_the_week_is_final_and_are_only_counted_after(
    reference_database_url: str,
    kafka_bootstrap: str,
    topic_factory: Callable[..., Topics],
    tmp_path: Path,
) -> None:
    url = reference_database_url
    topics = topic_factory()
    keen, idle = placements(url, per_grid=1, seed=9)[:2]
    keep_assigned_only(url, [keen.worker_id, idle.worker_id])
    sent = 0

    def send(events: list[dict[str, object]]) -> None:
        nonlocal sent
        produce(
            kafka_bootstrap,
            topics.checkins,
            ((str(e["worker_id"]).encode(), json.dumps(e).encode()) for e in events),
        )
        sent += len(events)
        wait_until(
            lambda: count_rows(url, "SELECT count(*) FROM patrol_checkins") == sent,
            120,
            f"{sent} check-ins folded in",
        )

    def walk(spot: object, day: int, hour: int = 9) -> list[dict[str, object]]:
        return _walk(spot.worker_id, spot.lon, spot.lat, day, hour)  # type: ignore[attr-defined]

    port = free_port()
    consumer = ConsumerProcess(
        url, kafka_bootstrap, topics, f"late-{uuid.uuid4().hex[:8]}", tmp_path, metrics_port=port
    )
    with running(consumer):
        # Monday and Tuesday walks, then event time moves on to the next Monday.
        send(walk(keen, 0) + walk(keen, 1) + walk(idle, 7, 10)[:1])
        assert _status(url, keen.worker_id) == ("missed", 2)

        # Friday's walk arrives three days late, but before the week is final: it counts.
        send(walk(keen, 4))
        assert _status(url, keen.worker_id) == ("met", 3)
        assert count_rows(url, "SELECT count(*) FROM patrol_checkins WHERE late") == 0

        # Event time passes Sunday + 48 h: 2020-W37 is final.
        send(walk(keen, 9, 1)[:1])
        assert _status(url, idle.worker_id) == ("missed", 0)

        # A walk of the idle worker in that week now changes nothing, but is kept and counted.
        send(walk(idle, 5))
        assert _status(url, idle.worker_id) == ("missed", 0)
        assert count_rows(url, "SELECT count(*) FROM patrol_checkins WHERE late") == 4
        assert consumer.metric("wangge_events_late_total") == 4
        with psycopg.connect(url) as conn:
            final = conn.execute(
                "SELECT bool_and(final) FROM patrol_weeks WHERE week = '2020-W37'"
            ).fetchone()
        assert final == (True,)


def test_a_walk_in_a_grid_the_worker_does_not_hold_records_and_publishes_no_status(
    reference_database_url: str,
    kafka_bootstrap: str,
    topic_factory: Callable[..., Topics],
    tmp_path: Path,
) -> None:
    url = reference_database_url
    topics = topic_factory()
    spots = placements(url, per_grid=1, seed=11)
    walker = spots[0]
    elsewhere = next(s for s in spots if s.grid_code != walker.grid_code)
    keep_assigned_only(url, [walker.worker_id])
    # One walk in the grid the worker holds, one in another grid, on other days.
    events = _walk(walker.worker_id, walker.lon, walker.lat, day=0, hour=9) + _walk(
        walker.worker_id, elsewhere.lon, elsewhere.lat, day=1, hour=9
    )
    produce(
        kafka_bootstrap,
        topics.checkins,
        ((str(e["worker_id"]).encode(), json.dumps(e).encode()) for e in events),
    )
    group = f"neighbour-{uuid.uuid4().hex[:8]}"
    with running(ConsumerProcess(url, kafka_bootstrap, topics, group, tmp_path)):
        wait_until(
            lambda: (
                count_rows(url, "SELECT count(*) FROM patrol_checkins") == len(events)
                and count_rows(
                    url, "SELECT count(*) FROM compliance_changes WHERE published_at IS NULL"
                )
                == 0
            ),
            120,
            "both walks folded in and the changes published",
        )
    with psycopg.connect(url) as conn:
        weeks = conn.execute(
            "SELECT grid_code, status, counted, required FROM patrol_weeks"
        ).fetchall()
        changed = conn.execute("SELECT DISTINCT grid_code FROM compliance_changes").fetchall()
        patrols = conn.execute("SELECT grid_code, counted FROM patrols").fetchall()
    # The held grid has its status (one patrol of three); the other grid has nothing at all.
    assert weeks == [(walker.grid_code, "on_track", 1, 3)]
    assert changed == [(walker.grid_code,)]
    assert patrols == [(walker.grid_code, True)]
