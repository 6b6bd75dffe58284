"""The consumer loop: poll → decode → handle → produce → commit rows and offsets together.

Effectively once: a batch's rows and the offsets that produced them commit in one
PostgreSQL transaction, and on (re)assignment the consumer seeks to the offsets stored
there, so a crash at any point neither loses nor repeats a row. Records it produces
(assignments, dead letters) are flushed before that commit: at least once, and every
one carries its event id for downstream de-duplication.

Error policy (STYLE.md): an invalid event is a dead letter and the batch goes on; a
database or broker failure rolls the batch back, rewinds and retries with back-off;
anything else crashes loudly so the supervisor restarts the process.
"""

import contextlib
import logging
import signal
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from types import FrameType
from typing import Protocol

import psycopg
from kafka import KafkaConsumer, KafkaProducer, TopicPartition
from kafka.consumer.subscription_state import ConsumerRebalanceListener
from kafka.errors import KafkaError
from kafka.structs import OffsetAndMetadata

from event_consumers import metrics
from event_consumers.records import InboundRecord, OutboundRecord
from geodata.db import event_store

logger = logging.getLogger(__name__)


class Handler(Protocol):
    """Turns one topic's records into rows (in the given transaction) and records to produce."""

    topic: str

    def handle(
        self, records: Sequence[InboundRecord], conn: psycopg.Connection, now: datetime
    ) -> list[OutboundRecord]:
        """Process a batch inside the caller's transaction; never commit."""
        ...

    def reset(self) -> None:
        """Forget in-memory state derived from a batch that was rolled back."""
        ...


@dataclass(frozen=True)
class RunnerConfig:
    """Knobs of the loop; the defaults suit the Tansu broker and Apache Kafka alike."""

    bootstrap: str
    database_url: str
    group_id: str = "wangge-consumers"
    max_poll_records: int = 5000
    poll_timeout_ms: int = 200
    # Short intervals keep group joins fast (Tansu stalls >20 s with the default).
    max_poll_interval_ms: int = 6000
    session_timeout_ms: int = 6000
    heartbeat_interval_ms: int = 1000
    max_backoff_s: float = 10.0
    client_id: str = "wangge-consumer"


class _SeekToStoredOffsets(ConsumerRebalanceListener):  # type: ignore[misc]
    """On assignment, resume from the offsets committed with the rows, not Kafka's."""

    def __init__(self, runner: "ConsumerRunner") -> None:
        self.runner = runner

    def on_partitions_revoked(self, revoked: list[TopicPartition]) -> None:
        logger.info("partitions revoked: %s", sorted((tp.topic, tp.partition) for tp in revoked))

    def on_partitions_assigned(self, assigned: list[TopicPartition]) -> None:
        logger.info("partitions assigned: %s", sorted((tp.topic, tp.partition) for tp in assigned))
        self.runner.seek_to_stored(assigned)


class ConsumerRunner:
    """Runs handlers for their topics in one consumer-group member."""

    def __init__(self, config: RunnerConfig, handlers: Sequence[Handler]) -> None:
        self.config = config
        self.handlers = {h.topic: h for h in handlers}
        self._stopping = False
        self._conn = psycopg.connect(config.database_url, autocommit=False)
        self._consumer = KafkaConsumer(
            bootstrap_servers=config.bootstrap,
            group_id=config.group_id,
            client_id=config.client_id,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            max_poll_records=config.max_poll_records,
            max_poll_interval_ms=config.max_poll_interval_ms,
            session_timeout_ms=config.session_timeout_ms,
            heartbeat_interval_ms=config.heartbeat_interval_ms,
            fetch_max_bytes=64 * 1024 * 1024,
            max_partition_fetch_bytes=8 * 1024 * 1024,
        )
        self._producer = KafkaProducer(
            bootstrap_servers=config.bootstrap,
            client_id=f"{config.client_id}-out",
            acks="all",
            linger_ms=5,
            batch_size=512 * 1024,
            max_request_size=8 * 1024 * 1024,
        )

    # ----------------------------------------------------------------- offsets

    def seek_to_stored(self, partitions: list[TopicPartition]) -> None:
        """Seek each partition to the offset stored with the rows (or its beginning)."""
        by_topic: dict[str, list[int]] = {}
        for tp in partitions:
            by_topic.setdefault(tp.topic, []).append(tp.partition)
        self._conn.rollback()
        for topic, numbers in by_topic.items():
            stored = event_store.load_offsets(self._conn, self.config.group_id, topic, numbers)
            for number in numbers:
                tp = TopicPartition(topic, number)
                if number in stored:
                    self._consumer.seek(tp, stored[number])
                else:
                    self._consumer.seek_to_beginning(tp)
        self._conn.rollback()

    # ----------------------------------------------------------------- loop

    def request_stop(self, *_args: object) -> None:
        """Finish the current batch, commit, and leave the group."""
        self._stopping = True

    def install_signal_handlers(self) -> None:
        """SIGTERM and SIGINT finish the batch before exiting."""

        def stop(_signum: int, _frame: FrameType | None) -> None:
            self.request_stop()

        signal.signal(signal.SIGTERM, stop)
        signal.signal(signal.SIGINT, stop)

    def run(self, *, idle_exit_after_s: float | None = None) -> None:
        """Poll and process until asked to stop (or idle for `idle_exit_after_s`)."""
        self._consumer.subscribe(list(self.handlers), listener=_SeekToStoredOffsets(self))
        backoff = 0.5
        idle_since = time.monotonic()
        try:
            while not self._stopping:
                polled = self._consumer.poll(
                    timeout_ms=self.config.poll_timeout_ms,
                    max_records=self.config.max_poll_records,
                )
                if not polled:
                    if idle_exit_after_s and time.monotonic() - idle_since > idle_exit_after_s:
                        return
                    continue
                idle_since = time.monotonic()
                try:
                    self._process(polled)
                    backoff = 0.5
                except (psycopg.OperationalError, KafkaError) as exc:
                    kind = "database" if isinstance(exc, psycopg.Error) else "broker"
                    metrics.TRANSIENT_FAILURES.labels(kind).inc()
                    logger.warning(
                        "%s failure, retrying the batch in %.1fs: %s", kind, backoff, exc
                    )
                    self._rewind(polled)
                    time.sleep(backoff)
                    backoff = min(backoff * 2, self.config.max_backoff_s)
                    self._reconnect_if_broken()
        finally:
            self.close()

    def _process(self, polled: dict[TopicPartition, list[object]]) -> None:
        started = time.monotonic()
        now = datetime.now(UTC)
        by_topic: dict[str, list[InboundRecord]] = {}
        next_offsets: dict[str, dict[int, int]] = {}
        for tp, raw_records in polled.items():
            records = [_inbound(raw) for raw in raw_records]
            by_topic.setdefault(tp.topic, []).extend(records)
            next_offsets.setdefault(tp.topic, {})[tp.partition] = records[-1].offset + 1

        outgoing: list[OutboundRecord] = []
        for topic, records in by_topic.items():
            metrics.EVENTS_IN.labels(topic).inc(len(records))
            metrics.BATCH_SIZE.labels(topic).observe(len(records))
            outgoing.extend(self.handlers[topic].handle(records, self._conn, now))
        for out in outgoing:
            self._producer.send(out.topic, key=out.key, value=out.value, headers=out.headers)
        self._producer.flush(timeout=30)
        for topic, offsets in next_offsets.items():
            event_store.store_offsets(self._conn, self.config.group_id, topic, offsets)
        self._conn.commit()

        # Kafka's own committed offsets only serve lag monitoring and tooling.
        self._consumer.commit_async(
            {
                TopicPartition(topic, p): OffsetAndMetadata(o, "", -1)
                for topic, offsets in next_offsets.items()
                for p, o in offsets.items()
            }
        )
        committed = time.time()
        for topic, records in by_topic.items():
            latency = metrics.END_TO_END_LATENCY.labels(topic)
            for record in records:
                latency.observe(max(0.0, committed - record.timestamp_ms / 1000))
            metrics.BATCH_SECONDS.labels(topic).observe(time.monotonic() - started)
        for tp in polled:
            highwater = self._consumer.highwater(tp)
            if highwater is not None:
                lag = highwater - self._consumer.position(tp)
                metrics.CONSUMER_LAG.labels(tp.topic, str(tp.partition)).set(lag)

    def _rewind(self, polled: dict[TopicPartition, list[object]]) -> None:
        """Roll back and seek each partition back to the batch's first record."""
        with contextlib.suppress(psycopg.Error):
            self._conn.rollback()
        for tp, raw_records in polled.items():
            self._consumer.seek(tp, _inbound(raw_records[0]).offset)
        for handler in self.handlers.values():
            handler.reset()

    def _reconnect_if_broken(self) -> None:
        if self._conn.closed or self._conn.broken:
            try:
                self._conn = psycopg.connect(self.config.database_url, autocommit=False)
            except psycopg.OperationalError as exc:
                logger.warning("database still unreachable: %s", exc)

    def close(self) -> None:
        """Leave the group and release connections."""
        try:
            self._producer.flush(timeout=10)
            self._producer.close(timeout=10)
        finally:
            self._consumer.close()
            self._conn.close()


def _inbound(raw: object) -> InboundRecord:
    """Adapt a kafka-python ConsumerRecord to the handlers' broker-neutral record."""
    return InboundRecord(
        topic=raw.topic,  # type: ignore[attr-defined]
        partition=raw.partition,  # type: ignore[attr-defined]
        offset=raw.offset,  # type: ignore[attr-defined]
        timestamp_ms=raw.timestamp,  # type: ignore[attr-defined]
        key=raw.key,  # type: ignore[attr-defined]
        value=raw.value,  # type: ignore[attr-defined]
        headers=list(raw.headers or []),  # type: ignore[attr-defined]
    )
