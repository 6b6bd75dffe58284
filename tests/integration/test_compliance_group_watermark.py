"""Two compliance members in one group: one read to its ends does not move the watermark
past the other's backlog (docs/PATROL_RULE.md, "Late and repeated check-ins")."""

import threading
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta

import psycopg
import pytest
from kafka import KafkaProducer

from event_consumers.batch import OwnPartitions
from event_consumers.compliance import ComplianceHandler
from event_consumers.records import InboundRecord, OutboundRecord
from event_consumers.runner import ConsumerRunner, RunnerConfig
from geodata.contract import Topics
from geodata.db.engine import create_db_engine
from geodata.db.grid_cache import GridSnapshotCache
from tests.integration.pipeline_support import (
    WEEK_START,
    Placement,
    count_rows,
    keep_assigned_only,
    placements,
    wait_until,
)
from tests.live_events import as_bytes, checkin_assignment

pytestmark = pytest.mark.integration

MONDAY = WEEK_START.replace(hour=0)  # 2020-09-07 00:00 Asia/Shanghai, 2020-W37
SATURDAY = MONDAY + timedelta(days=5, hours=9)
SUNDAY = MONDAY + timedelta(days=6, hours=9)
WEDNESDAY = MONDAY + timedelta(days=9, hours=10)  # past 2020-W37's end + 48 h


class HeldCompliance(ComplianceHandler):
    """The engine, made to stop before a batch past the first record of `held` until
    `release` is set: a member with a backlog, caught half-way."""

    held: int | None = None
    release = threading.Event()

    def handle(
        self, records: Sequence[InboundRecord], conn: psycopg.Connection, now: datetime
    ) -> list[OutboundRecord]:
        if any(r.partition == self.held and r.offset > 0 for r in records):
            self.release.wait(30)
        return super().handle(records, conn, now)


def _assignment(spot: Placement, at: datetime) -> bytes:
    return as_bytes(
        checkin_assignment(
            spot.grid_code,
            worker_id=spot.worker_id,
            staff_id=spot.worker_id,
            lon=spot.lon,
            lat=spot.lat,
            recorded_at=at.isoformat(),
            accuracy_m=8.0,
        )
    )


def _send(
    bootstrap: str, topic: str, partition: int, spot: Placement, times: list[datetime]
) -> None:
    # Lingering puts them in one request: a member fetches all of them or none.
    producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=200)
    try:
        for at in times:
            producer.send(topic, value=_assignment(spot, at), partition=partition)
        producer.flush(timeout=30)
    finally:
        producer.close()


@contextmanager
def _members(runners: list[ConsumerRunner]) -> Iterator[None]:
    threads = [threading.Thread(target=r.run, daemon=True) for r in runners]
    for thread in threads:
        thread.start()
    try:
        yield
    finally:
        HeldCompliance.release.set()
        for runner in runners:
            runner.request_stop()
        for thread in threads:
            thread.join(30)


def _offset(url: str, group: str, topic: str, partition: int) -> int:
    with psycopg.connect(url) as conn:
        row = conn.execute(
            "SELECT max(next_offset) FROM consumer_offsets"
            " WHERE consumer_group = %s AND topic = %s AND partition = %s",
            (group, topic, partition),
        ).fetchone()
    return int(row[0]) if row and row[0] is not None else 0


def _week(url: str, worker: str) -> tuple[object, ...] | None:
    with psycopg.connect(url) as conn:
        row = conn.execute(
            "SELECT counted, final FROM patrol_weeks WHERE worker_id = %s AND week = '2020-W37'",
            (worker,),
        ).fetchone()
    return tuple(row) if row else None


def test_a_member_read_to_its_end_leaves_the_week_open_for_anothers_backlog(
    reference_database_url: str,
    kafka_bootstrap: str,
    topic_factory: Callable[..., Topics],
) -> None:
    url = reference_database_url
    topics = topic_factory(partitions=2)
    walker, other = placements(url, per_grid=1, seed=21)[:2]
    keep_assigned_only(url, [walker.worker_id, other.worker_id])
    group = f"wm-{uuid.uuid4().hex[:8]}.compliance"
    engine = create_db_engine(url)
    HeldCompliance.release = threading.Event()
    config = RunnerConfig(
        bootstrap=kafka_bootstrap,
        database_url=url,
        group_id=group,
        max_poll_records=1,  # a backlog is read a record a batch
        topic_partitions=2,
        stage="compliance",
        # B is held (not polling) while A works: long enough not to be taken for dead.
        max_poll_interval_ms=20_000,
    )
    handlers = [HeldCompliance(GridSnapshotCache(engine), topics) for _ in range(2)]
    runners = [ConsumerRunner(config, [h], deadletter_topic=topics.deadletter) for h in handlers]
    try:
        with _members(runners):

            def shares() -> list[set[int]]:
                return [{tp.partition for tp in r._consumer.assignment()} for r in runners]

            wait_until(lambda: sorted(map(len, shares())) == [1, 1], 60, "one partition each")
            (mine_a,), (mine_b,) = shares()
            handlers[1].held = mine_b

            # Member B reads its Saturday fix, then is held before Sunday's walk.
            backlog = [SATURDAY] + [SUNDAY + timedelta(minutes=5 * i) for i in range(4)]
            _send(kafka_bootstrap, topics.assignments, mine_b, walker, backlog)
            wait_until(
                lambda: _offset(url, group, topics.assignments, mine_b) == 1,
                60,
                "member B read Saturday",
            )
            # Member A reads its partition to its end, at Wednesday.
            _send(kafka_bootstrap, topics.assignments, mine_a, other, [WEDNESDAY])
            wait_until(
                lambda: _offset(url, group, topics.assignments, mine_a) == 1,
                60,
                "member A read Wednesday",
            )
            with psycopg.connect(url) as conn:
                clock = conn.execute("SELECT watermark FROM compliance_clock").fetchone()
            assert clock == (SATURDAY,), "B's backlog holds the watermark"
            assert _week(url, walker.worker_id) in (None, (0, False))

            HeldCompliance.release.set()
            wait_until(
                lambda: _offset(url, group, topics.assignments, mine_b) == 5,
                60,
                "member B read its backlog",
            )
    finally:
        engine.dispose()

    assert count_rows(url, "SELECT count(*) FROM patrol_checkins WHERE late") == 0
    with psycopg.connect(url) as conn:
        progress = conn.execute(
            "SELECT partition, newest, read_to_end FROM compliance_partitions WHERE topic = %s",
            (topics.assignments,),
        ).fetchall()
    assert sorted(progress) == sorted(
        [(mine_a, WEDNESDAY, True), (mine_b, SUNDAY + timedelta(minutes=15), True)]
    )
    assert _week(url, walker.worker_id) == (1, True), "Sunday's walk counts, then the week ends"


def test_a_walk_folded_behind_the_watermark_counts_once_the_watermark_passes_it(
    reference_database_url: str, topic_factory: Callable[..., Topics]
) -> None:
    """A walk is folded while another partition's backlog holds the watermark before it;
    the backlog's later check-ins (of someone else) then move the watermark past the walk
    within the same local day. The walker's week counts it then, not at midnight."""
    url = reference_database_url
    topics = topic_factory(partitions=2)
    walker, other = placements(url, per_grid=1, seed=22)[:2]
    keep_assigned_only(url, [walker.worker_id, other.worker_id])
    engine = create_db_engine(url)
    handler = ComplianceHandler(GridSnapshotCache(engine), topics)
    saturday_9 = SATURDAY.replace(hour=9)
    offsets = {0: 0, 1: 0}

    def batch(
        partition: int, spot: Placement, times: list[datetime], read_to_end: set[int]
    ) -> None:
        records = []
        for at in times:
            records.append(
                InboundRecord(
                    topics.assignments,
                    partition,
                    offsets[partition],
                    0,
                    None,
                    _assignment(spot, at),
                )
            )
            offsets[partition] += 1
        handler.note_partitions(OwnPartitions(frozenset({0, 1}), frozenset(read_to_end), 2))
        with psycopg.connect(url) as conn, conn.transaction():
            assert handler.handle(records, conn, datetime.now(UTC)) == []

    try:
        # Partition 1 has a backlog at 09:00; partition 0 holds the 10:00 walk, read to its end.
        batch(1, other, [saturday_9], read_to_end=set())
        batch(0, walker, [saturday_9 + timedelta(hours=1, minutes=5 * i) for i in range(4)], {0})
        with psycopg.connect(url) as conn:
            clock = conn.execute("SELECT watermark FROM compliance_clock").fetchone()
        assert clock == (saturday_9,), "the backlog holds the watermark before the walk"
        assert _week(url, walker.worker_id) == (0, False), "not valid yet as of 09:00"
        # The backlog is read up to 11:00 of the same day: nothing of the walker's arrives.
        batch(1, other, [saturday_9 + timedelta(hours=2)], read_to_end={0, 1})
        with psycopg.connect(url) as conn:
            clock = conn.execute("SELECT watermark FROM compliance_clock").fetchone()
        assert clock == (saturday_9 + timedelta(hours=2),)
        assert _week(url, walker.worker_id) == (1, False), "valid as of 11:00: it counts"
    finally:
        engine.dispose()
