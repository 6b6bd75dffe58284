"""The publisher relies on kafka-python's record batches; these pin what it relies on, so
an upgrade that changes them fails here rather than losing records in production."""

from kafka import TopicPartition
from kafka.errors import KafkaError, KafkaTimeoutError
from kafka.producer.producer_batch import ProducerBatch
from kafka.record.memory_records import MemoryRecordsBuilder

from event_consumers.publisher import _failure_of

TP = TopicPartition("grid.assignments.v1", 0)


def _batch() -> ProducerBatch:
    builder = MemoryRecordsBuilder(2, 0, 1024)
    batch = ProducerBatch(TP, builder)
    assert batch.try_append(0, b"k", b"v", []) is not None
    return batch


def test_an_acknowledged_batch_is_no_failure() -> None:
    batch = _batch()
    batch.complete(41, -1)
    assert batch.produce_future.is_done
    assert _failure_of(batch.produce_future) is None


def test_an_aborted_batch_is_a_failure_although_its_future_succeeds() -> None:
    batch = _batch()
    batch.abort(KafkaError("fatal: InitProducerId failed"))
    # kafka-python completes the batch's future successfully, with the error inside.
    assert batch.produce_future.succeeded()
    failure = _failure_of(batch.produce_future)
    assert isinstance(failure, KafkaError)
    assert "InitProducerId" in str(failure)


def test_a_failed_batch_is_a_failure() -> None:
    batch = _batch()
    error = KafkaTimeoutError("expired")
    batch.complete_exceptionally(error, lambda _index: error)
    assert _failure_of(batch.produce_future) is error
