"""Compliance from memory on the real broker, consumers and PostGIS: the answer the API
holds equals the one recomputed from the stored patrols, and follows the engine.

A simulated week (the simulator's walks with every delivery fault) is produced in parts
into a running `wangge consume`; after each part is folded in, the memory reads what the
engine wrote since the last part, and at many `as_of` across the week the API's answer
from memory equals `compliance_report` at that `as_of`, at every level, as does a memory
loaded afresh (an API started later). Then, on the real clock, a patrol walked now shows
in the next answer once the engine has stored it.
"""

import json
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
import pytest
from fastapi.testclient import TestClient
from kafka import KafkaConsumer, TopicPartition
from sqlalchemy import Engine

from geodata.compliance import ComplianceConfig, IsoWeek
from geodata.compliance.report import Level
from geodata.contract import Topics
from geodata.db.compliance_memory import ComplianceMemory
from geodata.db.compliance_read import compliance_report
from geodata.db.engine import create_db_engine
from grid_service.app import ApiConfig, create_app
from grid_service.compliance import CompliancePublic, render_items
from tests.integration.pipeline_support import ConsumerProcess, produce, running, wait_until
from wangge.simulation import simulate_week
from wangge.simulation.db import load_world
from wangge.users_cli import add_user

pytestmark = pytest.mark.integration

CONFIG = ComplianceConfig()
TZ = CONFIG.tz
WEEK = IsoWeek.parse("2020-W37")
SEED = 37
WORKERS = 30
# Where the week is cut into parts produced one after the other (days after Monday 00:00).
CUTS_DAYS = (1.0, 3.5, 5.75)


def local(days: float) -> datetime:
    """Days after the week's start, local time."""
    return WEEK.start(TZ) + timedelta(days=days)


class Clock:
    """The memory's and the route's now, set by the test."""

    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


@dataclass(frozen=True)
class City:
    """A fresh reference city, its topics and the consumer group folding them."""

    url: str
    topics: Topics
    group: str


@pytest.fixture
def city(
    reference_database_factory: Callable[[], str], topic_factory: Callable[..., Topics]
) -> City:
    """A city to produce a week into."""
    return City(reference_database_factory(), topic_factory(), f"mem-{uuid.uuid4().hex[:6]}")


@pytest.fixture
def engine(city: City) -> Iterator[Engine]:
    """An engine on the city's database."""
    engine = create_db_engine(city.url)
    yield engine
    engine.dispose()


def folded(city: City, bootstrap: str) -> bool:
    """Every record on the input topics stored by its stage (the offsets commit with the
    rows they produced), so the database holds all the engine will make of them."""
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    try:
        ends: dict[tuple[str, int], int] = {}
        for topic in (city.topics.checkins, city.topics.incidents, city.topics.assignments):
            numbers = consumer.partitions_for_topic(topic) or set()
            partitions = [TopicPartition(topic, p) for p in sorted(numbers)]
            for tp, end in consumer.end_offsets(partitions).items():
                ends[(tp.topic, tp.partition)] = end
    finally:
        consumer.close()
    with psycopg.connect(city.url) as conn:
        stored = {
            (topic, partition): offset
            for topic, partition, offset in conn.execute(
                "SELECT topic, partition, max(next_offset) FROM consumer_offsets"
                " WHERE consumer_group LIKE %s GROUP BY topic, partition",
                (city.group + "%",),
            ).fetchall()
        }
    return all(stored.get(key, 0) >= end for key, end in ends.items())


def read(client: TestClient, as_of: datetime, level: Level, code: str | None) -> Any:
    """The API's answer, as of now (the memory's clock, set to `as_of`)."""
    params = {"week": str(WEEK), "level": level, **({"code": code} if code else {})}
    response = client.get("/api/v1/compliance", params=params)
    assert response.status_code == 200, response.text
    assert response.json()["as_of"] == as_of.astimezone(TZ).isoformat()
    return response.json()


def expected(engine: Engine, as_of: datetime, level: Level, code: str | None) -> dict[str, Any]:
    """The recomputed answer, as the route shapes it from the database."""
    report = compliance_report(engine, WEEK, as_of, level=level, code=code, config=CONFIG)
    return CompliancePublic.of(report, TZ).model_dump(mode="json")


def samples(engine: Engine, cut_days: float) -> list[datetime]:
    """Times to compare at: across the week so far and beyond, each side of midnights, and
    at (and just before) some moments a patrol became valid."""
    with engine.connect() as conn:
        valid_ats = [
            row[0]
            for row in conn.exec_driver_sql(
                "SELECT valid_at FROM patrols WHERE week = %(week)s AND valid_at IS NOT NULL"
                " ORDER BY md5(id::text) LIMIT 2",
                {"week": str(WEEK)},
            )
        ]
    tick = timedelta(microseconds=1)
    times = [local(cut_days), local(int(cut_days)) - tick, local(int(cut_days))]
    times += [t for v in valid_ats for t in (v, v - tick)]
    if cut_days >= 7:  # the week is over: its start, end, and the day it closes
        times += [local(0.4), local(6.99), local(8.5), local(9) - tick]
    return times


WHERE: list[tuple[Level, str | None]] = [
    ("worker", None),
    ("grid", None),
    ("district", None),
]


def areas_of(engine: Engine, workers: list[str]) -> list[tuple[Level, str | None]]:
    """A street, a community and a grid that simulated workers patrol."""
    with engine.connect() as conn:
        grid = conn.exec_driver_sql(
            "SELECT grid_code FROM worker_assignments WHERE worker_id = %(w)s LIMIT 1",
            {"w": workers[0]},
        ).scalar_one()
    return [("street", grid[:9]), ("community", grid[:12]), ("worker", grid)]


def test_the_answer_from_memory_equals_the_recomputed_one_through_a_simulated_week(
    city: City, engine: Engine, kafka_bootstrap: str, tmp_path: Path
) -> None:
    world, _ = load_world(engine, WEEK.start(TZ), WEEK.end(TZ) + timedelta(hours=6))
    week = simulate_week(world, WEEK, seed=SEED, workers=WORKERS)
    messages = [message for batch in week.batches() for message in batch]
    where = WHERE + areas_of(engine, [plan.worker.worker_id for plan in week.plans])
    admin = add_user(city.url, "memory-admin", "admin", None, None)
    # Refreshed by the test only (the interval keeps it fresh meanwhile), on a clock in the
    # week that keeps the same open weeks, so every refresh after the first is a poll.
    clock = Clock(local(4.5))
    memory = ComplianceMemory(engine, CONFIG, 600, clock=clock)
    memory.stop()  # no thread: the route's `ensure_started` leaves it to the test
    memory.refresh()  # the city before any patrol
    app = create_app(ApiConfig(city.url, kafka_bootstrap, city.topics, compliance_refresh_s=0))
    consumer = ConsumerProcess(city.url, kafka_bootstrap, city.topics, city.group, tmp_path)
    with (
        running(consumer),
        TestClient(app, headers={"Authorization": f"Bearer {admin}"}) as client,
    ):
        app.state.compliance_memory.stop()
        app.state.compliance_memory = memory
        sent = 0
        compared = 0
        seen: set[str] = set()
        for cut in (*CUTS_DAYS, None):
            part = [m for m in messages[sent:] if cut is None or m.send_s < local(cut).timestamp()]
            for stream, topic in (
                ("checkins", city.topics.checkins),
                ("incidents", city.topics.incidents),
            ):
                produce(
                    kafka_bootstrap, topic, ((m.key, m.value) for m in part if m.stream == stream)
                )
            sent += len(part)
            wait_until(lambda: folded(city, kafka_bootstrap), 300, "the part folded in", every=1)
            assert consumer.alive(), consumer.log()[-3000:]
            clock.now = local(4.5)
            memory.refresh()
            restarted = ComplianceMemory(engine, CONFIG, 600, clock=clock)
            restarted.refresh()
            for i, as_of in enumerate(samples(engine, cut or 7.5)):
                clock.now = as_of
                # The whole city at every sample; two of the other cuts in turn.
                for level, code in [where[0], where[1 + i % 5], where[1 + (i + 2) % 5]]:
                    want = expected(engine, as_of, level, code)
                    assert read(client, as_of, level, code) == want, (as_of, level, code)
                    # Served from memory (its answer is kept), not from the database.
                    assert memory.cached(WEEK, level, code or "", as_of) is not None
                    compared += 1
                    if (level, code) == ("worker", None):
                        seen |= {item["status"] for item in want["items"]}
            # An API started now (loading all at once) answers as the one that followed.
            for level, code in where:
                fresh = restarted.answer(WEEK, level, code or "", clock.now, render_items)
                assert fresh is not None
                assert json.loads(fresh) == expected(engine, clock.now, level, code)["items"]
        assert sent == len(messages)
    assert compared > 60
    # The samples saw every status, so the comparisons covered each rule's outcome.
    assert seen == {"met", "on_track", "at_risk", "missed"}, seen


# --------------------------------------------------------------------------- live


@dataclass(frozen=True)
class Spot:
    """A worker assigned now, and a point inside their grid."""

    worker_id: str
    grid_code: str
    lon: float
    lat: float


def spots(url: str) -> list[Spot]:
    """Workers in open assignments to grids in force, one per community, with a point."""
    with psycopg.connect(url) as conn:
        rows = conn.execute(
            """
            SELECT DISTINCT ON (g.community_code) a.worker_id, g.code,
                   ST_X(ST_PointOnSurface(g.geom)), ST_Y(ST_PointOnSurface(g.geom))
            FROM grids g JOIN worker_assignments a ON a.grid_code = g.code
            WHERE g.valid_to IS NULL AND a.valid_to IS NULL
              AND a.valid_from < now() - interval '8 days'
            ORDER BY g.community_code, g.code, a.worker_id
            """
        ).fetchall()
    return [Spot(str(w), str(g), float(x), float(y)) for w, g, x, y in rows]


def walk(spot: Spot, end: datetime) -> list[tuple[bytes, bytes]]:
    """Five fixes three minutes apart ending at `end`: one valid patrol."""
    return [
        (
            spot.worker_id.encode(),
            json.dumps(
                {
                    "event_id": str(uuid.uuid4()),
                    "worker_id": spot.worker_id,
                    "lon": spot.lon,
                    "lat": spot.lat,
                    "recorded_at": (end - timedelta(minutes=3 * (4 - i))).isoformat(),
                    "accuracy_m": 8.0,
                }
            ).encode(),
        )
        for i in range(5)
    ]


def worker_item(body: dict[str, Any], spot: Spot) -> dict[str, Any]:
    """The spot's worker in a grid-level answer."""
    [grid] = [g for g in body["items"] if g["grid_code"] == spot.grid_code]
    [worker] = [w for w in grid["workers"] if w["worker_id"] == spot.worker_id]
    return dict(worker)


def test_a_status_change_shows_in_the_next_answer_and_leaves_other_areas_kept(
    city: City, kafka_bootstrap: str, tmp_path: Path
) -> None:
    # One patrol a week is owed, so that a single walk today moves a status (to met).
    rule = ComplianceConfig(weekly_required=1)
    mine, other = spots(city.url)[:2]
    admin = add_user(city.url, "memory-admin", "admin", None, None)
    consumer = ConsumerProcess(city.url, kafka_bootstrap, city.topics, city.group, tmp_path)
    consumer.env["WANGGE_PATROL_WEEKLY_REQUIRED"] = "1"
    config = ApiConfig(
        city.url, kafka_bootstrap, city.topics, compliance=rule, compliance_refresh_s=0.2
    )
    app = create_app(config)
    with (
        running(consumer),
        TestClient(app, headers={"Authorization": f"Bearer {admin}"}) as client,
    ):
        memory: ComplianceMemory = app.state.compliance_memory

        def read(spot: Spot) -> dict[str, Any]:
            params = {"level": "grid", "code": spot.grid_code[:12]}
            response = client.get("/api/v1/compliance", params=params)
            assert response.status_code == 200, response.text
            return dict(response.json())

        wait_until(lambda: bool(read(mine)) and _kept(memory, mine), 30, "memory loaded")
        before = worker_item(read(mine), mine)
        assert before["status"] in {"on_track", "at_risk"}
        assert before["counted"] == 0
        read(other)
        assert _kept(memory, other)

        produce(kafka_bootstrap, city.topics.checkins, walk(mine, datetime.now(UTC)))
        wait_until(lambda: _changed_to_met(city.url, mine), 120, "the engine's status change")
        # The engine has committed: within a refresh or two, the next answer shows it.
        wait_until(lambda: worker_item(read(mine), mine)["status"] == "met", 5, "met from memory")
        after = worker_item(read(mine), mine)
        assert after["counted"] == 1
        assert _kept(memory, mine)  # answered from memory again, not the database
        body = read(mine)
        week = IsoWeek.week_of(datetime.fromisoformat(body["as_of"]), TZ)
        assert body == CompliancePublic.of(
            compliance_report(
                memory.engine,
                week,
                datetime.fromisoformat(body["as_of"]),
                level="grid",
                code=mine.grid_code[:12],
                config=rule,
            ),
            TZ,
        ).model_dump(mode="json")
        # The other community's answer was not touched by the change: still kept.
        assert _kept(memory, other)
        assert worker_item(read(other), other)["status"] in {"on_track", "at_risk"}


def _kept(memory: ComplianceMemory, spot: Spot) -> bool:
    now = memory.now()
    week = IsoWeek.week_of(now, TZ)
    return memory.cached(week, "grid", spot.grid_code[:12], now) is not None


def _changed_to_met(url: str, spot: Spot) -> bool:
    with psycopg.connect(url) as conn:
        row = conn.execute(
            "SELECT count(*) FROM compliance_changes WHERE worker_id = %s AND grid_code = %s"
            " AND new_status = 'met'",
            (spot.worker_id, spot.grid_code),
        ).fetchone()
    return bool(row and row[0])


# --------------------------------------------------------------------------- staleness


class Ticks:
    """A monotonic clock the test moves."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_memory_not_refreshed_for_four_intervals_answers_nothing_until_it_is_again(
    engine: Engine,
) -> None:
    ticks = Ticks()
    memory = ComplianceMemory(engine, CONFIG, 0.5, clock=Clock(local(2.5)), monotonic=ticks)
    assert memory.answer(WEEK, "district", "", local(2.5), render_items) is None  # not loaded
    memory.refresh()
    body = memory.answer(WEEK, "district", "", local(2.5), render_items)
    assert body is not None
    assert json.loads(body) == expected(engine, local(2.5), "district", None)["items"]
    ticks.now += 4 * 0.5  # the last refresh began four intervals ago: still trusted
    assert memory.cached(WEEK, "district", "", local(2.5)) == body
    ticks.now += 0.01  # a missed refresh more: the route reads the database instead
    assert memory.cached(WEEK, "district", "", local(2.5)) is None
    assert memory.answer(WEEK, "district", "", local(2.5), render_items) is None
    memory.refresh()
    assert memory.cached(WEEK, "district", "", local(2.5)) == body
    # Not this week's nor last week's: a closed week is never answered from memory.
    assert memory.answer(WEEK, "district", "", local(9), render_items) is None
    assert memory.answer(WEEK.previous(), "district", "", local(2.5), render_items) is None


def test_with_no_refresh_interval_nothing_is_held(engine: Engine) -> None:
    memory = ComplianceMemory(engine, CONFIG, 0, clock=Clock(local(2.5)))
    memory.ensure_started()
    memory.refresh()
    assert memory.answer(WEEK, "district", "", local(2.5), render_items) is None
