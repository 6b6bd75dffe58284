"""How fast check-ins go from Kafka into PostGIS, against a bare consumer of the same topic.

One run, on one machine, with the broker and PostGIS on it too: a fresh topic namespace
and fresh database copies, so nothing is shared with other runs. `wangge consume` runs
as production runs it, in its own process(es); this process only produces, watches the
offsets committed with the rows, and checks that every event was stored exactly once.
"""

import argparse
import json
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

import numpy as np
import numpy.typing as npt
import psycopg
from kafka import TopicPartition
from kafka.record.util import crc32c_c
from rich.console import Console

import kafka_clients
from event_consumers.runner import RunnerConfig
from geodata.contract import Topics
from geodata.crs import wgs84_to_gcj02
from geodata.dataset.layers import LOCAL_TZ
from geodata.db.engine import create_db_engine
from wangge import services
from wangge.benchmarks.harness import (
    PARTITIONS,
    REFERENCE_SEED,
    DatabaseServer,
    Progress,
    committed,
    consumer_processes,
    database_of,
    describe_machine,
    render_table,
)
from wangge.benchmarks.locate import run_locate_benchmark
from wangge.benchmarks.rows import BenchmarkRow, add_json_option, write_rows

Messages = list[tuple[bytes, bytes]]

SEED = REFERENCE_SEED
# Event times fall in 2020-W37, when every reference grid and assignment is valid.
WEEK_START = datetime(2020, 9, 7, 8, 0, tzinfo=LOCAL_TZ)
GCJ02_SHARE = 0.1  # phones whose map SDK reports GCJ-02
LOW_ACCURACY_SHARE = 0.01
RESEND_EVERY = 100  # a phone retry: the same event sent twice, stored once
TARGET_RATE, TARGET_RATIO, TARGET_SPEEDUP, TARGET_P99_MS = 15_000.0, 0.5, 30.0, 500.0
TIMEOUT_S = 600.0
# Watching the committed offsets this often bounds the latency's measurement error.
LATENCY_POLL_S = 0.005
LATENCY_WARMUP = 200


@dataclass(frozen=True)
class Drain:
    """Records drained at a steady state (after the first seen, until the last)."""

    records: int
    seconds: float
    startup_s: float

    @property
    def rate(self) -> float:
        """Records per second."""
        return self.records / self.seconds


def run_pipeline_benchmark(
    database_url: str,
    bootstrap: str,
    events: int = 200_000,
    progress: Progress | None = None,
    *,
    reference_database_url: str | None = None,
    process_counts: tuple[int, ...] = (1, 2),
    latency_rate: float = 1000.0,
    latency_seconds: float = 20.0,
) -> list[BenchmarkRow]:
    """Measure the pipeline against a bare consumer, the index against PostGIS, and latency.

    Databases are made on the server of `database_url` and dropped afterwards; the
    reference dataset is generated there unless `reference_database_url` names a database
    holding it (used as a template, so nothing may be connected to it).
    """
    notify: Progress = progress or (lambda _stage, _done, _total: None)
    server = DatabaseServer(database_url)
    topics = Topics.under(f"bench{uuid.uuid4().hex[:8]}.")
    services.ensure_topics(bootstrap, PARTITIONS, topics)
    try:
        template = database_of(reference_database_url) if reference_database_url else None
        if template is None:
            notify("Generating the reference dataset", 0, 1)
            template = server.build_reference()
        notify("Producing check-ins", 0, events)
        messages = realistic_checkins(server.url_of(template), events)
        produce_all(bootstrap, topics.checkins, messages)
        distinct = len({value for _key, value in messages})

        notify("(a) bare kafka-python consumer", 0, 1)
        bare = bare_drain(bootstrap, topics.checkins, len(messages))
        rows = []
        if crc32c_c is not None:
            notify("(a') the same without the C CRC-32C", 0, 1)
            pure = bare_drain_pure_crc(bootstrap, topics.checkins, len(messages))
            rows.append(
                BenchmarkRow(
                    "(a') bare consumer, kafka-python's pure-Python CRC-32C", pure.rate,
                    "events/s", bare.rate, "(a), with the crc32c C extension",
                    pure.rate / bare.rate, "context", None,
                    "(a) without the crc32c package: checking CRCs in Python is most of it",
                )
            )  # fmt: skip
        with tempfile.TemporaryDirectory(prefix="wangge-bench-") as folder:
            logs = Path(folder)
            for count in process_counts:
                notify(f"(b) {count} consumer process(es)", 0, 1)
                url = server.copy(template)
                before = _topic_size(bootstrap, topics.assignments)
                ours = consumer_drain(url, bootstrap, topics, len(messages), count, logs)
                republished = _topic_size(bootstrap, topics.assignments) - before
                stored = _count_rows(url)
                if not stored == republished == distinct:
                    raise AssertionError(f"{distinct} events: {stored} rows, {republished} sent")
                ratio = ours.rate / bare.rate
                rows.append(
                    BenchmarkRow(
                        f"(b) check-ins into PostGIS, {count} consumer process(es)", ours.rate,
                        "events/s", bare.rate, "(a) bare kafka-python consumer", ratio,
                        f"b ≥ {TARGET_RATE:,.0f}/s, b/a ≥ {TARGET_RATIO}",
                        ours.rate >= TARGET_RATE and ratio >= TARGET_RATIO,
                        f"{len(messages):,} records, {distinct:,} distinct; startup"
                        f" (b) {ours.startup_s:.1f} s, (a) {bare.startup_s:.1f} s",
                        expected=distinct, stored=stored, republished=republished,
                    )
                )  # fmt: skip
            notify("Latency at a steady rate", 0, 1)
            url = server.copy(template)
            p50, p99, held = measure_latency(url, bootstrap, latency_rate, latency_seconds, logs)
        detail = f"1 consumer process, {held:,.0f} events/s produced (asked {latency_rate:,.0f})"
        rows += [
            BenchmarkRow("latency produce → committed row, p50", p50, "ms", None, "", None,
                         "—", None, detail),
            BenchmarkRow("latency produce → committed row, p99", p99, "ms", None, "", None,
                         f"p99 ≤ {TARGET_P99_MS:.0f} ms", p99 <= TARGET_P99_MS, detail),
        ]  # fmt: skip
        notify("Point location: index vs PostGIS", 0, 1)
        rows.append(_locate_row(server.copy(template)))
        notify("Done", 1, 1)
        return rows
    finally:
        server.drop_created()
        services.delete_topics(bootstrap, topics)


# --------------------------------------------------------------------------- the stream


def realistic_checkins(database_url: str, count: int) -> Messages:
    """Check-ins (key, value) at points inside grids, each posted by a worker of that grid.

    Every grid's workers take turns posting once a minute from random points of their
    grid (walking pace); some phones report GCJ-02, some fixes are poor, some are resent.
    """
    with psycopg.connect(database_url) as conn:
        grids = conn.execute(
            """
            SELECT w.workers, array_agg(ST_X(p.geom)), array_agg(ST_Y(p.geom))
            FROM grids g
            JOIN LATERAL (SELECT array_agg(worker_id ORDER BY worker_id) AS workers
                          FROM worker_assignments wa
                          WHERE wa.grid_code = g.code AND wa.valid_to IS NULL) w ON true
            CROSS JOIN LATERAL ST_Dump(ST_GeneratePoints(g.geom, %s, %s)) p
            WHERE g.valid_to IS NULL AND w.workers IS NOT NULL
            GROUP BY g.code, w.workers ORDER BY g.code
            """,
            (count // 1000 + 1, SEED),
        ).fetchall()
    rng = np.random.default_rng(SEED)
    messages: Messages = []
    i = 0
    while len(messages) < count:
        workers, lons, lats = grids[i % len(grids)]
        turn = i // len(grids)
        worker, lon, lat = (
            workers[turn % len(workers)],
            lons[turn % len(lons)],
            lats[turn % len(lats)],
        )
        poor = rng.random() < LOW_ACCURACY_SHARE
        event: dict[str, object] = {
            "event_id": str(uuid.UUID(bytes=rng.bytes(16), version=4)),
            "worker_id": worker,
            "lon": lon,
            "lat": lat,
            "recorded_at": (WEEK_START + timedelta(minutes=turn)).isoformat(),
            "accuracy_m": round(float(rng.uniform(150, 400) if poor else rng.uniform(3, 30)), 1),
        }  # fmt: skip
        if rng.random() < GCJ02_SHARE:
            gcj_lon, gcj_lat = wgs84_to_gcj02(lon, lat)
            event.update(lon=float(gcj_lon), lat=float(gcj_lat), crs="GCJ-02")
        messages.append((worker.encode(), json.dumps(event).encode()))
        if len(messages) % RESEND_EVERY == 0 and len(messages) < count:
            messages.append(messages[-1])
        i += 1
    return messages


def produce_all(bootstrap: str, topic: str, messages: Messages) -> None:
    """Produce every message with acks=all, as fast as the client goes."""
    producer = kafka_clients.producer(
        kafka_clients.KafkaConfig(bootstrap), "bench", acks="all", linger_ms=20
    )
    try:
        for key, value in messages:
            producer.send(topic, key=key, value=value)
        producer.flush(timeout=120)
    finally:
        producer.close()


def _count_rows(url: str) -> int:
    # The primary key on event_id makes each row a distinct event.
    with psycopg.connect(url) as conn:
        row = conn.execute("SELECT count(*) FROM checkins").fetchone()
    return int(row[0]) if row else 0


def _topic_size(bootstrap: str, topic: str) -> int:
    """Records in a topic: the sum of its partitions' end offsets."""
    consumer = kafka_clients.consumer(kafka_clients.KafkaConfig(bootstrap), "bench")
    try:
        tps = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic) or ()]
        return sum(consumer.end_offsets(tps).values())
    finally:
        consumer.close()


# --------------------------------------------------------------------------- draining


def _steady(started: float, before: float, after: float, seen: int, expected: int) -> Drain:
    """From the first records seen; a run drained in one go is timed over that one batch."""
    if seen < expected:
        return Drain(expected - seen, -after, after - started)  # seconds completed by caller
    return Drain(expected, -before, before - started)


def bare_drain(bootstrap: str, topic: str, expected: int) -> Drain:
    """(a): a kafka-python consumer with our fetch settings, only iterating the records."""
    config = RunnerConfig(bootstrap=bootstrap, database_url="")
    consumer = kafka_clients.consumer(
        kafka_clients.KafkaConfig(bootstrap),
        "bench",
        enable_auto_commit=False,
        **config.fetch_settings(),
    )
    try:
        tps = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic))]
        consumer.assign(tps)
        consumer.seek_to_beginning(*tps)
        started = time.perf_counter()
        seen, first = 0, None
        while seen < expected:
            before = time.perf_counter()
            for records in consumer.poll(timeout_ms=200).values():
                for _record in records:
                    seen += 1
            if first is None and seen:
                first = _steady(started, before, time.perf_counter(), seen, expected)
            if time.perf_counter() - started > TIMEOUT_S:
                raise TimeoutError(f"bare consumer read {seen} of {expected} records")
        assert first is not None
        return Drain(first.records, time.perf_counter() + first.seconds, first.startup_s)
    finally:
        consumer.close()


def bare_drain_pure_crc(bootstrap: str, topic: str, expected: int) -> Drain:
    """(a) in a process where kafka-python cannot import its C CRC-32C, so uses Python's."""
    code = (
        "import sys; sys.modules['crc32c'] = None\n"
        "from wangge.benchmarks.pipeline import bare_drain\n"
        f"d = bare_drain({bootstrap!r}, {topic!r}, {expected})\n"
        "print(d.records, d.seconds, d.startup_s)"
    )
    run = [sys.executable, "-c", code]
    done = subprocess.run(run, capture_output=True, text=True, check=True, timeout=TIMEOUT_S)
    records, seconds, startup_s = done.stdout.split()
    return Drain(int(records), float(seconds), float(startup_s))


def _wait_committed(
    url: str, group: str, topic: str, expected: int, processes: list[subprocess.Popen[bytes]]
) -> Drain:
    """Watch the committed offsets until `expected`; the steady state starts at the first."""
    with psycopg.connect(url, autocommit=True) as conn:
        started = before = time.perf_counter()
        first = None
        while True:
            done = committed(conn, group, topic)
            now = time.perf_counter()
            if done and first is None:
                first = _steady(started, before, now, done, expected)
            if first is not None and done >= expected:
                return Drain(first.records, now + first.seconds, first.startup_s)
            if any(p.poll() is not None for p in processes) or now - started > TIMEOUT_S:
                raise RuntimeError(f"consumers stopped at {done} of {expected} records")
            before = now
            time.sleep(0.02)


def consumer_drain(
    url: str, bootstrap: str, topics: Topics, expected: int, count: int, logs: Path
) -> Drain:
    """(b): `count` wangge consumer processes of a fresh group drain the topic into PostGIS."""
    group = f"bench-{uuid.uuid4().hex[:8]}"
    with consumer_processes(
        url, bootstrap, topics, group, count, logs, handlers=("checkins",)
    ) as processes:
        return _wait_committed(url, group, topics.checkins, expected, processes)


# --------------------------------------------------------------------------- latency


class _OffsetWatcher(threading.Thread):
    """Notes when each partition's committed offset moves, every few milliseconds."""

    def __init__(self, url: str, group: str, topic: str) -> None:
        super().__init__(daemon=True)
        self.url, self.group, self.topic = url, group, topic
        self.moves: dict[int, list[tuple[float, int]]] = {}
        self.total = 0
        self.done = threading.Event()

    def run(self) -> None:
        """Poll consumer_offsets; a move is timed after the query answered (never early)."""
        with psycopg.connect(self.url, autocommit=True) as conn:
            sql = "SELECT partition, next_offset FROM consumer_offsets WHERE consumer_group = %s"
            while not self.done.is_set():
                rows = conn.execute(sql + " AND topic = %s", (self.group, self.topic)).fetchall()
                seen_at = time.perf_counter()
                for partition, offset in rows:
                    moves = self.moves.setdefault(partition, [])
                    if not moves or moves[-1][1] != offset:
                        moves.append((seen_at, offset))
                self.total = sum(moves[-1][1] for moves in self.moves.values())
                time.sleep(LATENCY_POLL_S)

    def committed_at(self, partition: int, offset: int) -> float:
        """When the record at `offset` was first seen committed."""
        moves = self.moves[partition]
        return moves[int(np.searchsorted([o for _t, o in moves], offset, side="right"))][0]


def measure_latency(
    url: str, bootstrap: str, rate: float, seconds: float, logs: Path
) -> tuple[float, float, float]:
    """Produce→committed-row latency at a steady rate: p50 and p99 (ms), and the rate held."""
    sent_at, stored_at = steady_commit_times(url, bootstrap, rate, seconds, logs)
    p50, p99 = np.percentile((stored_at - sent_at) * 1000, [50, 99])
    return float(p50), float(p99), float(len(sent_at) / (sent_at[-1] - sent_at[0]))


def steady_commit_times(
    url: str, bootstrap: str, rate: float, seconds: float, logs: Path
) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]:
    """Produce at a steady rate into one intake consumer: when each record was sent, and
    when it was first seen committed (perf_counter seconds, in sending order).

    A record counts as committed when the offset stored with the rows passes it: the
    rows and offsets commit in one transaction. Both clocks are this process's.
    """
    topics = Topics.under(f"bench{uuid.uuid4().hex[:8]}.")
    services.ensure_topics(bootstrap, PARTITIONS, topics)
    messages = realistic_checkins(url, LATENCY_WARMUP + int(rate * seconds))
    group = f"bench-latency-{uuid.uuid4().hex[:8]}"
    watcher = _OffsetWatcher(url, group, topics.checkins)
    try:
        with consumer_processes(
            url, bootstrap, topics, group, 1, logs, handlers=("checkins",)
        ) as processes:
            # Joining the group and building the index happen before the measured events.
            produce_all(bootstrap, topics.checkins, messages[:LATENCY_WARMUP])
            _wait_committed(url, group, topics.checkins, LATENCY_WARMUP, processes)
            watcher.start()
            sent = _produce_steadily(bootstrap, topics.checkins, messages[LATENCY_WARMUP:], rate)
            deadline = time.monotonic() + 60
            while watcher.total < len(messages) and time.monotonic() < deadline:
                time.sleep(0.05)
        watcher.done.set()
        watcher.join()
        if watcher.total < len(messages):
            raise RuntimeError(f"only {watcher.total} of {len(messages)} records committed")
        sent_at = np.array([at for at, _p, _o in sent])
        stored_at = np.array([watcher.committed_at(p, o) for _at, p, o in sent])
        return sent_at, stored_at
    finally:
        watcher.done.set()
        services.delete_topics(bootstrap, topics)


def _produce_steadily(
    bootstrap: str, topic: str, messages: Messages, rate: float
) -> list[tuple[float, int, int]]:
    """Send each message at its due time; return (sent at, partition, offset) of each."""
    producer = kafka_clients.producer(
        kafka_clients.KafkaConfig(bootstrap), "bench", acks="all", linger_ms=5
    )
    try:
        futures = []
        started = time.perf_counter()
        for k, (key, value) in enumerate(messages):
            time.sleep(max(0.0, started + k / rate - time.perf_counter()))
            futures.append((time.perf_counter(), producer.send(topic, key=key, value=value)))
        producer.flush(timeout=60)
        sent = [(at, future.get(timeout=30)) for at, future in futures]
        return [(at, int(meta.partition), int(meta.offset)) for at, meta in sent]
    finally:
        producer.close()


# --------------------------------------------------------------------------- report


def _locate_row(url: str) -> BenchmarkRow:
    engine = create_db_engine(url)
    try:
        figures = run_locate_benchmark(engine)
    finally:
        engine.dispose()
    return BenchmarkRow(
        "point location: GridIndex.locate, one batch", figures["index_points_per_s"],
        "points/s", figures["postgis_points_per_s"], "PostGIS, one prepared query per point",
        figures["speedup"], f"≥ {TARGET_SPEEDUP:.0f}×", figures["speedup"] >= TARGET_SPEEDUP,
        f"{figures['index_points']:,.0f} vs {figures['postgis_points']:,.0f} points,"
        f" {figures['disagreements']:.0f} disagreements",
    )  # fmt: skip


def main() -> None:
    """`python -m wangge.benchmarks.pipeline [--events N]`: run on the configured services."""
    from wangge.settings import DatabaseSettings, KafkaSettings, LocalServicesSettings

    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--events", type=int, default=200_000)
    parser.add_argument("--latency-seconds", type=float, default=20.0)
    parser.add_argument("--processes", default="1,2", help="consumer process counts, e.g. 1,2")
    add_json_option(parser)
    args = parser.parse_args()
    console = Console()
    database, kafka = DatabaseSettings(), KafkaSettings()
    services.ensure_postgis(database, log=console.print)
    services.ensure_broker(kafka, LocalServicesSettings(), log=console.print)
    rows = run_pipeline_benchmark(
        database.url,
        kafka.bootstrap,
        args.events,
        progress=lambda stage, _done, _total: console.print(f"… {stage}"),
        process_counts=tuple(int(n) for n in args.processes.split(",")),
        latency_seconds=args.latency_seconds,
    )
    console.print(render_table(rows))
    for name, value in describe_machine(database.url).items():
        console.print(f"{name}: {value}")
    if args.json:
        write_rows(args.json, "pipeline", rows)


if __name__ == "__main__":
    main()
