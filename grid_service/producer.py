"""The gateway's Kafka producer: acks=all, idempotent, and a circuit breaker around it.

Why a breaker, and why a new producer after every failure: kafka-python 3.0.12's
idempotent producer never recovers from a batch that expires after it was sent (a broker
paused or restarted). It drops its producer id but stays READY, and only asks for a new
id from UNINITIALIZED, so every later record waits in its queue until it times out; a
producer made afresh works at once. So a failed send discards the producer and opens the
breaker: posts get 503 at once, with Retry-After, while a background probe builds a new
producer, and the breaker closes as soon as that producer sees the topics.

The producer never makes a topic. Tansu creates a topic named in a metadata request
whatever the request's allow_auto_topic_creation says (with its default of 4 partitions,
not the configured 6), so this producer only ever asks for the metadata of all topics;
until the consumers have made the topics again, posts get 503.

Stopping: `close_gate()` refuses every later send at once (503 `stopping`, with
Retry-After) while the sends already under way finish; `status()` says "closed" and how
many are still in flight, so whoever stops the service (`wangge up`) knows when every
accepted event is on the broker and the consumers can be drained.
"""

import logging
import math
import threading
import time
from collections.abc import Sequence
from contextlib import suppress
from dataclasses import dataclass
from typing import Final, Literal

from kafka import KafkaProducer
from kafka.errors import KafkaError, KafkaTimeoutError

import kafka_clients
from geodata.contract import Topics
from grid_service.errors import BrokerUnavailable

logger = logging.getLogger(__name__)

DEFAULT_ACK_TIMEOUT_S: Final = 5.0
"""How long a post waits for the broker's acknowledgement before it answers 503."""

DEFAULT_RETRY_AFTER_S: Final = 5
"""Retry-After of a 503 broker_unavailable: a few probes' time, not a flood of retries."""


class BrokerAway(BrokerUnavailable):
    """The broker did not acknowledge, or is known to be away; retry after `retry_after_s`."""

    def __init__(self, message: str, retry_after_s: int) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


class GatewayClosed(BrokerAway):
    """The service is stopping and takes no more events; retry after `retry_after_s`."""

    code = "stopping"


@dataclass(frozen=True, slots=True)
class OutgoingRecord:
    """One Kafka record to produce: topic, UTF-8 key, JSON value and headers."""

    topic: str
    key: bytes
    value: bytes
    headers: list[tuple[str, bytes]]


@dataclass(frozen=True, slots=True)
class RecordPosition:
    """Where the broker stored a record."""

    topic: str
    partition: int
    offset: int


ProducerState = Literal["idle", "ready", "away", "closed"]


@dataclass(frozen=True, slots=True)
class ProducerStatus:
    """What /healthz says of the producer: idle (not connected yet), ready, away, or closed
    (stopping: `in_flight` sends still waiting for the broker)."""

    state: ProducerState
    away_for_s: float | None = None
    reason: str | None = None
    retry_after_s: int | None = None
    in_flight: int = 0

    @property
    def ok(self) -> bool:
        """True unless the breaker is open or the gateway closed."""
        return self.state not in ("away", "closed")


@dataclass(slots=True)
class _Outage:
    since: float
    reason: str


def _discard(producer: KafkaProducer) -> None:
    """Close `producer` without waiting for its records (they are answered 503 already)."""
    try:
        producer.close(timeout=0)
        return
    except KafkaError:
        pass
    # close() flushes first and gives up while records are pending, leaving its I/O thread
    # running for good; stop that thread as close() would after a timeout, then close.
    sender = getattr(producer, "_sender", None)
    if sender is not None:
        sender.force_close()
        sender.join(5)
    with suppress(KafkaError):
        producer.close(timeout=0)


def _discard_in_background(producer: KafkaProducer) -> None:
    # Closing can block on the broker's socket; a request or the probe never waits for it.
    threading.Thread(
        target=_discard, args=(producer,), name="wangge-producer-discard", daemon=True
    ).start()


class EventProducer:
    """A KafkaProducer (acks=all, idempotent) shared by all requests, behind a breaker.

    Made on first use, so that the API starts, and answers 503, while the broker is down.
    """

    def __init__(
        self,
        bootstrap: str,
        *,
        topics: Topics | None = None,
        timeout_s: float = DEFAULT_ACK_TIMEOUT_S,
        connect_timeout_s: float = 2.0,
        retry_after_s: int = DEFAULT_RETRY_AFTER_S,
        probe_interval_s: float = 1.0,
    ) -> None:
        self.bootstrap = bootstrap
        self._kafka = kafka_clients.KafkaConfig(bootstrap)
        self.topics = topics or Topics()
        self.timeout_s = timeout_s
        self.connect_timeout_s = connect_timeout_s
        self.retry_after_s = retry_after_s
        self.probe_interval_s = probe_interval_s
        self._lock = threading.Lock()
        self._producer: KafkaProducer | None = None
        self._outage: _Outage | None = None
        self._closed = threading.Event()
        self._probe: threading.Thread | None = None
        self._gate_closed = False
        self._in_flight = 0
        # Its own lock: `_lock` may be held for a connection's time.
        self._in_flight_lock = threading.Lock()

    def _new_producer(self) -> KafkaProducer:
        ack_ms = int(self.timeout_s * 1000)
        connect_ms = int(self.connect_timeout_s * 1000)
        # See the module's docstring: the factory's producers never name a topic.
        return kafka_clients.producer(
            self._kafka,
            "gateway",
            acks="all",
            enable_idempotence=True,
            # A few ms of batching: a phone's batch of 500 goes out in a few requests,
            # while a single check-in waits only this long.
            linger_ms=5,
            # Metadata and buffer space: a broker that cannot give them this fast is away.
            max_block_ms=connect_ms,
            bootstrap_timeout_ms=connect_ms,
            request_timeout_ms=ack_ms,
            # Must cover linger + request timeout; the post stops waiting at timeout_s.
            delivery_timeout_ms=ack_ms + 1000,
            reconnect_backoff_max_ms=1000,
        )

    def _client(self) -> KafkaProducer:
        with self._lock:
            self._refuse_if_away()
            if self._producer is None:
                try:
                    self._producer = self._new_producer()
                except KafkaError as exc:
                    self._open(None, "cannot connect to the broker", exc)
                    raise self._refusal() from exc
            return self._producer

    def _refusal(self) -> BrokerAway:
        outage = self._outage
        reason = outage.reason if outage else "the broker is unavailable"
        return BrokerAway(reason, self.retry_after_s)

    def _refuse_if_away(self) -> None:
        if self._outage is not None:
            raise self._refusal()

    def _open(self, failed: KafkaProducer | None, reason: str, exc: BaseException) -> None:
        """Open the breaker (under the lock): discard `failed`, start the probe."""
        if failed is not None:
            if failed is not self._producer:
                return  # already replaced: its failure says nothing of the broker now
            self._producer = None
            _discard_in_background(failed)
        if self._outage is not None or self._closed.is_set():
            return
        logger.warning("broker unavailable (%s): %r; answering 503 until it is back", reason, exc)
        self._outage = _Outage(time.monotonic(), reason)
        self._probe = threading.Thread(target=self._probe_until_back, name="wangge-broker-probe")
        self._probe.daemon = True
        self._probe.start()

    def _probe_until_back(self) -> None:
        """Build a new producer every probe interval until it sees the topics; then close."""
        while not self._closed.wait(self.probe_interval_s):
            candidate: KafkaProducer | None = None
            try:
                candidate = self._new_producer()
                for topic in (self.topics.checkins, self.topics.incidents):
                    try:
                        candidate.partitions_for(topic)
                    except KafkaTimeoutError:
                        raise _TopicMissing(topic) from None
            except (KafkaError, _TopicMissing) as exc:
                if candidate is not None:
                    _discard_in_background(candidate)
                with self._lock:
                    if self._outage is not None:
                        self._outage.reason = _reason(exc)
                continue
            with self._lock:
                if self._closed.is_set():
                    _discard_in_background(candidate)
                    return
                outage, self._outage = self._outage, None
                self._producer = candidate
            away = time.monotonic() - outage.since if outage else 0.0
            logger.warning("broker back after %.1f s: accepting posts again", away)
            return

    def close_gate(self) -> None:
        """Refuse every later send (GatewayClosed); sends under way finish. Signal-safe:
        it only sets a flag."""
        self._gate_closed = True

    def send_all(self, records: Sequence[OutgoingRecord]) -> list[RecordPosition]:
        """Produce `records` and wait until the broker acknowledged each (blocking).

        BrokerAway at once while the breaker is open, or when the broker does not
        acknowledge within `timeout_s`; GatewayClosed once the gate is closed.
        """
        with self._in_flight_lock:
            if self._gate_closed:
                raise GatewayClosed("the service is stopping", self.retry_after_s)
            self._in_flight += 1
        try:
            return self._send_all(records)
        finally:
            with self._in_flight_lock:
                self._in_flight -= 1

    def _send_all(self, records: Sequence[OutgoingRecord]) -> list[RecordPosition]:
        deadline = time.monotonic() + self.timeout_s
        client = self._client()
        try:
            futures = [
                client.send(r.topic, key=r.key, value=r.value, headers=r.headers) for r in records
            ]
            metadata = [f.get(timeout=max(0.0, deadline - time.monotonic())) for f in futures]
        except KafkaError as exc:
            # Some records may already be stored: a retry of the same events is safe, since
            # event_id is the consumers' idempotency key.
            with self._lock:
                self._open(client, "the broker did not acknowledge in time", exc)
                refusal = self._refusal()
            raise refusal from exc
        return [RecordPosition(m.topic, m.partition, m.offset) for m in metadata]

    def status(self) -> ProducerStatus:
        """The breaker's state, read without any I/O or lock.

        No lock: a request may hold it while it connects, and /healthz must not wait.
        """
        if self._gate_closed:
            return ProducerStatus(
                "closed",
                reason="the service is stopping",
                retry_after_s=self.retry_after_s,
                in_flight=self._in_flight,
            )
        outage, producer = self._outage, self._producer
        if outage is not None:
            return ProducerStatus(
                "away",
                away_for_s=round(time.monotonic() - outage.since, 1),
                reason=outage.reason,
                retry_after_s=self.retry_after_s,
            )
        return ProducerStatus("ready" if producer is not None else "idle")

    def close(self, timeout_s: float = 5.0) -> None:
        """Stop the probe, deliver what is buffered and close the connection."""
        self._closed.set()
        with self._lock:
            producer, self._producer = self._producer, None
            probe = self._probe
        if probe is not None:
            probe.join(timeout=self.connect_timeout_s * 3)
        if producer is not None:
            try:
                producer.close(timeout=timeout_s)
            except KafkaError:
                _discard(producer)


class _TopicMissing(Exception):
    def __init__(self, topic: str) -> None:
        super().__init__(topic)
        self.topic = topic


def _reason(exc: BaseException) -> str:
    if isinstance(exc, _TopicMissing):
        return f"the topic {exc.topic} is missing on the broker"
    return "cannot connect to the broker"


def retry_after_header(exc: BrokerUnavailable) -> str:
    """The Retry-After of a 503 broker_unavailable, in whole seconds."""
    seconds = getattr(exc, "retry_after_s", DEFAULT_RETRY_AFTER_S)
    return str(max(1, math.ceil(seconds)))


def create_producer(
    bootstrap: str, *, topics: Topics | None = None, timeout_s: float = DEFAULT_ACK_TIMEOUT_S
) -> EventProducer:
    """The app's producer; cheap: it connects on first use."""
    return EventProducer(bootstrap, topics=topics, timeout_s=timeout_s)
