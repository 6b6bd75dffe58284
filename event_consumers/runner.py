"""The consumer loop: poll → decode → handle → produce → commit rows and offsets together.

Effectively once: a batch's rows and the offsets that produced them commit in one
PostgreSQL transaction, and on (re)assignment the consumer seeks to the offsets stored
there, so a crash at any point neither loses nor repeats a row. Records it produces
(assignments, dead letters) are flushed before that commit: at least once, and every
one carries its event id for downstream de-duplication.

Batches are pipelined: while one batch is written (rows, produce, offsets, commit) on a
writer thread, the next is polled and, for handlers that can (`prepare`/`write`),
decoded and assigned on the main thread. The writer spends its time waiting for
PostgreSQL and the broker, so the two overlap on a 2-core machine. Batches still commit
one at a time, in order; a rebalance waits for the batch in flight.

Error policy (STYLE.md): an invalid event is a dead letter and the batch goes on; a
database or broker failure rolls the batch back, rewinds and retries with back-off;
anything else crashes loudly so the supervisor restarts the process.
"""

import contextlib
import itertools
import logging
import signal
import time
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from types import FrameType
from typing import Any, Protocol

import psycopg
from kafka import KafkaConsumer, KafkaProducer, TopicPartition
from kafka.consumer.subscription_state import ConsumerRebalanceListener
from kafka.errors import KafkaError, KafkaTimeoutError
from kafka.partitioner.default import murmur2
from kafka.producer.producer_batch import ProducerBatch
from kafka.record.memory_records import MemoryRecordsBuilder
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


Write = Callable[[psycopg.Connection], list[OutboundRecord]]


@dataclass
class _Batch:
    """One poll's records on their way to a commit."""

    polled: dict[TopicPartition, list[Any]]
    writes: list[Write] = field(default_factory=list)
    next_offsets: dict[str, dict[int, int]] = field(default_factory=dict)
    timestamps_ms: dict[str, list[int]] = field(default_factory=dict)
    started: float = field(default_factory=time.monotonic)
    #: Whether a handler without `prepare` does all its work on the writer thread, where
    #: it may share state (the boundary cache) with the next batch's preparation.
    whole_handle: bool = False

    def first_offsets(self) -> dict[TopicPartition, int]:
        """Where each partition of the batch starts."""
        return {tp: records[0].offset for tp, records in self.polled.items()}


@dataclass(frozen=True)
class RunnerConfig:
    """Knobs of the loop; the defaults suit the Tansu broker and Apache Kafka alike."""

    bootstrap: str
    database_url: str
    group_id: str = "wangge-consumers"
    max_poll_records: int = 5000
    # Tansu often holds a fetch for much of this wait even when records are there: 50 ms
    # instead of Kafka's 500 ms halved a bare consumer's median latency (206 → 116 ms).
    fetch_max_wait_ms: int = 50
    poll_timeout_ms: int = 200
    # Short intervals keep group joins fast (Tansu stalls >20 s with the default).
    max_poll_interval_ms: int = 6000
    session_timeout_ms: int = 6000
    heartbeat_interval_ms: int = 1000
    max_backoff_s: float = 10.0
    client_id: str = "wangge-consumer"

    def fetch_settings(self) -> dict[str, int]:
        """How much a poll fetches; the pipeline benchmark's bare consumer uses the same."""
        return {
            "fetch_max_wait_ms": self.fetch_max_wait_ms,
            "max_poll_records": self.max_poll_records,
            "fetch_max_bytes": 64 * 1024 * 1024,
            "max_partition_fetch_bytes": 8 * 1024 * 1024,
        }


class _SeekToStoredOffsets(ConsumerRebalanceListener):  # type: ignore[misc]
    """On assignment, resume from the offsets committed with the rows, not Kafka's."""

    def __init__(self, runner: "ConsumerRunner") -> None:
        self.runner = runner

    def on_partitions_revoked(self, revoked: list[TopicPartition]) -> None:
        logger.info("partitions revoked: %s", sorted((tp.topic, tp.partition) for tp in revoked))
        self.runner.settle_for_rebalance()
        self.runner.partitions_changed()

    def on_partitions_assigned(self, assigned: list[TopicPartition]) -> None:
        logger.info("partitions assigned: %s", sorted((tp.topic, tp.partition) for tp in assigned))
        self.runner.settle_for_rebalance()
        self.runner.partitions_changed()
        self.runner.seek_to_stored(assigned)


class ConsumerRunner:
    """Runs handlers for their topics in one consumer-group member."""

    def __init__(self, config: RunnerConfig, handlers: Sequence[Handler]) -> None:
        self.config = config
        self.handlers = {h.topic: h for h in handlers}
        self._stopping = False
        self._conn = psycopg.connect(config.database_url, autocommit=False)
        # Preparing reads (roster, last fixes) while the writer holds `_conn` in a batch.
        self._read_conn = psycopg.connect(config.database_url, autocommit=True)
        self._writer = ThreadPoolExecutor(1, thread_name_prefix="wangge-writer")
        self._inflight: tuple[_Batch, Future[None]] | None = None
        self._consumer = KafkaConsumer(
            bootstrap_servers=config.bootstrap,
            group_id=config.group_id,
            client_id=config.client_id,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            max_poll_interval_ms=config.max_poll_interval_ms,
            session_timeout_ms=config.session_timeout_ms,
            heartbeat_interval_ms=config.heartbeat_interval_ms,
            **config.fetch_settings(),
        )
        self._producer = KafkaProducer(
            bootstrap_servers=config.bootstrap,
            client_id=f"{config.client_id}-out",
            acks="all",
            # Every batch ends with a flush, so lingering costs no latency; it only keeps
            # the sender thread from waking (and taking the GIL) while records are added.
            linger_ms=100,
            batch_size=1024 * 1024,
            max_request_size=8 * 1024 * 1024,
        )
        self._publisher = Publisher(self._producer)

    def partitions_changed(self) -> None:
        """Tell handlers that keep copies of the database that partitions moved."""
        for handler in self.handlers.values():
            changed = getattr(handler, "partitions_changed", None)
            if changed is not None:
                changed()

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

    @property
    def stopping(self) -> bool:
        """Whether a stop was requested (a signal, or the other stage of the process)."""
        return self._stopping

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
                    self._settle(wait=False)
                    if idle_exit_after_s and time.monotonic() - idle_since > idle_exit_after_s:
                        return
                    continue
                idle_since = time.monotonic()
                batch = _Batch(polled)
                try:
                    if self._inflight is not None and self._inflight[0].whole_handle:
                        self._settle(wait=True)
                    self._prepare(batch)
                    self._settle(wait=True)
                    self._inflight = (batch, self._writer.submit(self._write, batch))
                    backoff = 0.5
                except (psycopg.OperationalError, KafkaError) as exc:
                    kind = "database" if isinstance(exc, psycopg.Error) else "broker"
                    metrics.TRANSIENT_FAILURES.labels(kind).inc()
                    logger.warning(
                        "%s failure, retrying the batch in %.1fs: %s", kind, backoff, exc
                    )
                    self.settle_for_rebalance()  # the writer must be idle before rewinding
                    self._rewind(batch)
                    time.sleep(backoff)
                    backoff = min(backoff * 2, self.config.max_backoff_s)
                    self._reconnect_if_broken()
        finally:
            self.close()

    def _prepare(self, batch: _Batch) -> None:
        """Decode the batch and do each handler's work that needs no transaction."""
        now = datetime.now(UTC)
        by_topic: dict[str, list[InboundRecord]] = {}
        for tp, raw_records in batch.polled.items():
            records = [_inbound(raw) for raw in raw_records]
            by_topic.setdefault(tp.topic, []).extend(records)
            batch.next_offsets.setdefault(tp.topic, {})[tp.partition] = records[-1].offset + 1
        for topic, records in by_topic.items():
            metrics.EVENTS_IN.labels(topic).inc(len(records))
            metrics.BATCH_SIZE.labels(topic).observe(len(records))
            batch.timestamps_ms[topic] = [record.timestamp_ms for record in records]
            batch.writes.append(self._step(batch, self.handlers[topic], records, now))

    def _step(
        self, batch: _Batch, handler: Handler, records: list[InboundRecord], now: datetime
    ) -> Write:
        """The handler's part for the writer: its `write` after `prepare`, or `handle`."""
        prepare = getattr(handler, "prepare", None)
        write = getattr(handler, "write", None)
        if prepare is None or write is None:
            batch.whole_handle = True
            return lambda conn: handler.handle(records, conn, now)
        prepared = prepare(records, self._read_conn, now)
        return lambda conn: list(write(prepared, conn))

    def _write(self, batch: _Batch) -> None:
        """On the writer thread: rows, produced records, offsets, one commit."""
        try:
            outgoing: list[OutboundRecord] = []
            for write in batch.writes:
                outgoing.extend(write(self._conn))
            self._publisher.publish(outgoing)
            self._publisher.flush(timeout_s=30)
            for topic, offsets in batch.next_offsets.items():
                event_store.store_offsets(self._conn, self.config.group_id, topic, offsets)
            self._conn.commit()
        except BaseException:
            with contextlib.suppress(psycopg.Error):
                self._conn.rollback()
            raise
        committed = time.time()
        for topic, timestamps in batch.timestamps_ms.items():
            latency = metrics.END_TO_END_LATENCY.labels(topic)
            for timestamp_ms in timestamps:
                latency.observe(max(0.0, committed - timestamp_ms / 1000))
            metrics.BATCH_SECONDS.labels(topic).observe(time.monotonic() - batch.started)

    def _settle(self, *, wait: bool) -> None:
        """Finish with the batch in flight (if done, or `wait`); re-raise its failure."""
        if self._inflight is None:
            return
        batch, future = self._inflight
        if not wait and not future.done():
            return
        self._inflight = None
        try:
            future.result()
        except (psycopg.OperationalError, KafkaError):
            # Its records are read again from where it started, before anything later.
            self._rewind(batch)
            raise
        # Kafka's own committed offsets only serve lag monitoring and tooling.
        self._consumer.commit_async(
            {
                TopicPartition(topic, p): OffsetAndMetadata(o, "", -1)
                for topic, offsets in batch.next_offsets.items()
                for p, o in offsets.items()
            }
        )
        for tp in batch.polled:
            highwater = self._consumer.highwater(tp)
            if highwater is not None:
                lag = highwater - self._consumer.position(tp)
                metrics.CONSUMER_LAG.labels(tp.topic, str(tp.partition)).set(lag)

    def settle_for_rebalance(self) -> None:
        """Let the batch in flight commit (or fail) before partitions change hands."""
        try:
            self._settle(wait=True)
        except (psycopg.OperationalError, KafkaError) as exc:
            # Not committed: the partitions' next owner (maybe us) reads it again.
            logger.warning("batch in flight failed during a rebalance: %s", exc)

    def _rewind(self, batch: _Batch) -> None:
        """Seek each partition back to the batch's first record; forget derived state."""
        for tp, offset in batch.first_offsets().items():
            # A partition revoked meanwhile is no longer ours to seek.
            with contextlib.suppress(KafkaError, AssertionError, ValueError):
                # After a failed batch in flight was rewound, the one prepared behind it is
                # rewound too: never past where the first one put a shared partition.
                self._consumer.seek(tp, min(offset, self._consumer.position(tp) or offset))
        for handler in self.handlers.values():
            handler.reset()
        self._publisher.forget()

    def _reconnect_if_broken(self) -> None:
        for name in ("_conn", "_read_conn"):
            conn: psycopg.Connection = getattr(self, name)
            if conn.closed or conn.broken:
                try:
                    autocommit = name == "_read_conn"
                    setattr(
                        self, name, psycopg.connect(self.config.database_url, autocommit=autocommit)
                    )
                except psycopg.OperationalError as exc:
                    logger.warning("database still unreachable: %s", exc)

    def _finish_joining(self) -> None:
        """Before leaving the group, let a join in progress complete (bounded).

        A member that sent LeaveGroup while its JoinGroup was pending (stopped right
        after starting) left Tansu 0.6 with a member that never syncs: the group's next
        members then failed SyncGroup over and over. Records polled here are dropped;
        nothing is committed, so the partitions' next owner reads them.
        """
        if not self._consumer.subscription():
            return
        deadline = time.monotonic() + self.config.max_poll_interval_ms / 1000
        while not self._consumer.assignment() and time.monotonic() < deadline:
            self._consumer.poll(timeout_ms=100, max_records=1)

    def close(self) -> None:
        """Leave the group and release connections."""
        try:
            self.settle_for_rebalance()
            self._finish_joining()
            self._writer.shutdown(wait=True)
            self._producer.flush(timeout=10)
            self._producer.close(timeout=10)
        finally:
            self._consumer.close()
            self._conn.close()
            self._read_conn.close()


class Publisher:
    """Produces a batch's records and waits until the broker acknowledged every one.

    kafka-python's `send()` costs ~40 µs a record here (it re-checks the record, copies
    the cluster's set of topic names twice, and makes a future with its own lock per
    record, which the sender thread completes one by one): more than all the rest of a
    check-in's work. Instead the records of each partition are written into one
    kafka-python record batch and handed to the producer's accumulator whole, which its
    sender thread then sends like any other (~8 µs a record). That uses kafka-python
    internals, so kafka-python is pinned; without them (or for a transactional producer,
    or an oversized record) the public `send()` is used. Partitions are the default
    partitioner's: murmur2 of the key, and round-robin without one.
    """

    #: Records above this go through `send()`, which refuses what the broker would.
    FAST_PATH_MAX_BYTES = 256 * 1024
    #: Batch size, under Kafka's default 1 MB message limit so no batch is ever split.
    BATCH_BYTES = 512 * 1024
    MAX_CACHED_KEYS = 100_000

    def __init__(self, producer: KafkaProducer) -> None:
        self._producer = producer
        accumulator: Any = getattr(producer, "_accumulator", None)
        usable = all(
            hasattr(accumulator, name)
            for name in ("_tp_lock", "_batches", "_incomplete", "_transaction_manager", "config")
        )
        # The sender gives every drained batch the idempotent producer's id and sequence,
        # but a transaction would also have to know of the partitions: none here.
        transactional = usable and bool(
            accumulator._transaction_manager and accumulator._transaction_manager.is_transactional()
        )
        self._accumulator: Any = accumulator if usable and not transactional else None
        self._sender: Any = getattr(producer, "_sender", None)
        self._partition_of: dict[tuple[str, int, bytes], int] = {}
        self._round_robin = itertools.count()
        self._pending: list[Any] = []

    def publish(self, records: Iterable[OutboundRecord]) -> None:
        """Hand the records to the producer; `flush` waits for them."""
        counts: dict[str, int] = {}
        by_partition: dict[TopicPartition, list[OutboundRecord]] = {}
        for out in records:
            count = counts.get(out.topic)
            if count is None:
                count = counts[out.topic] = len(self._producer.partitions_for(out.topic))
            tp = TopicPartition(out.topic, self._partition(out.topic, count, out.key))
            if self._accumulator is None or len(out.value) > self.FAST_PATH_MAX_BYTES:
                self._pending.append(
                    self._producer.send(
                        tp.topic,
                        key=out.key,
                        value=out.value,
                        headers=list(out.headers),
                        partition=tp.partition,
                    )
                )
            else:
                by_partition.setdefault(tp, []).append(out)
        for tp, outs in by_partition.items():
            # Tansu 0.6 reports a partition's end offset as its last batch's first offset
            # + 1; a last batch of one record keeps end offsets (lag, tools reading a topic
            # to its end) exact. Kafka needs no such thing, and it costs one small batch.
            builder = self._builder()
            for out in outs[:-1]:
                if builder.append(None, out.key, out.value, out.headers) is None:
                    self._enqueue(tp, builder)
                    builder = self._builder()
                    builder.append(None, out.key, out.value, out.headers)
            if len(outs) > 1:
                self._enqueue(tp, builder)
                builder = self._builder()
            last = outs[-1]
            builder.append(None, last.key, last.value, last.headers)
            self._enqueue(tp, builder)

    def _builder(self) -> Any:
        return MemoryRecordsBuilder(
            self._accumulator.config["message_version"],
            self._accumulator.config["compression_attrs"],
            self.BATCH_BYTES,
        )

    def _enqueue(self, tp: TopicPartition, builder: Any) -> None:
        """Put a filled record batch in the accumulator, where the sender takes it from."""
        batch = ProducerBatch(tp, builder)
        with self._accumulator._tp_lock(tp):
            self._accumulator._batches[tp].append(batch)
            self._accumulator._incomplete.add(batch)
        self._pending.append(batch.produce_future)

    def flush(self, timeout_s: float) -> None:
        """Send everything now; raise KafkaError unless the broker took every record."""
        if self._sender is not None:
            self._sender.wakeup()
        self._producer.flush(timeout=timeout_s)
        pending, self._pending = self._pending, []
        for future in pending:
            if not future.is_done:
                raise KafkaTimeoutError("a record batch was not acknowledged in time")
            if future.exception is not None:
                if isinstance(future.exception, KafkaError):
                    raise future.exception
                raise KafkaError(str(future.exception)) from future.exception

    def forget(self) -> None:
        """Drop what a batch that is being retried left pending."""
        self._pending = []

    def _partition(self, topic: str, count: int, key: bytes | None) -> int:
        if key is None:
            return next(self._round_robin) % count
        cache_key = (topic, count, key)
        partition = self._partition_of.get(cache_key)
        if partition is None:
            if len(self._partition_of) > self.MAX_CACHED_KEYS:
                self._partition_of.clear()  # dead letters keep arbitrary keys
            partition = (murmur2(key) & 0x7FFFFFFF) % count
            self._partition_of[cache_key] = partition
        return partition


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
