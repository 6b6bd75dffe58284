"""The live map's Kafka reader: one consumer without a group, in a background thread.

It assigns itself every partition of the assignments and compliance topics, starts at
their end (a live map shows what happens from now on), turns each record into a map
message with `geodata.live` and hands each polled batch to the `LiveHub`. Without a group
it commits nothing and never rebalances; every API process reads the topics whole.

Started by the first stream client, so an API that nobody watches never connects to the
broker for it; when the broker goes away it reconnects, again at the end (what happened
in between is not replayed: the map reloads compliance from the database instead).
"""

import logging
import threading
import time
from collections.abc import Callable
from typing import Final

from kafka import KafkaConsumer, TopicPartition
from kafka.errors import KafkaError, KafkaTimeoutError

import kafka_clients
from geodata.contract import Topics
from geodata.live import (
    MapMessage,
    assignment_message,
    compliance_message,
    incident_status_message,
)
from grid_service.live_hub import FeedStatus, LiveHub

logger = logging.getLogger(__name__)

POLL_TIMEOUT_MS: Final = 500
"""Longest a poll blocks: also how long a stop request waits for the thread."""
END_OFFSETS_TIMEOUT_S: Final = 10.0
"""Longest a connection waits for the ends of its partitions before it starts again."""
MAX_RECORDS: Final = 1000


class TopicsMissing(Exception):
    """A topic to read does not exist (yet) on the broker."""


class LiveFeed:
    """Reads the topics into a hub until `stop`; reconnects after `retry_s` on failure."""

    def __init__(
        self,
        bootstrap: str,
        topics: Topics,
        hub: LiveHub,
        *,
        retry_s: float = 3.0,
        end_offsets_timeout_s: float = END_OFFSETS_TIMEOUT_S,
    ) -> None:
        self.bootstrap = bootstrap
        self.hub = hub
        self.retry_s = retry_s
        self.end_offsets_timeout_s = end_offsets_timeout_s
        self._kafka = kafka_clients.KafkaConfig(bootstrap)
        self._readers: dict[str, Callable[[bytes], MapMessage]] = {
            topics.assignments: assignment_message,
            topics.compliance: compliance_message,
            topics.incident_status: incident_status_message,
        }
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self.unreadable = 0

    def ensure_started(self) -> None:
        """Start the reader thread unless it runs (or the feed was stopped)."""
        with self._lock:
            if self._thread is None and not self._stop.is_set():
                self._thread = threading.Thread(
                    target=self._run, name="wangge-live-feed", daemon=True
                )
                self._thread.start()

    def stop(self, timeout_s: float = 5.0) -> None:
        """Ask the thread to finish its poll and close the consumer; wait for it."""
        with self._lock:
            self._stop.set()
            thread = self._thread
        if thread is not None:
            thread.join(timeout_s)
            if thread.is_alive():
                logger.warning("live feed: the reader did not stop within %.0f s", timeout_s)

    def _run(self) -> None:
        while not self._stop.is_set():
            consumer: KafkaConsumer | None = None
            try:
                consumer = self._connect()
                self._read(consumer)
            except (KafkaError, OSError, TopicsMissing) as exc:
                logger.warning("live feed: %s; retrying in %.0f s", exc, self.retry_s)
                self.hub.set_status(FeedStatus(live=False, detail="the broker is unreachable"))
            except Exception:
                # A bug, not the broker: keep the API up, say so loudly, and try again.
                logger.exception("live feed: unexpected failure; retrying in %.0f s", self.retry_s)
                self.hub.set_status(FeedStatus(live=False, detail="the live feed failed"))
            finally:
                if consumer is not None:
                    consumer.close(autocommit=False)
            self._stop.wait(self.retry_s)

    def _connect(self) -> KafkaConsumer:
        # Tansu makes any topic a metadata request names (with 4 partitions); metadata of
        # all topics makes none. After a broker restart the topics then come back only as
        # the consumers make them, with the contract's count.
        consumer = kafka_clients.consumer(
            self._kafka,
            "api-live",
            names_no_topics=True,
            group_id=None,
            enable_auto_commit=False,
            request_timeout_ms=10_000,
        )
        try:
            partitions = []
            for topic in self._readers:
                numbers = consumer.partitions_for_topic(topic)
                if not numbers:
                    raise TopicsMissing(f"topic {topic} does not exist")
                partitions += [TopicPartition(topic, n) for n in sorted(numbers)]
            consumer.assign(partitions)
            consumer.seek_to_end()
            # Resolving the end offsets now makes "live" true: nothing produced after this
            # status is missed. Bounded: the end of a partition the broker no longer has
            # (a topic made anew with fewer after a restart) never comes, and the map
            # would wait for it for good; after the bound the feed connects again.
            deadline = time.monotonic() + self.end_offsets_timeout_s
            for partition in partitions:
                left_ms = max(0, int((deadline - time.monotonic()) * 1000))
                if consumer.position(partition, timeout_ms=left_ms) is None:
                    raise KafkaTimeoutError(
                        f"the end of {partition.topic} [{partition.partition}] was not known"
                        f" within {self.end_offsets_timeout_s:g} s"
                    )
        except BaseException:
            consumer.close(autocommit=False)
            raise
        logger.info("live feed: reading %d partitions from their end", len(partitions))
        self.hub.set_status(FeedStatus(live=True, detail="live"))
        return consumer

    def _read(self, consumer: KafkaConsumer) -> None:
        while not self._stop.is_set():
            batches = consumer.poll(timeout_ms=POLL_TIMEOUT_MS, max_records=MAX_RECORDS)
            messages: list[MapMessage] = []
            for partition, records in batches.items():
                read = self._readers[partition.topic]
                for record in records:
                    if record.value is None:  # a tombstone: no event to show
                        continue
                    try:
                        messages.append(read(record.value))
                    except ValueError as exc:
                        self._skip(partition, record.offset, exc)
            self.hub.publish(messages)

    def _skip(self, partition: TopicPartition, offset: int, exc: ValueError) -> None:
        # The consumers refuse malformed events into the dead-letter topic; one that reached
        # these topics anyway is not the map's to fix: skip it, and say so once.
        self.unreadable += 1
        log = logger.warning if self.unreadable == 1 else logger.debug
        log(
            "live feed: skipped an unreadable record %s[%d]@%d (%d so far): %s",
            partition.topic,
            partition.partition,
            offset,
            self.unreadable,
            str(exc).splitlines()[0],
        )
