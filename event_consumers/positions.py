"""Where a consumer reads each partition from: the offsets stored with the rows, for the
incarnation of the topic they were stored under.

The consumer loop (`event_consumers.runner`) commits a batch's offsets in the same
transaction as its rows; on assignment it seeks to them here, not to Kafka's committed
offsets. A broker that made a topic anew (see `event_consumers.topics`) starts it at
offset 0 again, so offsets stored under the old topic id are not used, and each batch
carries the ids known when it was polled (`StoredPositions.new_batch`). A failed batch's
partitions are sought back here too, and the lag behind each partition's end is noted.
"""

import contextlib
import logging
import time
from collections.abc import Callable, Iterable, Sequence
from typing import Any, Final

import psycopg
from kafka import KafkaConsumer, TopicPartition
from kafka.consumer.subscription_state import ConsumerRebalanceListener
from kafka.errors import KafkaError

from event_consumers import metrics, topics
from event_consumers.batch import Batch, rewind_offset
from geodata.db import event_store

logger = logging.getLogger(__name__)

#: How long the loop may wait for a partition's end or position: kafka-python's own
#: default is its request timeout (30 s) for an end and forever for a position, and the
#: loop must poll within its poll interval (6 s) or it leaves its group. Without an answer
#: in time a stored offset is used as it is, and one past the end is then reset to the
#: start by the consumer itself (`auto_offset_reset`).
OFFSETS_TIMEOUT_MS: Final = 2_000


def present_partitions(
    consumer: KafkaConsumer, partitions: Iterable[TopicPartition]
) -> list[TopicPartition]:
    """Those of `partitions` that their topic has, as the consumer's metadata knows it.

    A topic made anew may have fewer partitions than the assignment names (a broker that
    makes a topic a client names, with its own count). kafka-python cannot seek one it
    lacks (it asks for its metadata every 100 ms until it gives up), raises KeyError for
    its end, and waits forever for its position.
    """
    return [
        tp for tp in partitions if tp.partition in (consumer.partitions_for_topic(tp.topic) or ())
    ]


def known_position(consumer: KafkaConsumer, tp: TopicPartition) -> int | None:
    """The partition's position if the consumer knows it, without waiting (None while a
    reset is under way).

    kafka-python's `position()` waits for a reset to end, forever for a partition its
    topic lacks: a rewind after a broker restart hung the loop that way, and the member
    never read again.
    """
    return consumer.position(tp, timeout_ms=0)  # type: ignore[no-any-return]


class StoredPositions:
    """Seeks a consumer's partitions to their stored offsets and tracks its topics' ids."""

    def __init__(
        self,
        consumer: KafkaConsumer,
        connection: Callable[[], psycopg.Connection],
        reconnect: Callable[[], None],
        *,
        bootstrap: str,
        group_id: str,
        topic_names: Sequence[str],
        topic_partitions: int,
    ) -> None:
        self._consumer = consumer
        #: The connection the offsets are read with (the runner's, which `reconnect`
        #: replaces when it broke).
        self._connection = connection
        self._reconnect = reconnect
        self._bootstrap = bootstrap
        self._group_id = group_id
        self._topic_names = list(topic_names)
        self._topic_partitions = topic_partitions
        self.incarnations = topics.TopicIncarnations(bootstrap, self._topic_names)
        #: Assigned partitions not yet sought to their stored offsets (held paused).
        self._unseeked: list[TopicPartition] = []
        self._unseeked_since = 0.0
        self._lag: dict[TopicPartition, int] = {}
        #: Between a revocation and the next assignment: the partitions still listed as
        #: assigned are on their way out, and the assignment seeks what comes back.
        self.rebalancing = False

    def new_batch(self, polled: dict[TopicPartition, list[Any]]) -> Batch:
        """A batch of what a poll returned, with its topics' ids as known now."""
        known = {tp.topic: self.incarnations.id_of(tp.topic) for tp in polled}
        return Batch(polled, topic_ids=known)

    def seek_to_stored(self, partitions: list[TopicPartition]) -> None:
        """Seek each partition to the offset stored with the rows (or its beginning).

        Offsets stored for an earlier incarnation of the topic are not used; where the
        broker gives no topic ids, an offset past the partition's end tells the same.
        """
        by_topic: dict[str, list[int]] = {}
        for tp in partitions:
            by_topic.setdefault(tp.topic, []).append(tp.partition)
        self._connection().rollback()
        for topic, numbers in by_topic.items():
            topic_id = self.incarnations.id_of(topic)
            stored = event_store.load_offsets(
                self._connection(), self._group_id, topic, numbers, topic_id
            )
            ends: dict[TopicPartition, int] = {}
            # A KeyError for the end of a partition the topic lacks left the whole
            # assignment unsought.
            present = present_partitions(self._consumer, (TopicPartition(topic, n) for n in stored))
            if topic_id is None and present:
                with contextlib.suppress(KafkaError):
                    ends = self._consumer.end_offsets(present, timeout_ms=OFFSETS_TIMEOUT_MS)
            for number in numbers:
                tp = TopicPartition(topic, number)
                offset = stored.get(number)
                if offset is not None and tp in ends and offset > ends[tp]:
                    logger.warning(
                        "%s[%d]: stored offset %d is past the end %d: the broker lost the"
                        " partition's log; reading it from the start",
                        topic,
                        number,
                        offset,
                        ends[tp],
                    )
                    metrics.OFFSET_RESETS.labels(topic).inc()
                    offset = None
                if offset is not None:
                    self._consumer.seek(tp, offset)
                else:
                    self._consumer.seek_to_beginning(tp)
        self._connection().rollback()

    def resume_from_stored(self, partitions: list[TopicPartition]) -> None:
        """Seek to the stored offsets; while the database is away, hold the partitions
        paused (nothing is read from a wrong position) and try again from the loop
        (`held_too_long`)."""
        assigned = set(self._consumer.assignment())
        pending = [tp for tp in {*self._unseeked, *partitions} if tp in assigned]
        try:
            self.seek_to_stored(pending)
        except (psycopg.OperationalError, psycopg.InterfaceError) as exc:
            logger.warning("cannot read the stored offsets, holding the partitions: %s", exc)
            self._unseeked = pending
            self._unseeked_since = time.monotonic()
            self._consumer.pause(*pending)
            self._reconnect()
            return
        if self._unseeked:
            self._consumer.resume(*self._unseeked)
        self._unseeked = []

    def owned_partitions(self, topics: Iterable[str]) -> list[TopicPartition]:
        """The assigned partitions of `topics` that may be sought now: none during a
        rebalance, and none that the topic's current incarnation lacks
        (`present_partitions`; seeking one was seen with an intake group that never got
        its assignment after a broker restart: fault matrix, loaded machine). The next
        assignment covers what the new incarnation has and seeks it itself.
        """
        if self.rebalancing:
            return []
        wanted = set(topics)
        assigned = (tp for tp in self._consumer.assignment() if tp.topic in wanted)
        return present_partitions(self._consumer, assigned)

    def rewind(self, batch: Batch) -> None:
        """Seek each partition of `batch` back to its first record (to be read again)."""
        for tp, offset in batch.first_offsets().items():
            # A partition revoked meanwhile is no longer ours to seek.
            with contextlib.suppress(KafkaError, AssertionError, ValueError):
                back_to = rewind_offset(offset, known_position(self._consumer, tp))
                if back_to is not None:
                    self._consumer.seek(tp, back_to)

    def note_lag(self, partitions: Iterable[TopicPartition]) -> None:
        """Note how far each partition's position is behind its end (metrics, `lag`)."""
        for tp in partitions:
            highwater = self._consumer.highwater(tp)
            position = known_position(self._consumer, tp)
            if highwater is not None and position is not None:
                lag = highwater - position
                self._lag[tp] = lag
                metrics.CONSUMER_LAG.labels(tp.topic, str(tp.partition)).set(lag)

    def lag(self) -> int | None:
        """Records behind the end over the partitions noted so far (None: none yet)."""
        return sum(self._lag.values()) if self._lag else None

    def held_too_long(self) -> bool:
        """Whether partitions have been held paused for over a second (time to retry)."""
        return bool(self._unseeked) and time.monotonic() - self._unseeked_since > 1.0

    def learn_topic_ids(self) -> list[str]:
        """Ask the broker for the topics' ids; return the topics whose id changed."""
        try:
            renewed = self.incarnations.refresh()
        except KafkaError as exc:
            logger.warning("could not read the topics' ids: %s", exc)
            return []
        for name in renewed:
            logger.warning("topic %s was made anew on the broker: reading it from the start", name)
            metrics.OFFSET_RESETS.labels(name).inc()
        return renewed

    def check_topics(self, *, create: bool) -> list[str]:
        """Make missing topics (if `create`, or if any is missing) and learn their ids;
        return the topics made anew since we last looked (raises KafkaError)."""
        created = []
        if create:
            created = topics.ensure_topics(
                self._bootstrap, self._topic_partitions, self._topic_names
            )
        renewed = self.learn_topic_ids()
        if self.incarnations.missing and not create:
            # This pass already took the renewed topics' new ids: the next cannot see them
            # as new again, so they are returned from here (after a broker restart the
            # topics a consumer names come back first, the others still missing).
            return sorted({*renewed, *self.check_topics(create=True)})
        if created or renewed:
            # The consumer's own metadata learns of the topics now, not minutes later.
            with contextlib.suppress(KafkaError):
                self._consumer.topics()
        return renewed


class SeekToStoredOffsets(ConsumerRebalanceListener):  # type: ignore[misc]
    """On assignment, resume from the offsets committed with the rows, not Kafka's.

    `settle` runs first on every change: the batch in flight commits (or fails) before
    partitions change hands, and handlers drop what the change made stale.
    """

    def __init__(self, positions: StoredPositions, settle: Callable[[], None]) -> None:
        self.positions = positions
        self.settle = settle

    def on_partitions_revoked(self, revoked: list[TopicPartition]) -> None:
        logger.info("partitions revoked: %s", sorted((tp.topic, tp.partition) for tp in revoked))
        self.positions.rebalancing = True
        self.settle()

    def on_partitions_assigned(self, assigned: list[TopicPartition]) -> None:
        logger.info("partitions assigned: %s", sorted((tp.topic, tp.partition) for tp in assigned))
        self.positions.rebalancing = False
        self.settle()
        self.positions.learn_topic_ids()
        self.positions.resume_from_stored(assigned)
