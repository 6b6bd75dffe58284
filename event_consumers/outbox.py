"""Publishes the compliance outbox to Kafka exactly once.

Status changes are written to `compliance_changes` in the same transaction as the state
they come from; this publisher sends them afterwards. One publisher at a time holds a
PostgreSQL advisory lock; before sending it reads the topic back from the offsets it
recorded last time, so changes a crashed predecessor sent but never marked are marked
instead of being sent twice.
"""

import contextlib
import logging
import select
import threading
from collections.abc import Iterable

import psycopg
from kafka import KafkaProducer, TopicPartition

import kafka_clients
from event_consumers.topics import topic_ids
from geodata.db import compliance_store, event_store
from geodata.records import compliance_change_record, record_event_id

logger = logging.getLogger(__name__)

_PUBLISHER_GROUP = "outbox-publisher"


class OutboxPublisher:
    """Sends unpublished compliance changes in id order, then marks them published."""

    def __init__(self, database_url: str, bootstrap: str, topic: str) -> None:
        self.database_url = database_url
        self.bootstrap = bootstrap
        self.topic = topic
        self._kafka = kafka_clients.KafkaConfig(bootstrap)
        self._producer = self._new_producer()
        #: The topic's id when last looked at; None: look again before publishing.
        self._topic_id: str | None = None
        self._topic_id_known = False
        #: Kept open between publishes: the thread publishes at least once a second, and
        #: a connection for each would be churn PostgreSQL feels at every consumer process.
        self._conn: psycopg.Connection | None = None

    def _new_producer(self) -> KafkaProducer:
        return kafka_clients.producer(
            self._kafka, "outbox", acks="all", linger_ms=2, max_block_ms=10_000
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
            if not compliance_store.lock_outbox(conn):
                return 0  # another process publishes right now
            pending = compliance_store.pending_changes(conn, limit)
            if not pending:
                return 0
            topic_id = self._current_topic_id()
            # Offsets of a topic the broker has since lost are not used (read from 0).
            stored = event_store.load_offsets(
                conn, _PUBLISHER_GROUP, self.topic, self._partitions(), topic_id
            )
            already, end_offsets = self._read_back(stored)
            to_send = [change for _id, change in pending if str(change.event_id) not in already]
            futures = []
            for change in to_send:
                record = compliance_change_record(self.topic, change)
                futures.append(
                    self._producer.send(
                        record.topic, key=record.key, value=record.value, headers=record.headers
                    )
                )
            self._producer.flush(timeout=30)
            next_offsets = dict(end_offsets)
            for future in futures:
                meta = future.get(timeout=30)
                next_offsets[meta.partition] = max(
                    next_offsets.get(meta.partition, 0), meta.offset + 1
                )
            event_store.store_offsets(conn, _PUBLISHER_GROUP, self.topic, next_offsets, topic_id)
            compliance_store.mark_published(conn, [outbox_id for outbox_id, _change in pending])
            if len(to_send) < len(pending):
                logger.info("%d changes were already on the topic", len(pending) - len(to_send))
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
            while any(consumer.position(tp) < end[tp] for tp in tps):
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


def _change_ids(records: Iterable[object]) -> set[str]:
    return {
        record_event_id(record.headers or [], record.value)  # type: ignore[attr-defined]
        for record in records
    }


class OutboxPublisherThread(threading.Thread):
    """Publishes whenever a transaction NOTIFYs the outbox channel (or every second)."""

    def __init__(self, publisher: OutboxPublisher) -> None:
        super().__init__(name="outbox-publisher", daemon=True)
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
                logger.exception("publishing the compliance outbox failed; retrying")
                self.publisher.recover()
                self._stopping.wait(backoff)
                backoff = min(backoff * 2, 5.0)
            else:
                return

    def _listen_and_publish(self) -> None:
        with psycopg.connect(self.publisher.database_url, autocommit=True) as listener:
            compliance_store.listen_outbox(listener)
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
            logger.warning("the compliance outbox could not be published before stopping: %s", exc)
        finally:
            self.publisher.close()
