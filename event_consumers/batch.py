"""What the consumer loop hands its handlers: records in, a batch on its way to a commit."""

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol, TypeVar, runtime_checkable

import psycopg
from kafka import TopicPartition

from event_consumers.records import InboundRecord, OutboundRecord


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


Prepared = TypeVar("Prepared")


@runtime_checkable
class TwoStepHandler(Handler, Protocol[Prepared]):
    """A handler whose work splits in two, so the runner can overlap batches.

    `prepare` decodes and computes with read-only access to the database, on the main
    thread, while the writer thread still writes the batch before; `write` then stores
    the prepared batch in the writer's transaction. `handle` must equal the two in turn.
    """

    def prepare(
        self, records: Sequence[InboundRecord], conn: psycopg.Connection, now: datetime
    ) -> Prepared:
        """Everything that needs no transaction; `conn` is only read from."""
        ...

    def write(self, prepared: Prepared, conn: psycopg.Connection) -> list[OutboundRecord]:
        """Store a prepared batch in the caller's transaction; never commit."""
        ...


@dataclass(frozen=True)
class OwnPartitions:
    """A member's partitions of one topic as a batch was polled."""

    assigned: frozenset[int]
    #: Those whose every record is polled (as of the last fetch).
    read_to_end: frozenset[int]
    #: How many partitions the topic has, as the client's metadata tells.
    topic_partitions: int


@runtime_checkable
class ReadToEndAwareHandler(Handler, Protocol):
    """A handler that needs to know which partitions hold nothing unread (a watermark's
    idle partitions); told before each `handle`, on the main thread."""

    def note_partitions(self, partitions: OwnPartitions) -> None:
        """Its partitions of its topic, and which of them are read to their end."""
        ...


@runtime_checkable
class PartitionAwareHandler(Handler, Protocol):
    """A handler that keeps copies of database state which a rebalance makes stale."""

    def partitions_changed(self) -> None:
        """Partitions moved between the group's members: drop what they may have changed."""
        ...


Write = Callable[[psycopg.Connection], list[OutboundRecord]]


@dataclass
class Batch:
    """One poll's records on their way to a commit."""

    polled: dict[TopicPartition, list[Any]]
    writes: list[Write] = field(default_factory=list)
    next_offsets: dict[str, dict[int, int]] = field(init=False)
    timestamps_ms: dict[str, list[int]] = field(default_factory=dict)
    started: float = field(default_factory=time.monotonic)
    #: Whether a handler without `prepare` does all its work on the writer thread, where
    #: it may share state (the grid snapshot cache) with the next batch's preparation.
    whole_handle: bool = False
    #: Each topic's id as known when the batch was polled, stored with its offsets. Not
    #: the id known at commit: a check between poll and commit may learn of a new
    #: incarnation, and the batch's positions may still be the old one's, so its offsets
    #: must not be taken as the new incarnation's (they would skip its first records).
    topic_ids: dict[str, str | None] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.next_offsets = {}
        for tp, records in self.polled.items():
            self.next_offsets.setdefault(tp.topic, {})[tp.partition] = records[-1].offset + 1

    def size(self) -> int:
        """How many records the batch holds."""
        return sum(len(records) for records in self.polled.values())

    def first_offsets(self) -> dict[TopicPartition, int]:
        """Where each partition of the batch starts."""
        return {tp: records[0].offset for tp, records in self.polled.items()}


def inbound_record(raw: object) -> InboundRecord:
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


def rewind_offset(first: int, position: int | None) -> int | None:
    """Where to seek a partition back to for a batch that starts at `first` (None: leave it).

    After a failed batch in flight was rewound, the one prepared behind it is rewound
    too: never past where the first one put a shared partition. Position 0 is a position
    (a topic's first record), not a missing one: taking it for "unknown" skipped the
    first records of a topic made anew after a broker restart. An unknown position is a
    reset under way, and every reset here reads from the start (sought to the beginning,
    or `auto_offset_reset`), which reads the batch again; seeking to `first` would put an
    offset of the topic's old incarnation on a new one.
    """
    return None if position is None else min(first, position)
