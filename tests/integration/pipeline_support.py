"""Helpers for pipeline tests: producing, reading topics back, running consumer processes."""

import json
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import httpx
import psycopg
from kafka import KafkaConsumer, KafkaProducer, TopicPartition

from geodata.contract import Topics

SHANGHAI = ZoneInfo("Asia/Shanghai")
WEEK_START = datetime(2020, 9, 7, 8, 0, tzinfo=SHANGHAI)  # Monday of 2020-W37


def free_port() -> int:
    """A TCP port nobody listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_until(
    predicate: Callable[[], bool], timeout: float, message: str, every: float = 0.2
) -> None:
    """Poll `predicate` every `every` seconds until it holds, or fail with `message`."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(every)
    raise AssertionError(f"timed out after {timeout}s: {message}")


def produce(
    bootstrap: str,
    topic: str,
    messages: Iterable[tuple[bytes | None, bytes]],
) -> int:
    """Produce (key, value) pairs with acks=all; return how many."""
    producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=5)
    count = 0
    try:
        for key, value in messages:
            producer.send(topic, key=key, value=value)
            count += 1
        producer.flush(timeout=60)
    finally:
        producer.close()
    return count


def checkin_message(event: dict[str, object]) -> tuple[bytes, bytes]:
    """A check-in as a phone would send it: keyed by worker id, JSON value."""
    return str(event["worker_id"]).encode(), json.dumps(event).encode()


def read_topic(bootstrap: str, topic: str, timeout: float = 30.0) -> list[object]:
    """Every record currently in a topic (all partitions, from the beginning)."""
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    try:
        partitions = consumer.partitions_for_topic(topic) or set()
        tps = [TopicPartition(topic, p) for p in sorted(partitions)]
        consumer.assign(tps)
        consumer.seek_to_beginning(*tps)
        end = consumer.end_offsets(tps)
        records: list[object] = []
        deadline = time.monotonic() + timeout
        while any(consumer.position(tp) < end[tp] for tp in tps):
            if time.monotonic() > deadline:
                raise AssertionError(f"could not read {topic} to its end")
            for batch in consumer.poll(timeout_ms=500).values():
                records.extend(batch)
        return records
    finally:
        consumer.close()


@dataclass
class Placement:
    """A worker with a point inside the grid they are assigned to."""

    worker_id: str
    grid_code: str
    lon: float
    lat: float


def placements(database_url: str, per_grid: int = 1, seed: int = 1) -> list[Placement]:
    """Random points inside each grid, with one of its workers."""
    with psycopg.connect(database_url) as conn:
        rows = conn.execute(
            """
            SELECT a.worker_id, g.code, ST_X(p.geom), ST_Y(p.geom)
            FROM grids g
            JOIN LATERAL (SELECT worker_id FROM worker_assignments wa
                          WHERE wa.grid_code = g.code ORDER BY worker_id LIMIT 1) a ON true
            CROSS JOIN LATERAL ST_Dump(ST_GeneratePoints(g.geom, %s, %s)) p
            WHERE g.valid_to IS NULL
            ORDER BY g.code
            """,
            (per_grid, seed),
        ).fetchall()
    return [Placement(str(w), str(c), float(x), float(y)) for w, c, x, y in rows]


def keep_assigned_only(database_url: str, workers: Iterable[str]) -> None:
    """Unassign every worker but `workers`, so that the compliance stage's re-evaluation of
    everyone assigned at each day boundary stays small."""
    with psycopg.connect(database_url) as conn:
        conn.execute("DELETE FROM worker_assignments WHERE worker_id <> ALL(%s)", (list(workers),))


def checkin_event(
    worker_id: str, lon: float, lat: float, minutes: float, **extra: object
) -> dict[str, object]:
    """A valid check-in during 2020-W37."""
    return {
        "event_id": str(uuid.uuid4()),
        "worker_id": worker_id,
        "lon": lon,
        "lat": lat,
        "recorded_at": (WEEK_START + timedelta(minutes=minutes)).isoformat(),
        "accuracy_m": 8.0,
        **extra,
    }


class ConsumerProcess:
    """A `wangge consume` process of one group, as a user would run it."""

    def __init__(
        self,
        database_url: str,
        bootstrap: str,
        topics: Topics,
        group: str,
        log_dir: Path,
        names: tuple[str, ...] = (),
        metrics_port: int | None = None,
    ) -> None:
        self.metrics_port = metrics_port
        namespace = topics.checkins.removesuffix("grid.checkins.v1")
        self.env = {
            **os.environ,
            "WANGGE_DATABASE_URL": database_url,
            "WANGGE_KAFKA_BOOTSTRAP": bootstrap,
            "WANGGE_TOPIC_NAMESPACE": namespace,
        }
        self.args = [sys.executable, "-m", "wangge", "consume", *names, "--group", group]
        if metrics_port is not None:
            self.args += ["--metrics-port", str(metrics_port)]
        self.log_path = log_dir / f"consumer-{uuid.uuid4().hex[:6]}.log"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> "ConsumerProcess":
        """Start the process (logs go to a file for post-mortems)."""
        log = self.log_path.open("ab")
        self.process = subprocess.Popen(self.args, env=self.env, stdout=log, stderr=log)
        return self

    def kill(self) -> None:
        """SIGKILL: no chance to finish the batch or commit."""
        if self.process and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(timeout=10)

    def stop(self) -> int:
        """SIGTERM: finish the batch, commit, leave the group."""
        assert self.process is not None
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        return int(self.process.returncode)

    def alive(self) -> bool:
        """Whether the process still runs."""
        return self.process is not None and self.process.poll() is None

    def metric(self, name: str, labels: str = "") -> float:
        """The sum of a metric's samples whose label text contains `labels`."""
        text = httpx.get(f"http://127.0.0.1:{self.metrics_port}/metrics", timeout=5).text
        total = 0.0
        for line in text.splitlines():
            if line.startswith(name) and labels in line and not line.startswith("#"):
                total += float(line.rsplit(" ", 1)[1])
        return total

    def log(self) -> str:
        """What the process printed."""
        return self.log_path.read_text(errors="replace")


@contextmanager
def running(*processes: ConsumerProcess) -> Iterator[list[ConsumerProcess]]:
    """Start the processes; stop them (SIGTERM) whatever happens."""
    started = [p.start() for p in processes]
    try:
        yield started
    finally:
        for p in started:
            if p.alive():
                p.stop()


def count_rows(database_url: str, sql: str) -> int:
    """A scalar count from the database."""
    with psycopg.connect(database_url) as conn:
        row = conn.execute(sql).fetchone()
        return int(row[0]) if row else 0
