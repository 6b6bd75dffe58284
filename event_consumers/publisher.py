"""Producing a batch's records fast, and waiting until the broker has every one."""

import itertools
from collections.abc import Iterable
from typing import Any

from kafka import KafkaProducer, TopicPartition
from kafka.errors import KafkaError, KafkaTimeoutError
from kafka.partitioner.default import murmur2
from kafka.producer.future import FutureProduceResult
from kafka.producer.producer_batch import ProducerBatch
from kafka.record.memory_records import MemoryRecordsBuilder

from event_consumers.records import OutboundRecord


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
            error = _failure_of(future)
            if error is not None:
                if isinstance(error, KafkaError):
                    raise error
                raise KafkaError(str(error)) from error

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


def _failure_of(future: Any) -> BaseException | None:
    """Why a finished produce failed, or None if the broker took every record.

    A `send()` future fails with its exception. A record batch's own future does not: a
    batch that failed or was aborted (a fatal producer error) *succeeds* with the value
    (base offset, timestamp, record_exceptions_fn), the function giving each record's
    exception; only a batch the broker acknowledged has no such function.
    """
    if future.exception is not None:
        return future.exception  # type: ignore[no-any-return]
    if isinstance(future, FutureProduceResult):
        _base_offset, _timestamp, record_exceptions = future.value
        if record_exceptions is not None:
            error = record_exceptions(0)
            return error if isinstance(error, BaseException) else KafkaError(str(error))
    return None
