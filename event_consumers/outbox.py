"""Publishes the compliance outbox to Kafka exactly once.

Status changes are written to `compliance_changes` in the same transaction as the state
they come from; this publisher sends them afterwards. One publisher at a time holds a
PostgreSQL advisory lock; before sending it reads the topic back from the offsets it
recorded last time, so changes a crashed predecessor sent but never marked are marked
instead of being sent twice.
"""

import contextlib
import json
import logging
import select
import threading
from collections.abc import Iterable
from datetime import datetime

import psycopg
from kafka import KafkaConsumer, KafkaProducer, TopicPartition

from event_consumers.topics import topic_ids
from geodata.db import compliance_store, event_store

logger = logging.getLogger(__name__)

_LOCK_KEY = 0x77616E67  # "wang": one publisher across all consumer processes
_PUBLISHER_GROUP = "outbox-publisher"


def _change_body(row: tuple[object, ...]) -> tuple[str, bytes, list[tuple[str, bytes]]]:
    (_id, change_id, worker, grid, week, old, new, counted, required, changed_at) = row
    assert isinstance(changed_at, datetime)
    body = {
        "event_id": str(change_id),
        "worker_id": worker,
        "grid_code": grid,
        "week": week,
        "old_status": old,
        "new_status": new,
        "counted_patrols": counted,
        "required_patrols": required,
        "changed_at": changed_at.isoformat(),
    }
    headers = [
        ("ce_specversion", b"1.0"),
        ("ce_id", str(change_id).encode()),
        ("ce_source", b"wangge/compliance"),
        ("ce_type", b"wangge.compliance.v1"),
        ("ce_time", changed_at.isoformat().encode()),
    ]
    return str(worker), json.dumps(body, separators=(",", ":")).encode(), headers


class OutboxPublisher:
    """Sends unpublished compliance changes in id order, then marks them published."""

    def __init__(self, database_url: str, bootstrap: str, topic: str) -> None:
        self.database_url = database_url
        self.bootstrap = bootstrap
        self.topic = topic
        self._producer = self._new_producer()
        #: The topic's id when last looked at; None: look again before publishing.
        self._topic_id: str | None = None
        self._topic_id_known = False

    def _new_producer(self) -> KafkaProducer:
        return KafkaProducer(
            bootstrap_servers=self.bootstrap,
            acks="all",
            linger_ms=2,
            client_id="wangge-outbox",
            allow_auto_create_topics=False,
            max_block_ms=10_000,
        )

    def recover(self) -> None:
        """After a failure: a new producer (a restarted broker may have left the old one
        in a fatal state), and the topic's id looked up again."""
        with contextlib.suppress(Exception):
            self._producer.close(timeout=0)
        self._producer = self._new_producer()
        self._topic_id_known = False

    def _current_topic_id(self) -> str | None:
        if not self._topic_id_known:
            self._topic_id = topic_ids(self.bootstrap, [self.topic]).get(self.topic)
            self._topic_id_known = True
        return self._topic_id

    def publish_pending(self, limit: int = 5000) -> int:
        """Publish what is pending; return how many records were sent."""
        with psycopg.connect(self.database_url) as conn, conn.transaction():
            locked = conn.execute("SELECT pg_try_advisory_xact_lock(%s)", (_LOCK_KEY,)).fetchone()
            if not locked or not locked[0]:
                return 0  # another process publishes right now
            rows = conn.execute(
                "SELECT id, change_id, worker_id, grid_code, week, old_status, new_status,"
                " counted, required, changed_at FROM compliance_changes"
                " WHERE published_at IS NULL ORDER BY id LIMIT %s",
                (limit,),
            ).fetchall()
            if not rows:
                return 0
            topic_id = self._current_topic_id()
            # Offsets of a topic the broker has since lost are not used (read from 0).
            stored = event_store.load_offsets(
                conn, _PUBLISHER_GROUP, self.topic, self._partitions(), topic_id
            )
            already, end_offsets = self._read_back(stored)
            to_send = [row for row in rows if str(row[1]) not in already]
            futures = []
            for row in to_send:
                key, value, headers = _change_body(row)
                futures.append(
                    self._producer.send(self.topic, key=key.encode(), value=value, headers=headers)
                )
            self._producer.flush(timeout=30)
            next_offsets = dict(end_offsets)
            for future in futures:
                meta = future.get(timeout=30)
                next_offsets[meta.partition] = max(
                    next_offsets.get(meta.partition, 0), meta.offset + 1
                )
            event_store.store_offsets(conn, _PUBLISHER_GROUP, self.topic, next_offsets, topic_id)
            conn.execute(
                "UPDATE compliance_changes SET published_at = now() WHERE id = ANY(%s)",
                ([row[0] for row in rows],),
            )
            if len(to_send) < len(rows):
                logger.info("%d changes were already on the topic", len(rows) - len(to_send))
            return len(to_send)

    def _partitions(self) -> list[int]:
        return sorted(self._producer.partitions_for(self.topic))

    def _read_back(self, stored: dict[int, int]) -> tuple[set[str], dict[int, int]]:
        """Change ids on the topic after the recorded offsets, and the end offsets."""
        consumer = KafkaConsumer(bootstrap_servers=self.bootstrap, enable_auto_commit=False)
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
        """Flush and close the producer."""
        self._producer.close(timeout=10)


def _change_ids(records: Iterable[object]) -> set[str]:
    ids = set()
    for record in records:
        headers = dict(record.headers or [])  # type: ignore[attr-defined]
        if "ce_id" in headers:
            ids.add(headers["ce_id"].decode())
        else:
            ids.add(str(json.loads(record.value)["event_id"]))  # type: ignore[attr-defined]
    return ids


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
                backoff = min(backoff * 2, 10.0)
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
