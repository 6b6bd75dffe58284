"""The compliance benchmark's latency: a check-in's arrival to its status being readable.

Fresh check-ins go out at a steady rate while the consumers run; a sampler notes when
each is first readable. Part of `wangge.benchmarks.compliance`.
"""

import statistics
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime

import numpy as np
import psycopg

import kafka_clients
from wangge.benchmarks.compliance_week import WeekPlan
from wangge.benchmarks.harness import scalar

WARMUP_EVENTS = 200
#: Every how many steady check-ins one is timed. The sampler asks PostgreSQL for each
#: pending id every poll, so timing every one cost the database rate × latency probes per
#: poll: at 8,000/s and a second behind, some 8,000 probes fifty times a second, on the
#: cores the stages under test need. One in ten still gives thousands of samples a step.
TIME_EVERY = 10
SAMPLE_POLL_S = 0.02
JOIN_TIMEOUT_S = 120.0


def unpublished(conn: psycopg.Connection) -> int:
    return scalar(conn, "SELECT count(*) FROM compliance_changes WHERE published_at IS NULL")


class _Sampler(threading.Thread):
    """Notes when each expected check-in is first readable in `patrol_checkins`.

    The row commits in the same transaction as the patrols and status it changes, so its
    visibility is the status's. Each poll asks for the ids still pending (the timed ones
    in flight: rate × latency / TIME_EVERY, some 800 at 8,000/s a second behind); a row
    first seen by a poll became visible since the previous one began.
    The poll names the pending check-ins' earliest and latest times as constants, so it
    probes their weeks' partitions only: without them it probed every week's key, and
    after a year (`wangge bench history`) a poll of 1,000 ids took 121 ms, not 17.
    """

    def __init__(self, url: str) -> None:
        super().__init__(daemon=True)
        self.url = url
        self.seen: dict[uuid.UUID, float] = {}
        self.periods: list[float] = []
        self.done = threading.Event()
        self._pending: dict[uuid.UUID, datetime] = {}
        self._lock = threading.Lock()

    def expect(self, event_id: uuid.UUID, recorded_at: datetime) -> None:
        """Watch for one more check-in, by its event id and time."""
        with self._lock:
            self._pending[event_id] = recorded_at

    def pending(self) -> int:
        """Ids not seen yet."""
        with self._lock:
            return len(self._pending)

    def run(self) -> None:
        """Poll every `SAMPLE_POLL_S` until told to stop."""
        with psycopg.connect(self.url, autocommit=True) as conn:
            # The probe is by primary key, but the week's partition is new: with no
            # statistics (none until an ANALYZE) the planner took a scan of the whole
            # partition, and the prepared statement kept that plan while the partition
            # grew: at 50 polls a second the sampler read 38 million rows in one step,
            # a PostgreSQL core taken from the stages it measures.
            conn.execute("SET enable_seqscan = off")
            last = time.perf_counter()
            while not self.done.is_set():
                with self._lock:
                    ids, times = list(self._pending), list(self._pending.values())
                began = time.perf_counter()
                self.periods.append(began - last)
                last = began
                if ids:
                    rows = conn.execute(
                        "SELECT event_id FROM patrol_checkins WHERE event_id = ANY(%s)"
                        " AND recorded_at >= %s AND recorded_at <= %s",
                        (ids, min(times), max(times)),
                        prepare=True,
                    ).fetchall()
                    with self._lock:
                        for (event_id,) in rows:
                            self._pending.pop(event_id, None)
                            self.seen[event_id] = began
                time.sleep(max(0.0, SAMPLE_POLL_S - (time.perf_counter() - began)))


@dataclass(frozen=True)
class Latency:
    """Arrival → readable status at a steady rate, in ms; the rate held; the resolution."""

    p50_ms: float
    p99_ms: float
    max_ms: float
    events: int
    rate: float
    resolution_ms: float
    # Medians of the first and last fifth: a rise means the consumers fell behind the rate.
    first_p50_ms: float
    last_p50_ms: float


def _recorded_at(plan: WeekPlan, i: int) -> datetime:
    """The event time of the plan's `i`th check-in (whole seconds, as sent)."""
    return datetime.fromtimestamp(int(plan.at_s[i]), UTC)


def measure_latency(
    url: str,
    bootstrap: str,
    topic: str,
    plan: WeekPlan,
    rate: float,
    seconds: float,
    *,
    assignments: bool = False,
) -> Latency:
    """Produce `plan`'s first fixes at `rate` per second while the consumers run: as
    phones send them to `topic` (the check-ins topic), or with `assignments` as the
    storage stage passes them on (`topic` is then the assignments topic)."""
    count = min(len(plan), WARMUP_EVENTS + int(rate * seconds))
    made = plan.assignments(0, count) if assignments else plan.messages(0, count)
    messages = list(made)
    sampler = _Sampler(url)
    sampler.start()
    # The gateway's own batching (grid_service/producer.py), and less than the storage
    # stage's (a batch's assignments at once). At 8,000/s a 1 ms linger cost the load
    # generator 0.84 cores and the broker 0.32, 5 ms 0.56 and 0.12: cores the stages under
    # test share. A record may wait those 5 ms before it leaves; its time counts from send.
    producer = kafka_clients.producer(
        kafka_clients.KafkaConfig(bootstrap), "bench", acks="all", linger_ms=5
    )
    try:
        # The first fixes cross midnight into a new week, which re-evaluates every worker:
        # a one-off, kept out of the steady state.
        for i, (key, value) in enumerate(messages[:WARMUP_EVENTS]):
            sampler.expect(plan.event_id(i), _recorded_at(plan, i))
            producer.send(topic, key=key, value=value)
        producer.flush(timeout=60)
        _wait_for(lambda: sampler.pending() == 0, "the warm-up check-ins")
        with psycopg.connect(url, autocommit=True) as conn:
            _wait_for(lambda: unpublished(conn) == 0, "the warm-up's outbox")
        timed: list[tuple[uuid.UUID, float]] = []
        began = last = time.perf_counter()
        for k, (key, value) in enumerate(messages[WARMUP_EVENTS:]):
            delay = began + k / rate - time.perf_counter()
            if delay > 0:
                time.sleep(delay)
            last = time.perf_counter()
            if k % TIME_EVERY == 0:
                event_id = plan.event_id(WARMUP_EVENTS + k)
                sampler.expect(event_id, _recorded_at(plan, WARMUP_EVENTS + k))
                timed.append((event_id, last))
            producer.send(topic, key=key, value=value)
        producer.flush(timeout=60)
        sent = len(messages) - WARMUP_EVENTS
        _wait_for(lambda: sampler.pending() == 0, "the steady check-ins")
    finally:
        sampler.done.set()
        sampler.join()
        producer.close()
    latencies = [max(0.0, sampler.seen[e] - t) * 1000 for e, t in timed]
    p50, p99 = np.percentile(latencies, [50, 99])
    fifth = max(1, len(latencies) // 5)
    return Latency(
        p50_ms=float(p50),
        p99_ms=float(p99),
        max_ms=max(latencies),
        events=sent,
        rate=(sent - 1) / max(last - began, 1e-9) if sent > 1 else 0.0,
        resolution_ms=statistics.median(sampler.periods[1:] or [0.0]) * 1000,
        first_p50_ms=statistics.median(latencies[:fifth]),
        last_p50_ms=statistics.median(latencies[-fifth:]),
    )


def _wait_for(done: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + JOIN_TIMEOUT_S
    while not done():
        if time.monotonic() > deadline:
            raise RuntimeError(f"timed out waiting for {what}")
        time.sleep(0.05)


def weeks_later(plan: WeekPlan, weeks: int, seed: int) -> WeekPlan:
    """The same walks `weeks` weeks later, as new events."""
    fresh = np.random.default_rng(seed).bytes(16 * len(plan))
    return replace(plan, at_s=plan.at_s + weeks * 7 * 86_400, ids=fresh)


@dataclass(frozen=True)
class SustainedRate:
    """The highest rate held with p99 within the target, as a share of a base rate."""

    base_rate: float
    ratio: float  # 0 when even the lowest step missed
    rate: float
    steps: list[tuple[float, Latency | None]]  # (share tried, latency; None: never drained)


def highest_sustained_rate(
    url: str,
    bootstrap: str,
    topic: str,
    plan: WeekPlan,
    base_rate: float,
    seconds: float,
    target_p99_ms: float,
    shares: tuple[float, ...] = (0.25, 0.5, 0.75, 1.0),
    first_week: int = 2,
    *,
    assignments: bool = False,
) -> SustainedRate:
    """Try `shares` of `base_rate` in order, each on a fresh week of `plan`'s walks, until
    one misses p99 <= `target_p99_ms`; the last share that held it. With `assignments`,
    the compliance stage alone is fed (see `measure_latency`)."""
    best = SustainedRate(base_rate, 0.0, 0.0, [])
    for k, share in enumerate(shares):
        week = weeks_later(plan, first_week + k, seed=1000 + k)
        try:
            latency: Latency | None = measure_latency(
                url, bootstrap, topic, week, share * base_rate, seconds, assignments=assignments
            )
        except RuntimeError:  # fell so far behind that it did not drain in time
            latency = None
        best.steps.append((share, latency))
        if latency is None or latency.p99_ms > target_p99_ms:
            break
        best = replace(best, ratio=share, rate=latency.rate)
    return best
