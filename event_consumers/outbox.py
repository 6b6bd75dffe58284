"""Publishes an outbox to Kafka exactly once: the compliance changes and the incident
status changes, one publisher of each.

Changes are written to their outbox table in the same transaction as the state they come
from; a publisher sends them afterwards, in the order they were queued. One publisher per
outbox at a time holds a PostgreSQL advisory lock; before sending it reads the topic back
from the offsets it recorded last time, so changes a crashed predecessor sent but never
marked are marked instead of being sent twice. What differs between outboxes (the table,
the lock, the channel, how a row becomes a record) is an `Outbox`, made of its store's
functions.
"""

import contextlib
import logging
import select
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Final

import psycopg
from kafka import KafkaConsumer, KafkaProducer, TopicPartition
from kafka.errors import KafkaTimeoutError

import kafka_clients
from event_consumers.positions import known_position
from event_consumers.topics import topic_ids
from geodata.db import compliance_store, event_store, incident_outbox
from geodata.records import OutboundRecord, compliance_change_record, record_event_id

logger = logging.getLogger(__name__)

_PUBLISHER_GROUP = "outbox-publisher"

READ_BACK_LIMIT_S: Final = 30.0
"""Longest a publish reads its topic back: ends the broker told may never be reached (it
lost the partitions' logs meanwhile, and a read past the new end is reset to it), and the
publisher then starts again from a new producer (`recover`) rather than wait for good."""


@dataclass(frozen=True)
class Outbox:
    """One outbox table, as its store reads and marks it (all inside one transaction)."""

    #: Names the outbox in logs, the thread and the producer's client id.
    name: str
    #: Takes the publisher's advisory lock for the transaction; False: another holds it.
    lock: Callable[[psycopg.Connection], bool]
    #: The oldest unpublished rows as (outbox id, record of the topic), queue order.
    pending: Callable[[psycopg.Connection, str, int], list[tuple[int, OutboundRecord]]]
    #: Marks rows (by outbox id) published.
    mark_published: Callable[[psycopg.Connection, Sequence[int]], None]
    #: LISTENs an autocommit connection to the channel the writers NOTIFY.
    listen: Callable[[psycopg.Connection], None]


def _compliance_pending(
    conn: psycopg.Connection, topic: str, limit: int
) -> list[tuple[int, OutboundRecord]]:
    return [
        (outbox_id, compliance_change_record(topic, change))
        for outbox_id, change in compliance_store.pending_changes(conn, limit)
    ]


COMPLIANCE_OUTBOX = Outbox(
    name="compliance",
    lock=compliance_store.lock_outbox,
    pending=_compliance_pending,
    mark_published=compliance_store.mark_published,
    listen=compliance_store.listen_outbox,
)
"""`compliance_changes` to `grid.compliance.v1`, keyed by worker."""

INCIDENT_STATUS_OUTBOX = Outbox(
    name="incident-status",
    lock=incident_outbox.lock_outbox,
    pending=incident_outbox.pending_records,
    mark_published=incident_outbox.mark_published,
    listen=incident_outbox.listen_outbox,
)
"""`incident_status_changes` to `grid.incident-status.v1`, keyed by incident."""


class OutboxPublisher:
    """Sends an outbox's unpublished changes in queue order, then marks them published."""

    def __init__(self, database_url: str, bootstrap: str, topic: str, outbox: Outbox) -> None:
        self.database_url = database_url
        self.bootstrap = bootstrap
        self.topic = topic
        self.outbox = outbox
        self._kafka = kafka_clients.KafkaConfig(bootstrap)
        self._producer = self._new_producer()
        self.read_back_limit_s = READ_BACK_LIMIT_S
        #: The topic's id when last looked at; None: look again before publishing.
        self._topic_id: str | None = None
        self._topic_id_known = False
        #: Kept open between publishes: the thread publishes at least once a second, and
        #: a connection for each would be churn PostgreSQL feels at every consumer process.
        self._conn: psycopg.Connection | None = None

    def _new_producer(self) -> KafkaProducer:
        # Idempotent: a batch the broker never took fails the ones after it on its
        # partition, so one key's records land in the order they were sent, or not at all
        # (the next publish sends what is missing, in order again).
        return kafka_clients.producer(
            self._kafka,
            f"{self.outbox.name}-outbox",
            acks="all",
            enable_idempotence=True,
            linger_ms=2,
            max_block_ms=10_000,
        )

    def recover(self) -> None:
        """After a failure: a new producer (a restarted broker may have left the old one
        in a fatal state), and the topic's id looked up again."""
        with contextlib.suppress(Exception):
            self._producer.close(timeout=0)
        self._producer = self._new_producer()
        self._topic_id_known = False
        self._close_connection()

    def _connection(self) -> psycopg.Connection:
        if self._conn is None or self._conn.closed or self._conn.broken:
            self._close_connection()
            # Autocommit: each publish is one explicit transaction (`conn.transaction()`),
            # and nothing is left open between them.
            self._conn = psycopg.connect(self.database_url, autocommit=True)
        return self._conn

    def _close_connection(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            with contextlib.suppress(Exception):
                conn.close()

    def _current_topic_id(self) -> str | None:
        if not self._topic_id_known:
            self._topic_id = topic_ids(self.bootstrap, [self.topic]).get(self.topic)
            self._topic_id_known = True
        return self._topic_id

    def publish_pending(self, limit: int = 5000) -> int:
        """Publish what is pending; return how many records were sent."""
        conn = self._connection()
        with conn.transaction():
            if not self.outbox.lock(conn):
                return 0  # another process publishes right now
            pending = self.outbox.pending(conn, self.topic, limit)
            if not pending:
                return 0
            topic_id = self._current_topic_id()
            # Offsets of a topic the broker has since lost are not used (read from 0).
            stored = event_store.load_offsets(
                conn, _PUBLISHER_GROUP, self.topic, self._partitions(), topic_id
            )
            already, end_offsets = self._read_back(stored)
            to_send = [
                record
                for _id, record in pending
                if record_event_id(record.headers, record.value) not in already
            ]
            futures = [
                self._producer.send(
                    record.topic, key=record.key, value=record.value, headers=record.headers
                )
                for record in to_send
            ]
            self._producer.flush(timeout=30)
            next_offsets = dict(end_offsets)
            for future in futures:
                meta = future.get(timeout=30)
                next_offsets[meta.partition] = max(
                    next_offsets.get(meta.partition, 0), meta.offset + 1
                )
            event_store.store_offsets(conn, _PUBLISHER_GROUP, self.topic, next_offsets, topic_id)
            self.outbox.mark_published(conn, [outbox_id for outbox_id, _record in pending])
            if len(to_send) < len(pending):
                logger.info(
                    "%d %s changes were already on the topic",
                    len(pending) - len(to_send),
                    self.outbox.name,
                )
            return len(to_send)

    def _partitions(self) -> list[int]:
        return sorted(self._producer.partitions_for(self.topic))

    def _read_back(self, stored: dict[int, int]) -> tuple[set[str], dict[int, int]]:
        """Change ids on the topic after the recorded offsets, and the end offsets."""
        consumer = kafka_clients.consumer(self._kafka, "outbox-readback", enable_auto_commit=False)
        try:
            tps = [TopicPartition(self.topic, p) for p in self._partitions()]
            consumer.assign(tps)
            end = consumer.end_offsets(tps)
            found: set[str] = set()
            for tp in tps:
                consumer.seek(tp, stored.get(tp.partition, 0))
            deadline = time.monotonic() + self.read_back_limit_s
            while any(_short_of(consumer, tp, end[tp]) for tp in tps):
                if time.monotonic() > deadline:
                    raise KafkaTimeoutError(
                        f"{self.topic} was not read back to its ends within"
                        f" {self.read_back_limit_s:g} s"
                    )
                for records in consumer.poll(timeout_ms=500).values():
                    found.update(_change_ids(records))
            return found, {tp.partition: offset for tp, offset in end.items()}
        finally:
            consumer.close()

    def close(self) -> None:
        """Flush and close the producer and the connection."""
        try:
            self._producer.close(timeout=10)
        finally:
            self._close_connection()


def _short_of(consumer: KafkaConsumer, tp: TopicPartition, end: int) -> bool:
    """Whether the partition is not read to `end` yet (or its position is not known yet:
    a reset under way, which the next poll completes)."""
    position = known_position(consumer, tp)
    return position is None or position < end


def _change_ids(records: Iterable[object]) -> set[str]:
    return {
        record_event_id(record.headers or [], record.value)  # type: ignore[attr-defined]
        for record in records
    }


class OutboxPublisherThread(threading.Thread):
    """Publishes whenever a transaction NOTIFYs the outbox channel (or every second)."""

    def __init__(self, publisher: OutboxPublisher) -> None:
        super().__init__(name=f"{publisher.outbox.name}-outbox-publisher", daemon=True)
        self.publisher = publisher
        self._stopping = threading.Event()

    def run(self) -> None:
        """Wait for notifications and publish until stopped; survive any outage."""
        backoff = 0.5
        while not self._stopping.is_set():
            try:
                self._listen_and_publish()
            except Exception:
                # The database or the broker went away (or worse): say so loudly, and start
                # again; the outbox keeps every change until a later attempt publishes it.
                logger.exception(
                    "publishing the %s outbox failed; retrying", self.publisher.outbox.name
                )
                self.publisher.recover()
                self._stopping.wait(backoff)
                backoff = min(backoff * 2, 5.0)
            else:
                return

    def _listen_and_publish(self) -> None:
        with psycopg.connect(self.publisher.database_url, autocommit=True) as listener:
            self.publisher.outbox.listen(listener)
            while not self._stopping.is_set():
                while self.publisher.publish_pending():
                    pass
                select.select([listener.fileno()], [], [], 1.0)
                for _ in listener.notifies(timeout=0):
                    pass

    def stop(self) -> None:
        """Publish what is left and stop."""
        self._stopping.set()
        self.join(timeout=30)
        try:
            self.publisher.publish_pending()
        except Exception as exc:
            # Kept in the outbox: the next publisher sends it.
            logger.warning(
                "the %s outbox could not be published before stopping: %s",
                self.publisher.outbox.name,
                exc,
            )
        finally:
            self.publisher.close()
