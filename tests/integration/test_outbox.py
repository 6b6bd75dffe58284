"""The compliance outbox publisher: every change once, on one database connection."""

import json
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import psycopg
import pytest
from kafka import KafkaConsumer
from kafka.errors import KafkaTimeoutError

from event_consumers.outbox import COMPLIANCE_OUTBOX, OutboxPublisher
from geodata.contract import Topics
from tests.integration.pipeline_support import read_topic

pytestmark = pytest.mark.integration


def _queue_change(conn: psycopg.Connection, worker_id: str) -> uuid.UUID:
    change_id = uuid.uuid4()
    conn.execute(
        "INSERT INTO compliance_changes (change_id, worker_id, grid_code, week, old_status,"
        " new_status, counted, required, changed_at)"
        " VALUES (%s, %s, '610302001001001', '2026-W49', NULL, 'on_track', 0, 3, %s)",
        (change_id, worker_id, datetime.now(UTC)),
    )
    return change_id


def _sessions(conn: psycopg.Connection) -> int:
    conn.execute("SELECT pg_stat_clear_snapshot()")
    row = conn.execute(
        "SELECT sessions FROM pg_stat_database WHERE datname = current_database()"
    ).fetchone()
    assert row is not None
    return int(row[0])


def test_the_outbox_publishes_every_change_once_without_a_connection_per_publish(
    database_url: str, kafka_bootstrap: str, topic_factory: Callable[..., Topics]
) -> None:
    topics = topic_factory()
    publisher = OutboxPublisher(database_url, kafka_bootstrap, topics.compliance, COMPLIANCE_OUTBOX)
    queued = []
    with psycopg.connect(database_url, autocommit=True) as conn:
        before = _sessions(conn)
        try:
            for n in range(5):
                queued.append(_queue_change(conn, f"W{n:05d}"))
                assert publisher.publish_pending() == 1
                assert publisher.publish_pending() == 0  # what the thread does when idle
        finally:
            publisher.close()
        # The publisher's one connection; a connection per publish made ten.
        assert _sessions(conn) - before == 1
        left = conn.execute(
            "SELECT count(*) FROM compliance_changes WHERE published_at IS NULL"
        ).fetchone()
    assert left == (0,)
    published = [
        json.loads(r.value)["event_id"]  # type: ignore[attr-defined]
        for r in read_topic(kafka_bootstrap, topics.compliance)
    ]
    assert sorted(published) == sorted(str(c) for c in queued)


def test_a_read_back_whose_ends_cannot_be_reached_gives_up_and_the_next_publish_sends(
    database_url: str,
    kafka_bootstrap: str,
    topic_factory: Callable[..., Topics],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Ends told by a broker that then lost the partitions' logs are never reached: the
    read-back looped for good and the outbox published nothing again. The ends are made
    five records further than the real broker's to stand for that loss."""
    topics = topic_factory()
    publisher = OutboxPublisher(database_url, kafka_bootstrap, topics.compliance, COMPLIANCE_OUTBOX)
    publisher.read_back_limit_s = 2.0
    real_end_offsets = KafkaConsumer.end_offsets

    def ends_out_of_reach(self: KafkaConsumer, *args: Any, **kwargs: Any) -> Any:
        return {tp: end + 5 for tp, end in real_end_offsets(self, *args, **kwargs).items()}

    with psycopg.connect(database_url, autocommit=True) as conn:
        try:
            first = _queue_change(conn, "W00001")
            assert publisher.publish_pending() == 1
            second = _queue_change(conn, "W00002")
            with monkeypatch.context() as patched:
                patched.setattr(KafkaConsumer, "end_offsets", ends_out_of_reach)
                with pytest.raises(KafkaTimeoutError, match="not read back"):
                    publisher.publish_pending()
            publisher.recover()  # what the publisher's thread does after a failure
            assert publisher.publish_pending() == 1
        finally:
            publisher.close()
    published = [
        json.loads(r.value)["event_id"]  # type: ignore[attr-defined]
        for r in read_topic(kafka_bootstrap, topics.compliance)
    ]
    assert sorted(published) == sorted([str(first), str(second)])
