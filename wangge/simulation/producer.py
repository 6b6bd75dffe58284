"""The simulator's producer: paces a simulated week's messages onto the topics, like phones.

Thin on purpose: what to send and when is decided by the pure modules beside it; this
only maps simulated send times to the wall clock (`speed`× real time, or as fast as the
broker takes it), caps the rate, and produces with a plain kafka-python producer, keyed
as the contract says (check-ins by worker id, incidents by incident id), with the
contract's CloudEvents headers.
"""

import logging
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime
from typing import Final

import numpy as np
import numpy.typing as npt

import kafka_clients
from geodata.contract import CHECKINS_TOPIC, INCIDENTS_TOPIC, Topics
from geodata.events import CE_TYPES, cloudevent_headers
from wangge.simulation.incidents import Message
from wangge.simulation.week import Progress, SimulatedWeek

logger = logging.getLogger(__name__)

CE_SOURCE: Final = "wangge/simulator"
# Long waits (a live week) are slept in slices, so that progress and Ctrl-C stay prompt.
_SLEEP_SLICE_S: Final = 0.5
_PROGRESS_EVERY_S: Final = 0.2


@dataclass(frozen=True)
class Pacing:
    """How fast simulated time runs: `speed`× real time (None: as fast as possible)."""

    speed: float | None = None
    #: At most this many messages a second (None: no cap).
    rate: float | None = None
    #: The simulated instant (epoch s) that maps to the start; None: the first message's.
    #: Live mode passes "now", so what is already due goes at once and the rest on time;
    #: a replay, a moment before its first check-in, so its first walk moves at once.
    anchor_s: float | None = None
    #: A longer silence between two messages (simulated seconds) is cut to this, so a
    #: replay's nights, when nobody walks, pass in seconds (None: every gap in full; live).
    max_idle_s: float | None = None

    def __post_init__(self) -> None:
        if self.speed is not None and self.speed <= 0:
            raise ValueError("speed must be positive")
        if self.rate is not None and self.rate <= 0:
            raise ValueError("rate must be positive")
        if self.max_idle_s is not None and self.max_idle_s < 0:
            raise ValueError("max_idle_s must not be negative")


def replay_timeline(
    send_s: npt.NDArray[np.float64], origin: float, max_idle_s: float | None
) -> npt.NDArray[np.float64]:
    """Simulated seconds after `origin` at which each message (sorted by send time) goes:
    those due before `origin` at once, and every later silence longer than `max_idle_s`
    cut to it (None: none cut).

    Event times are not touched, only when the messages are sent: a replay's nights, when
    nobody walks, pass in a few seconds of real time.
    """
    elapsed = np.maximum(np.asarray(send_s, dtype=np.float64) - origin, 0.0)
    if max_idle_s is None or len(elapsed) == 0:
        return elapsed
    gaps = np.diff(elapsed, prepend=0.0)
    return np.cumsum(np.minimum(gaps, max_idle_s))


@dataclass
class ProduceStats:
    """What was produced, and when (wall clock, epoch seconds)."""

    produced: Counter[str] = field(default_factory=Counter)
    first_at: float | None = None
    last_at: float | None = None
    failed: int = 0
    interrupted: bool = False

    @property
    def total(self) -> int:
        """Messages produced."""
        return sum(self.produced.values())

    @property
    def seconds(self) -> float:
        """From the first message sent to the broker's acknowledgement of the last."""
        if self.first_at is None or self.last_at is None:
            return 0.0
        return self.last_at - self.first_at


def message_headers(message: Message, ce_type: str) -> list[tuple[str, bytes]]:
    """The contract's CloudEvents headers of one message; ce_time is its event time as sent."""
    # Already RFC 3339: parsing it back into a datetime to format it again costs ~5 µs.
    return cloudevent_headers(
        event_id=message.event_id, ce_type=ce_type, source=CE_SOURCE, time=message.event_time
    )


def _sleep_until(due: float) -> None:
    while (left := due - time.monotonic()) > 0:
        time.sleep(min(left, _SLEEP_SLICE_S))


def produce_week(
    simulated: SimulatedWeek,
    bootstrap: str,
    topics: Topics,
    pacing: Pacing,
    progress: Progress | None = None,
) -> ProduceStats:
    """Produce every message of the week in sending order; Ctrl-C stops after a flush."""
    notify = progress or (lambda _step, _done, _total: None)
    topic_of = {"checkins": topics.checkins, "incidents": topics.incidents}
    ce_type_of = {"checkins": CE_TYPES[CHECKINS_TOPIC], "incidents": CE_TYPES[INCIDENTS_TOPIC]}
    stats = ProduceStats()
    total = len(simulated)
    producer = kafka_clients.producer(
        kafka_clients.KafkaConfig(bootstrap),
        "simulator",
        acks="all",
        linger_ms=20,
        batch_size=512 * 1024,
    )

    def failed(exc: BaseException) -> None:
        stats.failed += 1
        logger.warning("a message was not produced: %s", exc)

    started = time.monotonic()
    origin = (
        pacing.anchor_s
        if pacing.anchor_s is not None
        else float(simulated.send_s[0] if total else 0)
    )
    timeline = replay_timeline(simulated.send_s, origin, pacing.max_idle_s)
    sent = 0
    shown = 0.0
    try:
        for batch in simulated.batches():
            for message in batch:
                due = started
                if pacing.speed is not None:
                    due += float(timeline[sent]) / pacing.speed
                if pacing.rate is not None:
                    due = max(due, started + sent / pacing.rate)
                if due > time.monotonic():
                    _sleep_until(due)
                producer.send(
                    topic_of[message.stream],
                    key=message.key,
                    value=message.value,
                    headers=message_headers(message, ce_type_of[message.stream]),
                ).add_errback(failed)
                if stats.first_at is None:
                    stats.first_at = time.time()
                stats.produced[message.stream] += 1
                sent += 1
                if time.monotonic() - shown > _PROGRESS_EVERY_S:
                    shown = time.monotonic()
                    at = datetime.fromtimestamp(message.send_s, simulated.truth.as_of.tzinfo)
                    notify(f"Producing · {at:%a %d %b %H:%M}", sent, total)
    except KeyboardInterrupt:
        stats.interrupted = True
    finally:
        producer.flush()
        stats.last_at = time.time()
        producer.close()
    notify("Produced", sent, total)
    return stats
