"""Check-ins and incidents from Kafka to PostGIS: real broker, real consumer processes."""

import json
import uuid
from collections.abc import Callable
from pathlib import Path

import psycopg
import pytest

from geodata.contract import Topics
from geodata.crs import wgs84_to_gcj02
from tests.integration.pipeline_support import (
    ConsumerProcess,
    checkin_event,
    checkin_message,
    count_rows,
    free_port,
    placements,
    produce,
    read_topic,
    running,
    wait_until,
)

pytestmark = pytest.mark.integration

# Independent of the consumer's index: which grid PostGIS says covers the stored point.
POSTGIS_GRID_OF_CHECKIN = """
SELECT c.event_id::text, c.grid_code, c.assignment_rule, c.staff_id, c.in_assigned_grid,
       (SELECT min(g.code) FROM grids g
        WHERE ST_Covers(g.geom, c.geom) AND g.valid_from <= c.recorded_at
          AND (g.valid_to IS NULL OR c.recorded_at < g.valid_to)) AS covering,
       EXISTS (SELECT 1 FROM worker_assignments wa
               WHERE wa.worker_id = c.worker_id AND wa.grid_code = c.grid_code
                 AND wa.valid_from <= c.recorded_at
                 AND (wa.valid_to IS NULL OR c.recorded_at < wa.valid_to)) AS assigned
FROM checkins c
"""


@pytest.fixture
def consumer(
    reference_database_url: str,
    kafka_bootstrap: str,
    topic_factory: Callable[..., Topics],
    tmp_path: Path,
) -> Callable[..., ConsumerProcess]:
    """Factory of consumer processes on one fresh database and one topic namespace."""
    topics = topic_factory()

    def make(group: str = "wangge-test", metrics_port: int | None = None) -> ConsumerProcess:
        return ConsumerProcess(
            reference_database_url,
            kafka_bootstrap,
            topics,
            group,
            tmp_path,
            metrics_port=metrics_port,
        )

    make.topics = topics  # type: ignore[attr-defined]
    make.database_url = reference_database_url  # type: ignore[attr-defined]
    return make


def test_checkins_are_stored_once_with_the_grid_postgis_says_covers_them(
    consumer: Callable[..., ConsumerProcess], kafka_bootstrap: str
) -> None:
    topics: Topics = consumer.topics  # type: ignore[attr-defined]
    url: str = consumer.database_url  # type: ignore[attr-defined]
    spots = placements(url, per_grid=2, seed=11)
    events = [
        checkin_event(s.worker_id, s.lon, s.lat, minutes=i % 600) for i, s in enumerate(spots)
    ]
    # A worker checking in inside a neighbour's grid: assigned there, but not theirs.
    foreign = checkin_event(spots[0].worker_id, spots[-1].lon, spots[-1].lat, minutes=5)
    # A phone reporting GCJ-02: converted to WGS84 before assignment.
    gcj_lon, gcj_lat = wgs84_to_gcj02(spots[1].lon, spots[1].lat)
    gcj = checkin_event(spots[1].worker_id, float(gcj_lon), float(gcj_lat), 7, crs="GCJ-02")
    events += [foreign, gcj]
    produce(kafka_bootstrap, topics.checkins, (checkin_message(e) for e in events))

    with running(consumer()):
        wait_until(
            lambda: count_rows(url, "SELECT count(*) FROM checkins") == len(events),
            90,
            "every check-in stored",
        )
    with psycopg.connect(url) as conn:
        rows = {r[0]: r[1:] for r in conn.execute(POSTGIS_GRID_OF_CHECKIN).fetchall()}
    for event in events:
        grid_code, rule, staff_id, in_assigned, covering, assigned = rows[str(event["event_id"])]
        assert grid_code == covering
        assert rule in ("contains", "boundary_tiebreak")
        assert staff_id == event["worker_id"]
        assert in_assigned is assigned
    assert rows[str(foreign["event_id"])][0] == spots[-1].grid_code
    assert rows[str(foreign["event_id"])][3] is False
    assert rows[str(gcj["event_id"])][0] == spots[1].grid_code

    republished = read_topic(kafka_bootstrap, topics.assignments)
    bodies = [json.loads(r.value) for r in republished]  # type: ignore[attr-defined]
    assert sorted(b["event_id"] for b in bodies) == sorted(str(e["event_id"]) for e in events)
    for record, body in zip(republished, bodies, strict=True):
        assert record.key.decode() == body["grid_code"]  # type: ignore[attr-defined]
        assert body["district_code"] == body["grid_code"][:6]
        assert body["staff_id"] == body["worker_id"]


def test_every_refusal_reason_goes_to_the_dead_letter_topic_and_the_consumer_goes_on(
    consumer: Callable[..., ConsumerProcess], kafka_bootstrap: str
) -> None:
    topics: Topics = consumer.topics  # type: ignore[attr-defined]
    url: str = consumer.database_url  # type: ignore[attr-defined]
    spot = placements(url, per_grid=1, seed=3)[0]

    def valid(**changes: object) -> bytes:
        event = checkin_event(spot.worker_id, spot.lon, spot.lat, minutes=1)
        event.update(changes)
        return json.dumps({k: v for k, v in event.items() if v is not None}).encode()

    bad: dict[str, bytes] = {
        "invalid_json": b'{"event_id": "x", ',
        "missing_field": valid(worker_id=None),
        "invalid_field": valid(accuracy_m="very"),
        "coordinate_out_of_range": valid(lon=181.0),
        "unknown_worker": valid(worker_id="W99999"),
        "future_timestamp": valid(recorded_at="2999-01-01T00:00:00+08:00"),
        "payload_too_large": valid(note="x" * 70_000),
    }
    nan_point = valid().replace(f'"lon": {spot.lon}'.encode(), b'"lon": NaN')
    zero_point = valid(lon=0.0, lat=0.0)
    good = checkin_event(spot.worker_id, spot.lon, spot.lat, minutes=2)
    messages = [(b"k", value) for value in bad.values()]
    messages += [(b"k", nan_point), (b"k", zero_point), checkin_message(good)]
    messages += [checkin_message(good)]  # a retry: a duplicate, skipped and counted
    produce(kafka_bootstrap, topics.checkins, messages)

    port = free_port()
    with running(consumer(metrics_port=port)) as (process,):
        wait_until(
            lambda: len(read_topic(kafka_bootstrap, topics.deadletter)) == len(bad) + 2,
            90,
            "every refused event dead-lettered",
        )
        wait_until(
            lambda: process.metric("wangge_events_duplicate_total") == 1, 30, "duplicate counted"
        )
        assert process.metric("wangge_events_refused_total", 'reason="unknown_worker"') == 1

    letters = read_topic(kafka_bootstrap, topics.deadletter)
    reasons = [dict(r.headers)["error.reason"].decode() for r in letters]  # type: ignore[attr-defined]
    assert sorted(reasons) == sorted([*bad, "coordinate_out_of_range", "coordinate_out_of_range"])
    by_reason = {dict(r.headers)["error.reason"].decode(): r for r in letters}  # type: ignore[attr-defined]
    assert by_reason["invalid_json"].value == bad["invalid_json"]  # type: ignore[attr-defined]
    assert all(dict(r.headers)["error.detail"] for r in letters)  # type: ignore[attr-defined]
    assert count_rows(url, "SELECT count(*) FROM checkins") == 1


def test_incidents_go_to_the_reporter_the_least_loaded_worker_or_the_community(
    consumer: Callable[..., ConsumerProcess], kafka_bootstrap: str
) -> None:
    topics: Topics = consumer.topics  # type: ignore[attr-defined]
    url: str = consumer.database_url  # type: ignore[attr-defined]
    with psycopg.connect(url) as conn:
        # A grid with two or more workers, and one whose workers we remove.
        busy = conn.execute(
            "SELECT grid_code, array_agg(worker_id ORDER BY worker_id) FROM worker_assignments"
            " GROUP BY grid_code HAVING count(*) >= 2 ORDER BY grid_code LIMIT 1"
        ).fetchone()
        assert busy is not None
        busy_grid, workers = busy
        empty = conn.execute(
            "SELECT grid_code FROM worker_assignments WHERE grid_code <> %s"
            " ORDER BY grid_code DESC LIMIT 1",
            (busy_grid,),
        ).fetchone()
        assert empty is not None
        empty_grid = empty[0]
        conn.execute("DELETE FROM worker_assignments WHERE grid_code = %s", (empty_grid,))
        points: dict[str, list[float]] = dict(
            conn.execute(
                "SELECT code, ARRAY[ST_X(ST_PointOnSurface(geom)), ST_Y(ST_PointOnSurface(geom))]"
                " FROM grids WHERE code = ANY(%s)",
                ([busy_grid, empty_grid],),
            ).fetchall()
        )

    def incident(grid: str, reporter: str | None, source: str, category: str) -> dict[str, object]:
        event_id = str(uuid.uuid4())
        lon, lat = points[grid]
        return {
            "event_id": event_id,
            "incident_id": event_id,
            "category": category,
            "description": "垃圾堆放在楼道口",
            "lon": lon,
            "lat": lat,
            "reported_at": "2020-09-07T10:02:00+08:00",
            "source": source,
            **({"reporter_id": reporter} if reporter else {}),
        }

    by_reporter = incident(busy_grid, workers[-1], "worker", "environment.garbage")
    by_resident = incident(busy_grid, None, "resident", "no.such.category")
    orphan = incident(empty_grid, None, "hotline", "environment.garbage")
    produce(
        kafka_bootstrap,
        topics.incidents,
        [
            (str(e["incident_id"]).encode(), json.dumps(e).encode())
            for e in (by_reporter, by_resident, orphan)
        ],
    )
    with running(consumer()):
        wait_until(lambda: count_rows(url, "SELECT count(*) FROM incidents") == 3, 90, "stored")
    with psycopg.connect(url) as conn:
        stored = {
            str(r[0]): r[1:]
            for r in conn.execute(
                "SELECT event_id, grid_code, staff_id, escalated_to, category, flags FROM incidents"
            ).fetchall()
        }
    assert stored[str(by_reporter["event_id"])][:3] == (busy_grid, workers[-1], None)
    # The reporter now holds one open incident, so the resident's goes to the first other.
    assert stored[str(by_resident["event_id"])][:2] == (busy_grid, workers[0])
    assert stored[str(by_resident["event_id"])][3:] == ("other.unclassified", ["unknown_category"])
    assert stored[str(orphan["event_id"])][:3] == (empty_grid, None, empty_grid[:12])
