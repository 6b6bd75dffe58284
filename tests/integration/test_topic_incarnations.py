"""A broker that loses its topics (a restart of the in-memory broker, a topic deleted and
made again) starts their offsets at 0: the consumers must read the new topics from their
start, not wait at the offsets they stored for the old ones."""

import contextlib
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace

import psycopg
import pytest
from kafka import KafkaAdminClient, TopicPartition
from kafka.admin import NewTopic
from kafka.errors import TopicAlreadyExistsError

from event_consumers.batch import Batch, OwnPartitions
from event_consumers.records import OutboundRecord
from event_consumers.runner import ConsumerRunner, RunnerConfig
from event_consumers.topics import topic_ids
from geodata.contract import Topics
from geodata.db import event_store
from tests.integration.pipeline_support import (
    ConsumerProcess,
    checkin_event,
    checkin_message,
    count_rows,
    placements,
    produce,
    read_topic,
    running,
    wait_until,
)

pytestmark = pytest.mark.integration


def _make_anew(bootstrap: str, topics: Topics) -> None:
    """Delete the topics and make them again: what a restarted in-memory broker shows."""
    from wangge import services

    before = topic_ids(bootstrap, topics.all())
    services.delete_topics(bootstrap, topics)
    deadline = time.monotonic() + 30
    while topic_ids(bootstrap, topics.all()) and time.monotonic() < deadline:
        time.sleep(0.2)
    services.ensure_topics(bootstrap, 2, topics)
    after = topic_ids(bootstrap, topics.all())
    assert after.keys() == before.keys()
    assert all(after[name] != before[name] for name in after), "the broker kept the ids"


def test_offsets_of_a_topic_made_anew_are_not_used_and_zombies_cannot_move_them_back(
    database_url: str,
) -> None:
    with psycopg.connect(database_url) as conn:
        event_store.store_offsets(conn, "g", "t", {0: 100, 1: 80}, "old")
        event_store.store_offsets(conn, "g", "t", {0: 5}, "new")
        event_store.store_offsets(conn, "g", "t", {0: 3}, "new")  # a zombie, behind
        assert event_store.load_offsets(conn, "g", "t", [0, 1], "new") == {0: 5}
        assert event_store.load_offsets(conn, "g", "t", [0, 1], None) == {0: 5, 1: 80}


def test_a_consumer_restarted_after_its_topics_were_made_anew_stores_every_new_event(
    reference_database_url: str,
    kafka_bootstrap: str,
    topic_factory: Callable[..., Topics],
    tmp_path: Path,
) -> None:
    topics = topic_factory(partitions=2)
    spots = placements(reference_database_url)[:40]
    first = [checkin_event(s.worker_id, s.lon, s.lat, i) for i, s in enumerate(spots)]
    group = f"g{uuid.uuid4().hex[:8]}"
    consumer = ConsumerProcess(
        reference_database_url, kafka_bootstrap, topics, group, tmp_path, ("checkins",)
    )
    with running(consumer):
        produce(kafka_bootstrap, topics.checkins, map(checkin_message, first))
        wait_until(
            lambda: count_rows(reference_database_url, "SELECT count(*) FROM checkins") == 40,
            90,
            "the first events were not stored",
        )
    _make_anew(kafka_bootstrap, topics)
    # Fewer events than before: the new topics end before the offsets stored for the old.
    second = [checkin_event(s.worker_id, s.lon, s.lat, 100 + i) for i, s in enumerate(spots[:5])]
    produce(kafka_bootstrap, topics.checkins, map(checkin_message, second))
    consumer = ConsumerProcess(
        reference_database_url, kafka_bootstrap, topics, group, tmp_path, ("checkins",)
    )
    with running(consumer):
        wait_until(
            lambda: count_rows(reference_database_url, "SELECT count(*) FROM checkins") == 45,
            90,
            f"events of the new topics were skipped:\n{consumer.log()[-3000:]}",
        )


def test_a_running_consumer_notices_its_topics_were_made_anew(
    reference_database_url: str,
    kafka_bootstrap: str,
    topic_factory: Callable[..., Topics],
    tmp_path: Path,
) -> None:
    topics = topic_factory(partitions=2)
    spots = placements(reference_database_url)[:30]
    first = [checkin_event(s.worker_id, s.lon, s.lat, i) for i, s in enumerate(spots)]
    consumer = ConsumerProcess(
        reference_database_url,
        kafka_bootstrap,
        topics,
        f"g{uuid.uuid4().hex[:8]}",
        tmp_path,
        ("checkins",),
    )
    with running(consumer):
        produce(kafka_bootstrap, topics.checkins, map(checkin_message, first))
        wait_until(
            lambda: count_rows(reference_database_url, "SELECT count(*) FROM checkins") == 30,
            90,
            "the first events were not stored",
        )
        _make_anew(kafka_bootstrap, topics)
        second = [
            checkin_event(s.worker_id, s.lon, s.lat, 100 + i) for i, s in enumerate(spots[:3])
        ]
        produce(kafka_bootstrap, topics.checkins, map(checkin_message, second))
        wait_until(
            lambda: count_rows(reference_database_url, "SELECT count(*) FROM checkins") == 33,
            120,
            f"the running consumer skipped the new topics' events:\n{consumer.log()[-3000:]}",
        )
        assert consumer.alive()


def test_a_batch_polled_before_its_topic_was_made_anew_keeps_its_offsets_with_the_old_id(
    database_url: str,
    kafka_bootstrap: str,
    topic_factory: Callable[..., Topics],
) -> None:
    """The fault matrix lost 10 check-ins after a broker restart: a batch read at the old
    incarnation's positions was committed after the idle check learned the new id, so its
    offsets were taken as the new incarnation's and the records below them never read."""
    topics = topic_factory(partitions=1)
    group = f"g{uuid.uuid4().hex[:8]}"
    runner = ConsumerRunner(
        RunnerConfig(bootstrap=kafka_bootstrap, database_url=database_url, group_id=group),
        [],
        deadletter_topic=topics.deadletter,
        output_topics=[topics.checkins],
    )
    try:
        runner.check_topics(create=False)
        old_id = topic_ids(kafka_bootstrap, [topics.checkins])[topics.checkins]
        polled = {TopicPartition(topics.checkins, 0): [SimpleNamespace(offset=29)]}
        batch = runner.positions.new_batch(polled)
        _make_anew(kafka_bootstrap, topics)
        runner.check_topics(create=False)  # what the idle loop does: learns the new id
        new_id = topic_ids(kafka_bootstrap, [topics.checkins])[topics.checkins]
        runner._write(batch)  # the writer thread commits the batch polled before the check
    finally:
        runner.close()
    with psycopg.connect(database_url) as conn:
        assert event_store.load_offsets(conn, group, topics.checkins, [0], new_id) == {}
        assert event_store.load_offsets(conn, group, topics.checkins, [0], old_id) == {0: 30}


def test_a_topic_made_anew_is_reported_even_when_another_is_still_missing(
    database_url: str,
    kafka_bootstrap: str,
    topic_factory: Callable[..., Topics],
) -> None:
    """After a broker restart the topics a consumer names come back at once, the others
    later: the check that makes the missing ones must still say which came back anew."""
    topics = topic_factory(partitions=1)
    runner = ConsumerRunner(
        RunnerConfig(
            bootstrap=kafka_bootstrap, database_url=database_url, group_id=uuid.uuid4().hex
        ),
        [],
        deadletter_topic=topics.deadletter,
        output_topics=[topics.checkins],
    )
    try:
        assert runner.positions.check_topics(create=False) == []
        admin = KafkaAdminClient(bootstrap_servers=kafka_bootstrap)
        try:
            admin.delete_topics([topics.checkins, topics.deadletter])
            wait_until(
                lambda: not topic_ids(kafka_bootstrap, [topics.checkins, topics.deadletter]),
                30,
                "the broker did not delete the topics",
            )
            admin.create_topics([NewTopic(topics.checkins, 1, 1)])
        finally:
            admin.close()
        # Both are new incarnations: the one that came back, and the one this check made.
        renewed = runner.positions.check_topics(create=False)
        assert renewed == sorted([topics.checkins, topics.deadletter])
    finally:
        runner.close()


def _make_anew_with(bootstrap: str, topic: str, partitions: int) -> None:
    """Delete `topic` and make it again with `partitions`: what a restarted in-memory broker
    shows when a client's metadata request makes the topic with the broker's own count.

    A client that names the topic meanwhile (a consumer assigned it, a producer refreshing
    its metadata) may make it again first, with the broker's count: any new incarnation
    with `partitions` will do, one with another count is deleted again. Waiting for the
    topic to be gone failed in CI when a client was quicker.
    """
    old_id = topic_ids(bootstrap, [topic]).get(topic)
    admin = KafkaAdminClient(bootstrap_servers=bootstrap)

    def made_anew() -> bool:
        # Listed first: a request that names a missing topic makes it (Tansu).
        if topic not in admin.list_topics():
            with contextlib.suppress(TopicAlreadyExistsError):
                admin.create_topics([NewTopic(topic, partitions, 1)])
            return False
        (described,) = admin.describe_topics([topic])
        if str(described["topic_id"]) == str(old_id):
            return False  # not deleted yet
        if len(described["partitions"]) != partitions:
            admin.delete_topics([topic])
            return False
        return True

    try:
        admin.delete_topics([topic])
        wait_until(made_anew, 60, f"{topic} was not made anew with {partitions} partitions")
    finally:
        admin.close()


def test_records_produced_after_a_topic_came_back_with_fewer_partitions_are_acknowledged(
    database_url: str,
    kafka_bootstrap: str,
    topic_factory: Callable[..., Topics],
) -> None:
    """The producer's metadata was the old incarnation's (6 partitions): records keyed to
    partitions 4 and 5 of a topic that came back with 4 waited until the flush timed out."""
    topics = topic_factory(partitions=6)
    runner = ConsumerRunner(
        RunnerConfig(
            bootstrap=kafka_bootstrap, database_url=database_url, group_id=uuid.uuid4().hex
        ),
        [],
        deadletter_topic=topics.deadletter,
        output_topics=[topics.assignments],
    )

    def publish(prefix: str) -> None:
        records = [
            OutboundRecord(topics.assignments, f"{prefix}{i}".encode(), b"{}", [])
            for i in range(60)
        ]
        runner._publisher.publish(records)
        runner._publisher.flush(timeout_s=10)

    try:
        runner.check_topics(create=False)
        publish("a")  # the producer now knows the topic with 6 partitions
        _make_anew_with(kafka_bootstrap, topics.assignments, 4)
        runner.check_topics(create=False)  # what the idle loop does after a broker restart
        publish("b")
    finally:
        runner.close()
    keys = {record.key for record in read_topic(kafka_bootstrap, topics.assignments)}  # type: ignore[attr-defined]
    assert keys == {f"b{i}".encode() for i in range(60)}


def test_a_topic_made_anew_with_fewer_partitions_seeks_only_the_partitions_it_has(
    database_url: str,
    kafka_bootstrap: str,
    topic_factory: Callable[..., Topics],
) -> None:
    """Seeking the old incarnation's partitions 4 and 5 (or partitions on their way out in
    a rebalance) left the client asking for their metadata every 100 ms and the intake
    group never assigned after a broker restart (fault matrix)."""
    topics = topic_factory(partitions=6)
    runner = ConsumerRunner(
        RunnerConfig(
            bootstrap=kafka_bootstrap, database_url=database_url, group_id=uuid.uuid4().hex
        ),
        [SimpleNamespace(topic=topics.checkins, reset=lambda: None)],
        deadletter_topic=topics.deadletter,
    )
    consumer = runner._consumer
    try:
        runner.check_topics(create=False)
        # Assigned by hand: what is under test is the partitions sought after the topic is
        # made anew, not a group join (which the suite saw stall past 60 s on Tansu).
        consumer.assign([TopicPartition(topics.checkins, p) for p in range(6)])
        assert {tp.partition for tp in consumer.assignment()} == set(range(6))
        _make_anew_with(kafka_bootstrap, topics.checkins, 4)
        consumer.topics()  # the client's metadata learns of the new incarnation
        owned = runner.positions.owned_partitions([topics.checkins])
        assert sorted(tp.partition for tp in owned) == [0, 1, 2, 3]
        runner.positions.rebalancing = True
        assert runner.positions.owned_partitions([topics.checkins]) == []
    finally:
        runner.close()


def _runner_assigned_beyond_the_topic(
    database_url: str, kafka_bootstrap: str, topics: Topics
) -> tuple[ConsumerRunner, list[TopicPartition]]:
    """A runner assigned partitions 0 - 5 of a topic that has 4: what an assignment made
    from an older incarnation's metadata leaves a member with until the next one."""
    runner = ConsumerRunner(
        RunnerConfig(
            bootstrap=kafka_bootstrap, database_url=database_url, group_id=uuid.uuid4().hex
        ),
        [SimpleNamespace(topic=topics.checkins, reset=lambda: None)],
        deadletter_topic=topics.deadletter,
    )
    runner.check_topics(create=False)
    partitions = [TopicPartition(topics.checkins, p) for p in range(6)]
    runner._consumer.assign(partitions)  # by hand: no group join (slow on Tansu)
    return runner, partitions


def test_seeking_an_assignment_with_partitions_the_topic_lacks_seeks_those_it_has(
    database_url: str,
    kafka_bootstrap: str,
    topic_factory: Callable[..., Topics],
) -> None:
    """kafka-python raises KeyError for the end of a partition the topic lacks: the seek
    failed and no partition of the assignment was sought to its stored offset."""
    topics = topic_factory(partitions=4)
    runner, partitions = _runner_assigned_beyond_the_topic(database_url, kafka_bootstrap, topics)
    try:
        with psycopg.connect(database_url) as conn:
            # Stored where the broker gives no topic ids: then the ends are asked for.
            event_store.store_offsets(
                conn, runner.config.group_id, topics.checkins, dict.fromkeys(range(6), 7), None
            )
        runner.positions.incarnations._ids.clear()
        runner.positions.seek_to_stored(partitions)
        # Past the end of the empty partitions: each is read from its start.
        sought = {
            tp.partition: runner._consumer.position(tp, timeout_ms=5000) for tp in partitions[:4]
        }
        assert sought == dict.fromkeys(range(4), 0)
    finally:
        runner.close()


def test_a_drain_reads_to_the_ends_of_the_partitions_the_topic_has(
    database_url: str,
    kafka_bootstrap: str,
    topic_factory: Callable[..., Topics],
) -> None:
    """A drain asked for the ends of the whole assignment (KeyError for a partition the
    topic lacks) and the position of each (for such a partition, kafka-python waits
    forever): a member asked to drain then could not stop."""
    topics = topic_factory(partitions=4)
    produce(kafka_bootstrap, topics.checkins, [(key, b"{}") for key in (b"a", b"b", b"c")])
    runner, partitions = _runner_assigned_beyond_the_topic(database_url, kafka_bootstrap, topics)
    try:
        runner.request_drain()
        assert runner._drained() is False  # the records are not read yet
        assert set(runner._drain_ends or ()) == set(partitions[:4])
    finally:
        runner.close()


def test_a_rewind_leaves_a_partition_whose_reset_is_under_way_and_rewinds_the_others(
    database_url: str,
    kafka_bootstrap: str,
    topic_factory: Callable[..., Topics],
) -> None:
    """kafka-python waits for a reset to end before it tells a position, forever for a
    partition the topic lacks: a batch's rewind after a broker restart hung the loop, and
    the member read nothing again (fault matrix, CI). The loop's other readers of
    positions (the lag, the partitions read to their end) must not wait either."""
    topics = topic_factory(partitions=4)
    runner, partitions = _runner_assigned_beyond_the_topic(database_url, kafka_bootstrap, topics)
    consumer = runner._consumer
    try:
        consumer.seek(partitions[0], 3)
        consumer.seek_to_beginning(partitions[1], partitions[5])  # resets under way
        failed = Batch({tp: [SimpleNamespace(offset=2)] for tp in partitions}, topic_ids={})
        own: list[OwnPartitions] = []

        def after_a_failed_batch() -> None:
            runner.positions.rewind(failed)
            runner.positions.note_lag(partitions)
            own.append(runner._own_partitions(topics.checkins))

        loop = threading.Thread(target=after_a_failed_batch, daemon=True)
        loop.start()
        loop.join(timeout=30)  # a bound on a hang, not a timing
        assert not loop.is_alive(), "the loop still waits for a position"
        assert consumer.position(partitions[0], timeout_ms=0) == 2  # rewound to the batch
        # Reads from its start: the batch again, and no old offset on a new incarnation.
        assert consumer.position(partitions[1], timeout_ms=5000) == 0
        assert own[0].read_to_end == frozenset()
    finally:
        runner.close()
