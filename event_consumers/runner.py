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

Stopping: SIGTERM (or SIGINT) finishes the batch in hand, commits and leaves; SIGUSR1
drains first: the consumer notes the end of each partition it reads, goes on until it
has committed everything up to there, and only then leaves (`wangge up` stops a stage so
once nothing more is produced to its topics, so that the broker can go last).

Error policy: an invalid event is a dead letter and the batch goes on; a database or
broker failure rolls the batch back, rewinds and retries with back-off, and the broker's
clients and topics are checked anew. Any other failure of a batch is taken as a record the
code cannot handle (a poison record): the batch is rolled back and its records are run
again one at a time, and the one that fails alone goes to the dead letters with the reason
`unprocessable`, so that one record never stops a city's intake. A broker that lost a topic
(a new incarnation, told by its topic id) is read again from the start: where each
partition is read from is `event_consumers.positions`'s part.
"""

import contextlib
import logging
import os
import signal
import socket
import time
from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from types import FrameType
from typing import Any

import psycopg
from kafka import KafkaProducer, TopicPartition
from kafka.errors import KafkaError
from kafka.structs import OffsetAndMetadata

import kafka_clients
from event_consumers import metrics
from event_consumers.batch import (
    Batch,
    Handler,
    OwnPartitions,
    PartitionAwareHandler,
    ReadToEndAwareHandler,
    TwoStepHandler,
    Write,
    inbound_record,
)
from event_consumers.positions import (
    OFFSETS_TIMEOUT_MS,
    SeekToStoredOffsets,
    StoredPositions,
    known_position,
    present_partitions,
)
from event_consumers.publisher import Publisher
from event_consumers.records import InboundRecord, OutboundRecord, dead_letter
from geodata.compliance import ComplianceConfig
from geodata.coverage import CoverageConfig
from geodata.db import event_store, heartbeats
from geodata.duplicates import DuplicateRule
from geodata.events import DEFAULT_TIME_LIMITS, EventTimeLimits, RefusalReason
from geodata.snapshot_policy import SnapshotPolicy

logger = logging.getLogger(__name__)


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
    # How long a request waits for its answer before it is sent again. A group's SyncGroup
    # went unanswered for over 20 s after a broker restart (Tansu, fault matrix), and with
    # kafka-python's 30 s the compliance stage held no partitions for that long.
    request_timeout_ms: int = 10_000
    max_backoff_s: float = 10.0
    #: Partitions of a topic the consumer (re)creates when the broker lacks it.
    topic_partitions: int = 6
    #: "intake" or "compliance": the name of the stage in its heartbeat.
    stage: str = "intake"
    heartbeat_interval_s: float = 5.0
    #: How often an idle consumer asks the broker whether its topics were made anew.
    topic_check_interval_s: float = 10.0
    #: How old an event may be (settings: WANGGE_EVENT_MAX_AGE_DAYS).
    event_limits: EventTimeLimits = DEFAULT_TIME_LIMITS
    #: How near a report must be to an open case to be linked as a probable duplicate
    #: (settings: WANGGE_DUPLICATE_*).
    duplicates: DuplicateRule = field(default_factory=DuplicateRule)
    #: The patrol rule the compliance stage applies (settings: WANGGE_PATROL_*).
    compliance: ComplianceConfig = field(default_factory=ComplianceConfig)
    #: How the handlers' grid snapshot is checked and built (the API's is the same).
    grid_snapshot: SnapshotPolicy = field(default_factory=SnapshotPolicy)
    #: How the storage stage records the grids' coverage (settings: WANGGE_COVERAGE_*).
    coverage: CoverageConfig = field(default_factory=CoverageConfig)

    def fetch_settings(self) -> dict[str, Any]:
        """How much a poll fetches; the pipeline benchmark's bare consumer uses the same."""
        return {
            "fetch_max_wait_ms": self.fetch_max_wait_ms,
            "max_poll_records": self.max_poll_records,
            "fetch_max_bytes": 64 * 1024 * 1024,
            "max_partition_fetch_bytes": 8 * 1024 * 1024,
        }


class ConsumerRunner:
    """Runs handlers for their topics in one consumer-group member."""

    def __init__(
        self,
        config: RunnerConfig,
        handlers: Sequence[Handler],
        *,
        deadletter_topic: str,
        output_topics: Sequence[str] = (),
    ) -> None:
        self.config = config
        self.handlers = {h.topic: h for h in handlers}
        self.deadletter_topic = deadletter_topic
        #: Every topic this member reads or writes: made when missing, watched for a new
        #: incarnation.
        self.topic_names = sorted({*self.handlers, deadletter_topic, *output_topics})
        self.member = f"{socket.gethostname()}:{os.getpid()}"
        self._stopping = False
        #: When a drain was asked for (monotonic), and the ends it reads to.
        self._drain_asked: float | None = None
        self._drain_ends: dict[TopicPartition, int] | None = None
        self._conn = psycopg.connect(config.database_url, autocommit=False)
        # Preparing reads (roster, last fixes) while the writer holds `_conn` in a batch.
        self._read_conn = psycopg.connect(config.database_url, autocommit=True)
        self._writer = ThreadPoolExecutor(1, thread_name_prefix="wangge-writer")
        self._inflight: tuple[Batch, Future[None]] | None = None
        #: Records still to run one at a time after a batch failed for one of them.
        self._isolating = 0
        #: Size of the last batch whose write failed, for the one-at-a-time run.
        self._failed_size = 0
        self._last_beat = 0.0
        self._kafka = kafka_clients.KafkaConfig(config.bootstrap)
        self._consumer = kafka_clients.consumer(
            self._kafka,
            "consumer",
            group_id=config.group_id,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            metadata_max_age_ms=30_000,
            max_poll_interval_ms=config.max_poll_interval_ms,
            session_timeout_ms=config.session_timeout_ms,
            heartbeat_interval_ms=config.heartbeat_interval_ms,
            request_timeout_ms=config.request_timeout_ms,
            **config.fetch_settings(),
        )
        self.positions = StoredPositions(
            self._consumer,
            lambda: self._conn,
            self._reconnect_if_broken,
            bootstrap=config.bootstrap,
            group_id=config.group_id,
            topic_names=self.topic_names,
            topic_partitions=config.topic_partitions,
        )
        self._producer = self._new_producer()
        self._publisher = Publisher(self._producer)

    def _new_producer(self) -> KafkaProducer:
        return kafka_clients.producer(
            self._kafka,
            "consumer-out",
            acks="all",
            # Every batch ends with a flush, so lingering costs no latency; it only keeps
            # the sender thread from waking (and taking the GIL) while records are added.
            linger_ms=100,
            batch_size=1024 * 1024,
            max_request_size=8 * 1024 * 1024,
        )

    def _renew_producer(self) -> None:
        """Replace the producer after a broker failure (the writer is idle).

        A producer whose broker restarted may be left in a fatal state (its producer id
        unknown to the new broker) that no retry clears; a new one costs a connection.
        """
        with contextlib.suppress(Exception):
            self._producer.close(timeout=0)
        self._producer = self._new_producer()
        self._publisher = Publisher(self._producer)

    def _settle_for_new_partitions(self) -> None:
        """Before partitions change hands: the batch in flight commits (or fails), and
        handlers that keep copies of the database drop them."""
        self.settle_for_rebalance()
        for handler in self.handlers.values():
            if isinstance(handler, PartitionAwareHandler):
                handler.partitions_changed()

    def check_topics(self, *, create: bool) -> None:
        """Make missing topics, learn their ids, and re-seek the assigned partitions of any
        topic that was made anew since we last looked."""
        renewed = self.positions.check_topics(create=create)
        if not renewed:
            return
        self.settle_for_rebalance()
        for handler in self.handlers.values():
            handler.reset()
        # The producer's metadata is the old incarnation's: its partition count may be
        # more than the new one has, and records keyed past the new end were acknowledged
        # by the broker (Tansu 0.6) yet never on the topic. A new producer asks afresh.
        self._renew_producer()
        assigned = self.positions.owned_partitions(renewed)
        if assigned:
            self.positions.seek_to_stored(assigned)

    # ----------------------------------------------------------------- loop

    @property
    def stopping(self) -> bool:
        """Whether a stop was requested (a signal, or the other stage of the process)."""
        return self._stopping

    @property
    def draining(self) -> bool:
        """Whether a drain was requested (SIGUSR1): read to the end, then stop."""
        return self._drain_asked is not None

    def request_stop(self, *_args: object) -> None:
        """Finish the current batch, commit, and leave the group."""
        self._stopping = True

    def request_drain(self, *_args: object) -> None:
        """Commit everything up to the partitions' present ends, then stop (signal-safe:
        it only notes the time)."""
        if self._drain_asked is None:
            self._drain_asked = time.monotonic()

    def install_signal_handlers(self) -> None:
        """SIGTERM and SIGINT finish the batch before exiting; SIGUSR1 drains first."""

        def stop(_signum: int, _frame: FrameType | None) -> None:
            self.request_stop()

        def drain(_signum: int, _frame: FrameType | None) -> None:
            self.request_drain()

        signal.signal(signal.SIGTERM, stop)
        signal.signal(signal.SIGINT, stop)
        signal.signal(signal.SIGUSR1, drain)

    def _drained(self) -> bool:
        """Whether a drain is done: every record up to the ends noted committed.

        The ends are the partitions' ends when first asked after the drain began (again
        after a rebalance). A member given no partition within a poll interval has
        nothing to drain.
        """
        assert self._drain_asked is not None
        assignment = self._consumer.assignment()
        if not assignment:
            waited = time.monotonic() - self._drain_asked
            return waited > self.config.max_poll_interval_ms / 1000
        # A partition the topic lacks (assigned from an older incarnation's metadata) has
        # no end to read to; the next assignment drops it.
        present = present_partitions(self._consumer, assignment)
        if self._drain_ends is None or set(self._drain_ends) != set(present):
            self._drain_ends = self._consumer.end_offsets(present, timeout_ms=OFFSETS_TIMEOUT_MS)
            logger.info("draining to the end of %d partitions", len(self._drain_ends))
        for tp, end in self._drain_ends.items():
            position = self._consumer.position(tp, timeout_ms=OFFSETS_TIMEOUT_MS)
            if position is None or position < end:  # None: not known yet
                return False
        self._settle(wait=True)
        return True

    def run(self, *, idle_exit_after_s: float | None = None) -> None:
        """Poll and process until asked to stop (or idle for `idle_exit_after_s`)."""
        try:
            self.check_topics(create=True)
        except KafkaError as exc:
            # The broker is away: the idle loop tries again until it is back.
            logger.warning("could not make the topics on the broker: %s", exc)
        # By name, not by pattern: a pattern subscription was left with no partitions
        # after a broker restart (fault matrix). Naming the topics lets Tansu make them
        # with its own count if the consumer asks first; /healthz then says so.
        listener = SeekToStoredOffsets(self.positions, self._settle_for_new_partitions)
        self._consumer.subscribe(list(self.handlers), listener=listener)
        backoff = 0.5
        idle_since = time.monotonic()
        try:
            while not self._stopping:
                self._beat()
                batch: Batch | None = None
                try:
                    if self.draining and self._drained():
                        logger.info("drained: every record read so far is committed")
                        return
                    if self.positions.held_too_long():
                        self.positions.resume_from_stored([])
                    isolating = self._isolating > 0
                    polled = self._consumer.poll(
                        timeout_ms=self.config.poll_timeout_ms,
                        max_records=1 if isolating else self.config.max_poll_records,
                    )
                    if not polled:
                        # The batch in flight may fail here too: same policy as below.
                        self._settle(wait=False)
                        self._check_topics_when_idle()
                        if idle_exit_after_s and time.monotonic() - idle_since > idle_exit_after_s:
                            return
                        continue
                    idle_since = time.monotonic()
                    batch = self.positions.new_batch(polled)
                    if isolating:
                        self._run_alone(batch)
                    else:
                        if self._inflight is not None and self._inflight[0].whole_handle:
                            self._settle(wait=True)
                        self._prepare(batch)
                        self._settle(wait=True)
                        self._inflight = (batch, self._writer.submit(self._write, batch))
                    backoff = 0.5
                except (psycopg.OperationalError, psycopg.InterfaceError, KafkaError) as exc:
                    kind = "database" if isinstance(exc, psycopg.Error) else "broker"
                    metrics.TRANSIENT_FAILURES.labels(kind).inc()
                    logger.warning(
                        "%s failure, retrying the batch in %.1fs: %s", kind, backoff, exc
                    )
                    self.settle_for_rebalance()  # the writer must be idle before rewinding
                    if batch is not None:
                        self._rewind(batch)
                    time.sleep(backoff)
                    backoff = min(backoff * 2, self.config.max_backoff_s)
                    self._reconnect_if_broken()
                    if kind == "broker":
                        self._recover_broker()
                except Exception:
                    # Not the database, not the broker: a record this code cannot handle.
                    logger.exception("a batch failed; running its records one at a time")
                    metrics.POISON_BATCHES.inc()
                    self.settle_for_rebalance()
                    size = self._failed_size
                    if batch is not None:
                        self._rewind(batch)
                        size += batch.size()
                    self._isolating = max(self._isolating, size)
                    self._failed_size = 0
        finally:
            self.close()

    def _run_alone(self, batch: Batch) -> None:
        """Process one record by itself; if it fails for itself, dead-letter it."""
        self._isolating -= 1
        try:
            self._prepare(batch)
            self._inflight = (batch, self._writer.submit(self._write, batch))
            self._settle(wait=True)
        except (psycopg.OperationalError, psycopg.InterfaceError, KafkaError):
            raise
        except Exception as exc:
            self.settle_for_rebalance()
            self._rewind(batch)
            (tp, (raw,)) = next(iter(batch.polled.items()))
            record = inbound_record(raw)
            detail = f"{type(exc).__name__}: {exc}"
            logger.error(
                "dead-lettering %s[%d]@%d as unprocessable: %s",
                tp.topic,
                tp.partition,
                record.offset,
                detail,
            )
            metrics.EVENTS_REFUSED.labels(tp.topic, RefusalReason.UNPROCESSABLE).inc()
            letter = dead_letter(record, RefusalReason.UNPROCESSABLE, detail, self.deadletter_topic)
            refused = Batch(batch.polled, topic_ids=batch.topic_ids)
            refused.writes.append(lambda _conn: [letter])
            self._inflight = (refused, self._writer.submit(self._write, refused))
            self._settle(wait=True)
            self._consumer.seek(tp, record.offset + 1)

    def _recover_broker(self) -> None:
        """After a broker failure: a new producer, and the topics checked anew."""
        self._renew_producer()
        try:
            self.check_topics(create=True)
        except KafkaError as exc:
            logger.warning("broker still unavailable: %s", exc)

    def _check_topics_when_idle(self) -> None:
        incarnations = self.positions.incarnations
        if time.monotonic() - incarnations.checked_at < self.config.topic_check_interval_s:
            return
        try:
            self.check_topics(create=False)
        except KafkaError as exc:
            incarnations.checked_at = time.monotonic()
            logger.warning("could not check the topics on the broker: %s", exc)

    def _beat(self) -> None:
        """Tell /healthz that this member is alive, and how far behind it is."""
        now = time.monotonic()
        if now - self._last_beat < self.config.heartbeat_interval_s:
            return
        self._last_beat = now
        try:
            heartbeats.record_heartbeat(
                self._read_conn,
                group_id=self.config.group_id,
                stage=self.config.stage,
                member=self.member,
                topics=sorted(self.handlers),
                lag=self.positions.lag(),
                at=datetime.now(UTC),
            )
        except psycopg.Error as exc:
            logger.warning("could not record the heartbeat: %s", exc)
            self._reconnect_if_broken()

    def _prepare(self, batch: Batch) -> None:
        """Decode the batch and do each handler's work that needs no transaction."""
        now = datetime.now(UTC)
        by_topic: dict[str, list[InboundRecord]] = {}
        for tp, raw_records in batch.polled.items():
            records = [inbound_record(raw) for raw in raw_records]
            by_topic.setdefault(tp.topic, []).extend(records)
        for topic, records in by_topic.items():
            metrics.EVENTS_IN.labels(topic).inc(len(records))
            metrics.BATCH_SIZE.labels(topic).observe(len(records))
            batch.timestamps_ms[topic] = [record.timestamp_ms for record in records]
            batch.writes.append(self._step(batch, self.handlers[topic], records, now))

    def _step(
        self, batch: Batch, handler: Handler, records: list[InboundRecord], now: datetime
    ) -> Write:
        """The handler's part for the writer: its `write` after `prepare`, or `handle`."""
        if not isinstance(handler, TwoStepHandler):
            batch.whole_handle = True
            if isinstance(handler, ReadToEndAwareHandler):
                # Safe to set now: a whole-handle batch in flight was settled before this.
                handler.note_partitions(self._own_partitions(handler.topic))
            return lambda conn: handler.handle(records, conn, now)
        prepared = handler.prepare(records, self._read_conn, now)
        return lambda conn: list(handler.write(prepared, conn))

    def _own_partitions(self, topic: str) -> OwnPartitions:
        """The assigned partitions of `topic`, those whose end (as of the last fetch) is
        polled, and how many the topic has."""
        assigned = set()
        ended = set()
        for tp in self._consumer.assignment():
            if tp.topic != topic:
                continue
            assigned.add(tp.partition)
            end = self._consumer.highwater(tp)
            position = known_position(self._consumer, tp)
            if end is not None and position is not None and position >= end:
                ended.add(tp.partition)
        count = len(self._consumer.partitions_for_topic(topic) or ())
        return OwnPartitions(frozenset(assigned), frozenset(ended), count)

    def _write(self, batch: Batch) -> None:
        """On the writer thread: rows, produced records, offsets, one commit."""
        try:
            outgoing: list[OutboundRecord] = []
            for write in batch.writes:
                outgoing.extend(write(self._conn))
            self._publisher.publish(outgoing)
            self._publisher.flush(timeout_s=30)
            for topic, offsets in batch.next_offsets.items():
                event_store.store_offsets(
                    self._conn,
                    self.config.group_id,
                    topic,
                    offsets,
                    batch.topic_ids.get(topic),
                )
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
        except Exception:
            # Its records are read again from where it started, before anything later.
            self._failed_size = batch.size()
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
        self.positions.note_lag(batch.polled)

    def settle_for_rebalance(self) -> None:
        """Let the batch in flight commit (or fail) before partitions change hands."""
        try:
            self._settle(wait=True)
        except Exception as exc:
            # Not committed: the partitions' next owner (maybe us) reads it again, and a
            # poison record in it is then found as in any batch.
            logger.warning("batch in flight failed during a rebalance: %s", exc)
            for handler in self.handlers.values():
                handler.reset()

    def _rewind(self, batch: Batch) -> None:
        """Seek each partition back to the batch's first record; forget derived state."""
        self.positions.rewind(batch)
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
