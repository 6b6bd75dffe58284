"""How fast the compliance engine folds a simulated week of patrols, and how fast it reads.

One run on one machine (broker and PostGIS on it too), in a fresh database holding the
reference dataset and a fresh topic namespace. Every worker walks their grid a few times
in 2020-W37 with a fix every 30 s; the week is produced in time order, then `wangge
consume` (all three handlers, as production runs them) folds it in. Fresh check-ins at a
steady rate then give the time from a check-in's arrival to its status being readable,
and the city-wide compliance read is timed directly and over HTTP.
"""

import argparse
import contextlib
import math
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import numpy.typing as npt
import psycopg
import shapely
from kafka import KafkaProducer
from rich.console import Console

from event_consumers.app import COMPLIANCE_STAGE, stage_group_id
from event_consumers.publisher import Publisher
from event_consumers.records import OutboundRecord
from geodata.compliance import CheckinRecord, ComplianceConfig, IsoWeek, evaluate_week
from geodata.contract import Topics
from geodata.dataset.layers import LOCAL_TZ
from geodata.db.compliance_store import CLOCK_NAME
from geodata.staffing import AssignmentPeriod
from wangge import services
from wangge.benchmarks.pipeline import (
    BenchmarkRow,
    Progress,
    describe_machine,
    load_reference_dataset,
    render_table,
    stop_gracefully,
)

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]

WEEK = IsoWeek(2020, 37)
SEED = 37
PARTITIONS = 6
LAZY_SHARE = 0.10
WALKS = (3, 5)  # per week on different days; lazy workers 0 to 2
WALK_MINUTES = (40, 90)
FIRST_START_H, LAST_START_H = 7, 19  # every walk ends on the local day it began
SPEED_M_S = (0.8, 1.4)
ACCURACY_M = (5.0, 15.0)
WAYPOINTS = 8
INSET_DEG = 1e-5
M_PER_DEG_LAT = 110_574.0
M_PER_DEG_LON = 111_320.0  # at the equator; times cos(latitude)
TARGET_P99_MS = 1000.0
TARGET_QUERY_MS = 100.0
WARMUP_EVENTS = 200
PRODUCE_CHUNK = 50_000
DRAIN_POLL_S = 0.25
SAMPLE_POLL_S = 0.02
JOIN_TIMEOUT_S = 120.0


# --------------------------------------------------------------------------- the week


@dataclass(frozen=True)
class WeekPlan:
    """Every fix of a simulated week, column by column, in recorded-time order."""

    pairs: list[tuple[str, str]]  # (worker_id, grid_code) of each worker index
    walks: int
    lazy: int
    worker: IntArray
    at_s: IntArray  # epoch seconds
    lon: FloatArray
    lat: FloatArray
    accuracy: FloatArray
    ids: bytes  # 16 random bytes per fix: its event id

    def __len__(self) -> int:
        return len(self.at_s)

    def event_id(self, i: int) -> uuid.UUID:
        """The event id of fix `i`."""
        return uuid.UUID(bytes=self.ids[16 * i : 16 * i + 16], version=4)

    def messages(self, start: int = 0, stop: int | None = None) -> Iterator[tuple[bytes, bytes]]:
        """Fixes `start:stop` as phones send them: keyed by worker id, JSON value."""
        span = slice(start, stop)
        # Local time has no DST in China, so one offset serves the whole week; formatting
        # the columns at once keeps a million events at seconds, not a minute.
        offset = WEEK.start(LOCAL_TZ).utcoffset() or timedelta(0)
        local = (self.at_s[span] + int(offset.total_seconds())).astype("datetime64[s]")
        suffix = f"{offset.total_seconds() / 3600:+03.0f}:00"
        columns = zip(
            self.worker[span].tolist(),
            np.datetime_as_string(local).tolist(),
            np.char.mod("%.7f", self.lon[span]).tolist(),
            np.char.mod("%.7f", self.lat[span]).tolist(),
            np.char.mod("%.1f", self.accuracy[span]).tolist(),
            strict=True,
        )
        for i, (worker, at, lon, lat, accuracy) in enumerate(columns, start=start):
            worker_id = self.pairs[worker][0]
            value = (
                f'{{"event_id":"{self.event_id(i)}","worker_id":"{worker_id}","lon":{lon},'
                f'"lat":{lat},"recorded_at":"{at}{suffix}","accuracy_m":{accuracy}}}'
            )
            yield worker_id.encode(), value.encode()

    def records_of(self, index: int) -> list[CheckinRecord]:
        """Worker `index`'s fixes as the patrol rule reads them, in their own grid."""
        worker_id, grid_code = self.pairs[index]
        return [
            CheckinRecord(
                self.event_id(int(i)),
                worker_id,
                grid_code,
                datetime.fromtimestamp(int(self.at_s[i]), LOCAL_TZ),
                float(self.accuracy[i]),
            )
            for i in np.flatnonzero(self.worker == index)
        ]

    def a_week_later(self, seed: int) -> "WeekPlan":
        """The same walks seven days later, as new events."""
        fresh = np.random.default_rng(seed).bytes(16 * len(self))
        return replace(self, at_s=self.at_s + 7 * 86_400, ids=fresh)


class _Routes:
    """Random walks inside one grid, along straight lines between interior waypoints."""

    def __init__(self, grid: shapely.Geometry, rng: np.random.Generator) -> None:
        # Walk a metre inside the border, so that rounding a fix to the 7 decimals it is
        # sent with never moves it into the neighbouring grid.
        inset = grid.buffer(-INSET_DEG)
        grid = grid if inset.is_empty else inset
        shapely.prepare(grid)
        low, high = np.array(grid.bounds[:2]), np.array(grid.bounds[2:])
        points = np.empty((0, 2))
        while len(points) < WAYPOINTS:
            xy = rng.uniform(low, high, size=(4 * WAYPOINTS, 2))
            points = np.vstack([points, xy[shapely.contains_xy(grid, xy[:, 0], xy[:, 1])]])
        self.lonlat = points[:WAYPOINTS]
        scale = [M_PER_DEG_LON * math.cos(math.radians(self.lonlat[:, 1].mean())), M_PER_DEG_LAT]
        metres = self.lonlat * scale
        self.length = np.linalg.norm(metres[:, None, :] - metres[None, :, :], axis=2)
        # Only lines the grid covers are walked, so a concave grid never loses a fix.
        i, j = np.triu_indices(WAYPOINTS, 1)
        lines = shapely.linestrings(np.stack([self.lonlat[i], self.lonlat[j]], axis=1))
        covered = shapely.covers(grid, lines)
        self.neighbours: list[list[int]] = [[] for _ in range(WAYPOINTS)]
        for a, b in zip(i[covered].tolist(), j[covered].tolist(), strict=True):
            self.neighbours[a].append(b)
            self.neighbours[b].append(a)

    def walk(
        self, fixes: int, step_m: float, rng: np.random.Generator
    ) -> tuple[FloatArray, FloatArray]:
        """Positions of `fixes` fixes `step_m` apart along a random walk."""
        starts = [k for k in range(WAYPOINTS) if self.neighbours[k]] or [0]
        node = int(rng.choice(starts))
        path, travelled = [node], [0.0]
        while self.neighbours[node] and travelled[-1] < step_m * (fixes - 1):
            following = self.neighbours[node][int(rng.integers(len(self.neighbours[node])))]
            travelled.append(travelled[-1] + float(self.length[node, following]))
            path.append(following)
            node = following
        at = np.arange(fixes) * step_m
        return (
            np.interp(at, travelled, self.lonlat[path, 0]),
            np.interp(at, travelled, self.lonlat[path, 1]),
        )


def _assigned_all_week(database_url: str) -> list[tuple[str, str, bytes]]:
    with psycopg.connect(database_url) as conn:
        rows = conn.execute(
            "SELECT wa.worker_id, wa.grid_code, ST_AsBinary(g.geom) FROM worker_assignments wa"
            " JOIN grids g ON g.code = wa.grid_code AND g.valid_from <= %(start)s"
            " AND (g.valid_to IS NULL OR g.valid_to >= %(end)s)"
            " WHERE wa.valid_from <= %(start)s AND (wa.valid_to IS NULL OR wa.valid_to >= %(end)s)"
            " ORDER BY wa.worker_id, wa.grid_code",
            {"start": WEEK.start(LOCAL_TZ), "end": WEEK.end(LOCAL_TZ)},
        ).fetchall()
    return [(str(w), str(g), bytes(geom)) for w, g, geom in rows]


def plan_week(
    database_url: str, workers: int | None = None, fix_interval_s: int = 30, seed: int = SEED
) -> WeekPlan:
    """Walks of 2020-W37 for every worker assigned all week (or `workers` of them at random)."""
    rng = np.random.default_rng(seed)
    assigned = _assigned_all_week(database_url)
    if workers is not None and workers < len(assigned):
        assigned = [assigned[i] for i in sorted(rng.choice(len(assigned), workers, replace=False))]
    routes: dict[str, _Routes] = {}
    for _worker, code, geom in assigned:
        if code not in routes:
            routes[code] = _Routes(shapely.from_wkb(geom), rng)
    monday = int(WEEK.start(LOCAL_TZ).timestamp())
    columns: list[tuple[IntArray, IntArray, FloatArray, FloatArray]] = []
    walks = lazy = 0
    for index, (_worker, code, _geom) in enumerate(assigned):
        is_lazy = bool(rng.random() < LAZY_SHARE)
        count = int(rng.integers(0, WALKS[0]) if is_lazy else rng.integers(WALKS[0], WALKS[1] + 1))
        lazy, walks = lazy + is_lazy, walks + count
        for day in sorted(rng.choice(7, count, replace=False).tolist()):
            start = monday + day * 86_400 + int(rng.integers(FIRST_START_H, LAST_START_H) * 3600)
            start += int(rng.integers(0, 3600))
            fixes = int(rng.integers(WALK_MINUTES[0], WALK_MINUTES[1] + 1)) * 60 // fix_interval_s
            step_m = float(rng.uniform(*SPEED_M_S)) * fix_interval_s
            lon, lat = routes[code].walk(fixes + 1, step_m, rng)
            at = start + np.arange(fixes + 1, dtype=np.int64) * fix_interval_s
            columns.append((np.full(fixes + 1, index, dtype=np.int64), at, lon, lat))
    worker, at_s, lon, lat = (np.concatenate([c[k] for c in columns]) for k in range(4))
    order = np.lexsort((worker, at_s))
    accuracy = np.round(rng.uniform(*ACCURACY_M, size=len(order)), 1)
    return WeekPlan(
        pairs=[(w, g) for w, g, _geom in assigned],
        walks=walks,
        lazy=lazy,
        worker=worker[order],
        at_s=at_s[order],
        lon=lon[order],
        lat=lat[order],
        accuracy=accuracy,
        ids=rng.bytes(16 * len(order)),
    )


# --------------------------------------------------------------------------- services


@contextlib.contextmanager
def _fresh_database(server_url: str, template_url: str | None) -> Iterator[str]:
    """A new database with the reference dataset (a copy of `template_url`'s if given)."""
    from sqlalchemy.engine import make_url

    from geodata.db.engine import libpq_url

    server = make_url(libpq_url(server_url))
    name = f"wangge_bench_{uuid.uuid4().hex[:10]}"
    admin = server.set(database="postgres").render_as_string(hide_password=False)
    url = server.set(database=name).render_as_string(hide_password=False)
    template = f' TEMPLATE "{make_url(libpq_url(template_url)).database}"' if template_url else ""
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"{template}')
    try:
        if not template_url:
            load_reference_dataset(url)
        yield url
    finally:
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _produce(bootstrap: str, topic: str, plan: WeekPlan, notify: Progress) -> float:
    """Produce every fix with acks=all, as fast as kafka-python goes; return the seconds."""
    producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=20)
    # The consumers' publisher: whole record batches, not ~40 µs of `send()` per record.
    publisher = Publisher(producer)
    began = time.perf_counter()
    try:
        for start in range(0, len(plan), PRODUCE_CHUNK):
            publisher.publish(
                OutboundRecord(topic, key, value)
                for key, value in plan.messages(start, start + PRODUCE_CHUNK)
            )
            publisher.flush(timeout_s=300)
            notify(
                "Producing the week's check-ins", min(start + PRODUCE_CHUNK, len(plan)), len(plan)
            )
    finally:
        producer.close()
    return time.perf_counter() - began


@contextlib.contextmanager
def _consumers(
    url: str, bootstrap: str, topics: Topics, count: int, logs: Path
) -> Iterator[tuple[str, list[subprocess.Popen[bytes]]]]:
    """`wangge consume` processes (every handler) of a fresh group, SIGTERMed at the end."""
    group = f"bench-{uuid.uuid4().hex[:8]}"
    env = {
        **os.environ,
        "WANGGE_DATABASE_URL": url,
        "WANGGE_KAFKA_BOOTSTRAP": bootstrap,
        "WANGGE_TOPIC_NAMESPACE": topics.checkins.removesuffix(Topics().checkins),
        "WANGGE_TOPIC_PARTITIONS": str(PARTITIONS),
    }
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)  # never mix samples into a running platform's
    args = [sys.executable, "-m", "wangge", "consume", "--group", group]
    processes: list[subprocess.Popen[bytes]] = []
    try:
        for i in range(count):
            with (logs / f"consumer-{i}.log").open("ab") as log:
                processes.append(subprocess.Popen(args, env=env, stdout=log, stderr=log))
        yield group, processes
    finally:
        stop_gracefully(processes, timeout_s=60)


def _scalar(conn: psycopg.Connection, sql: str, *params: object) -> int:
    row = conn.execute(sql, params, prepare=True).fetchone()
    return int(row[0]) if row and row[0] is not None else 0


def _committed(conn: psycopg.Connection, group: str, topic: str) -> int:
    """Records of a topic whose work is committed: its stored next offsets (topic from 0)."""
    return _scalar(
        conn,
        "SELECT sum(next_offset) FROM consumer_offsets WHERE consumer_group = %s AND topic = %s",
        group,
        topic,
    )


def _unpublished(conn: psycopg.Connection) -> int:
    return _scalar(conn, "SELECT count(*) FROM compliance_changes WHERE published_at IS NULL")


# --------------------------------------------------------------------------- folding


@dataclass(frozen=True)
class Fold:
    """Timings of one replay: after the first committed batch, until each stage was done."""

    records: int
    startup_s: float
    checkins_s: float
    total_s: float


def wait_folded(
    url: str,
    group: str,
    topics: Topics,
    expected: int,
    processes: list[subprocess.Popen[bytes]],
    notify: Progress,
    timeout_s: float,
    logs: Path,
) -> Fold:
    """Watch the committed offsets until `expected` check-ins are folded and published."""
    with psycopg.connect(url, autocommit=True) as conn:
        started = previous = time.perf_counter()
        first: tuple[float, int] | None = None
        checkins_at: float | None = None
        while True:
            checkins = _committed(conn, group, topics.checkins)
            folded = _committed(conn, stage_group_id(group, COMPLIANCE_STAGE), topics.assignments)
            now = time.perf_counter()
            if first is None and checkins >= expected:
                # All of it committed between two polls (a small run on a fast machine):
                # time it from the poll before, which saw none, rather than divide by zero.
                first = (previous, 0)
            elif first is None and checkins:
                first = (now, checkins)
            if checkins_at is None and checkins >= expected:
                checkins_at = now
            if first and checkins_at and folded >= expected and not _unpublished(conn):
                return Fold(
                    expected - first[1], first[0] - started, checkins_at - first[0], now - first[0]
                )
            notify("Folding the week into patrols", folded, expected)
            if any(p.poll() is not None for p in processes) or now - started > timeout_s:
                tail = "".join(p.read_text()[-2000:] for p in sorted(logs.glob("consumer-*.log")))
                raise RuntimeError(f"stopped at {checkins} check-ins, {folded} folded:\n{tail}")
            previous = now
            time.sleep(DRAIN_POLL_S)


@dataclass(frozen=True)
class FoldCheck:
    """What the replay left: rows per table, and statuses against `evaluate_week`."""

    checkins: int
    patrol_checkins: int
    in_patrols: int
    patrols: int
    statuses: int
    changes: int
    sampled: int
    agreeing: int


def check_fold(url: str, plan: WeekPlan, sample: int, seed: int = SEED) -> FoldCheck:
    """Count the rows, and recompute a sample of workers' weeks with `evaluate_week`."""
    config = ComplianceConfig()
    week = str(WEEK)
    with psycopg.connect(url) as conn:
        counts = [
            _scalar(conn, sql, *params)
            for sql, params in (
                ("SELECT count(*) FROM checkins", ()),
                ("SELECT count(*) FROM patrol_checkins", ()),
                ("SELECT sum(checkin_count) FROM patrols WHERE week = %s", (week,)),
                ("SELECT count(*) FROM patrols WHERE week = %s", (week,)),
                ("SELECT count(*) FROM patrol_weeks WHERE week = %s", (week,)),
                ("SELECT count(*) FROM compliance_changes", ()),
            )
        ]
        clock = conn.execute(
            "SELECT watermark FROM compliance_clock WHERE name = %s", (CLOCK_NAME,)
        ).fetchone()
        stored = {
            (w, g): (s, c, r)
            for w, g, s, c, r in conn.execute(
                "SELECT worker_id, grid_code, status, counted, required FROM patrol_weeks"
                " WHERE week = %s",
                (week,),
            )
        }
        periods = [
            AssignmentPeriod(*row)
            for row in conn.execute(
                "SELECT worker_id, grid_code, valid_from, valid_to FROM worker_assignments"
            )
        ]
    if clock is None or clock[0] is None:
        raise RuntimeError("the engine has no watermark: nothing was folded")
    rng = np.random.default_rng(seed)
    chosen = rng.choice(len(plan.pairs), min(sample, len(plan.pairs)), replace=False)
    agreeing = 0
    for index in chosen.tolist():
        worker_id, grid_code = plan.pairs[index]
        result = evaluate_week(
            plan.records_of(index),
            periods,
            worker_id=worker_id,
            grid_code=grid_code,
            week=WEEK,
            as_of=clock[0],
            config=config,
        )
        agreeing += stored.get((worker_id, grid_code)) == (
            result.status,
            result.counted,
            result.required,
        )
    checkins, patrol_checkins, in_patrols, patrols, statuses, changes = counts
    return FoldCheck(
        checkins, patrol_checkins, in_patrols, patrols, statuses, changes, len(chosen), agreeing
    )


# --------------------------------------------------------------------------- latency


class _Sampler(threading.Thread):
    """Notes when each expected check-in is first readable in `patrol_checkins`.

    The row commits in the same transaction as the patrols and status it changes, so its
    visibility is the status's. Each poll asks for the ids still pending (a few hundred
    at most); a row first seen by a poll became visible since the previous one began.
    """

    def __init__(self, url: str) -> None:
        super().__init__(daemon=True)
        self.url = url
        self.seen: dict[uuid.UUID, float] = {}
        self.periods: list[float] = []
        self.done = threading.Event()
        self._pending: set[uuid.UUID] = set()
        self._lock = threading.Lock()

    def expect(self, event_id: uuid.UUID) -> None:
        """Watch for one more event id."""
        with self._lock:
            self._pending.add(event_id)

    def pending(self) -> int:
        """Ids not seen yet."""
        with self._lock:
            return len(self._pending)

    def run(self) -> None:
        """Poll every `SAMPLE_POLL_S` until told to stop."""
        with psycopg.connect(self.url, autocommit=True) as conn:
            last = time.perf_counter()
            while not self.done.is_set():
                with self._lock:
                    ids = list(self._pending)
                began = time.perf_counter()
                self.periods.append(began - last)
                last = began
                if ids:
                    rows = conn.execute(
                        "SELECT event_id FROM patrol_checkins WHERE event_id = ANY(%s)",
                        (ids,),
                        prepare=True,
                    ).fetchall()
                    with self._lock:
                        for (event_id,) in rows:
                            self._pending.discard(event_id)
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


def measure_latency(
    url: str, bootstrap: str, topic: str, plan: WeekPlan, rate: float, seconds: float
) -> Latency:
    """Produce `plan`'s first fixes at `rate` per second while the consumers run."""
    count = min(len(plan), WARMUP_EVENTS + int(rate * seconds))
    messages = list(plan.messages(0, count))
    sampler = _Sampler(url)
    sampler.start()
    producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=1)
    try:
        # The first fixes cross midnight into a new week, which re-evaluates every worker:
        # a one-off, kept out of the steady state.
        for i, (key, value) in enumerate(messages[:WARMUP_EVENTS]):
            sampler.expect(plan.event_id(i))
            producer.send(topic, key=key, value=value)
        producer.flush(timeout=60)
        _wait_for(lambda: sampler.pending() == 0, "the warm-up check-ins")
        with psycopg.connect(url, autocommit=True) as conn:
            _wait_for(lambda: _unpublished(conn) == 0, "the warm-up's outbox")
        sent: list[tuple[uuid.UUID, float]] = []
        began = time.perf_counter()
        for k, (key, value) in enumerate(messages[WARMUP_EVENTS:]):
            delay = began + k / rate - time.perf_counter()
            if delay > 0:
                time.sleep(delay)
            event_id = plan.event_id(WARMUP_EVENTS + k)
            sampler.expect(event_id)
            sent.append((event_id, time.perf_counter()))
            producer.send(topic, key=key, value=value)
        producer.flush(timeout=60)
        _wait_for(lambda: sampler.pending() == 0, "the steady check-ins")
    finally:
        sampler.done.set()
        sampler.join()
        producer.close()
    latencies = [max(0.0, sampler.seen[e] - t) * 1000 for e, t in sent]
    p50, p99 = np.percentile(latencies, [50, 99])
    fifth = max(1, len(latencies) // 5)
    return Latency(
        p50_ms=float(p50),
        p99_ms=float(p99),
        max_ms=max(latencies),
        events=len(sent),
        rate=len(sent) / max(sent[-1][1] - sent[0][1], 1e-9),
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


# --------------------------------------------------------------------------- reading


def time_city_wide_read(url: str, bootstrap: str, runs: int) -> tuple[float, float, int]:
    """Median ms of `compliance_report` (worker level, whole city) and of the HTTP GET."""
    from fastapi.testclient import TestClient

    from geodata.db.compliance_read import compliance_report
    from geodata.db.engine import create_db_engine
    from grid_service.app import ApiConfig, create_app
    from wangge.users_cli import add_user

    def median_ms(call: Callable[[], object]) -> float:
        for _ in range(3):
            call()  # warm-up: connections, prepared plans, caches
        times = []
        for _ in range(runs):
            began = time.perf_counter()
            call()
            times.append(time.perf_counter() - began)
        return statistics.median(times) * 1000

    engine = create_db_engine(url)
    try:
        as_of = datetime.now(UTC)
        items = len(compliance_report(engine, WEEK, as_of).items)
        direct = median_ms(lambda: compliance_report(engine, WEEK, as_of, level="worker"))
    finally:
        engine.dispose()
    # The whole city is an admin's to read; the token is checked as for any caller.
    headers = {"Authorization": f"Bearer {add_user(url, 'bench-admin', 'admin', None, None)}"}
    with TestClient(create_app(ApiConfig(url, bootstrap)), headers=headers) as client:

        def get() -> None:
            client.get("/api/v1/compliance", params={"week": str(WEEK)}).raise_for_status()

        http = median_ms(get)
    return direct, http, items


# --------------------------------------------------------------------------- the run


def run_compliance_benchmark(
    database_url: str,
    bootstrap: str,
    workers: int | None = None,
    fix_interval_s: int = 30,
    progress: Progress | None = None,
    *,
    reference_database_url: str | None = None,
    processes: int = 1,
    latency_rate: float = 1000.0,
    latency_seconds: float = 25.0,
    query_runs: int = 20,
    sample_workers: int = 50,
) -> list[BenchmarkRow]:
    """Replay a simulated week through the engine; time its latency and the city-wide read.

    The database is made on the server of `database_url` and dropped afterwards; the
    reference dataset is generated there unless `reference_database_url` names a database
    holding it (used as a template, so nothing may be connected to it).
    """
    notify: Progress = progress or (lambda _stage, _done, _total: None)
    topics = Topics.under(f"bench{uuid.uuid4().hex[:8]}.")
    services.ensure_topics(bootstrap, PARTITIONS, topics)
    notify("Preparing a database with the reference dataset", 0, 1)
    try:
        with (
            _fresh_database(database_url, reference_database_url) as url,
            tempfile.TemporaryDirectory(prefix="wangge-bench-") as logs,
        ):
            notify("Planning the week's walks", 0, 1)
            plan = plan_week(url, workers, fix_interval_s)
            produce_s = _produce(bootstrap, topics.checkins, plan, notify)
            with _consumers(url, bootstrap, topics, processes, Path(logs)) as (group, running):
                fold = wait_folded(
                    url,
                    group,
                    topics,
                    len(plan),
                    running,
                    notify,
                    600 + len(plan) / 200,
                    Path(logs),
                )
                notify("Checking the statuses", 0, 1)
                checked = check_fold(url, plan, sample_workers)
                notify(f"Latency at {latency_rate:,.0f} check-ins/s", 0, 1)
                latency = measure_latency(
                    url,
                    bootstrap,
                    topics.checkins,
                    plan.a_week_later(SEED + 1),
                    latency_rate,
                    latency_seconds,
                )
            notify("Timing the city-wide read", 0, 1)
            read = time_city_wide_read(url, bootstrap, query_runs)
    finally:
        services.delete_topics(bootstrap, topics)
    notify("Done", 1, 1)
    return _rows(plan, produce_s, fold, checked, latency, read, processes)


def _row(
    name: str,
    ours: float,
    unit: str,
    detail: str,
    *,
    target: str = "context",
    peer: float | None = None,
    peer_name: str = "target",
    met: bool | None = None,
    **checks: int,
) -> BenchmarkRow:
    ratio = ours / peer if peer else None
    return BenchmarkRow(
        name, ours, unit, peer, peer_name if peer else "", ratio, target, met, detail, **checks
    )


def _rows(
    plan: WeekPlan,
    produce_s: float,
    fold: Fold,
    checked: FoldCheck,
    latency: Latency,
    read: tuple[float, float, int],
    processes: int,
) -> list[BenchmarkRow]:
    n, (direct_ms, http_ms, items) = len(plan), read
    consumers = f"{processes} `wangge consume` process{'es' if processes > 1 else ''}"
    steady = f"{latency.events:,} check-ins at {latency.rate:,.0f}/s, seen every"
    steady += f" {latency.resolution_ms:.0f} ms (the resolution); max {latency.max_ms:,.0f} ms;"
    steady += f" p50 {latency.first_p50_ms:,.0f} ms in the first fifth, {latency.last_p50_ms:,.0f}"
    steady += " ms in the last"
    p99_target, query_target = f"≤ {TARGET_P99_MS:,.0f} ms", f"≤ {TARGET_QUERY_MS:.0f} ms"
    runs = "median of the runs after 3 warm-ups"
    return [
        _row(
            "simulated week 2020-W37",
            n,
            "check-ins",
            f"{len(plan.pairs):,} workers, {plan.walks:,} walks, {plan.lazy} lazy workers;"
            f" produced in {produce_s:.0f} s ({n / produce_s:,.0f}/s, acks=all)",
        ),
        _row(
            "check-in stage: stored and assigned",
            fold.records / fold.checkins_s,
            "events/s",
            f"{consumers} running every handler (the compliance stage in a child process);"
            f" startup {fold.startup_s:.1f} s",
        ),
        _row(
            "end to end: patrols, statuses, outbox published",
            fold.records / fold.total_s,
            "events/s",
            f"{fold.total_s:,.0f} s after the first commit; {checked.patrols:,} patrols,"
            f" {checked.changes:,} status changes",
        ),
        _row(
            "check-ins folded in exactly once",
            checked.patrol_checkins,
            "rows",
            f"checkins {checked.checkins:,}; in patrols {checked.in_patrols:,};"
            f" statuses of the week {checked.statuses:,}",
            target="= produced",
            peer=n,
            peer_name="check-ins produced",
            met=checked.patrol_checkins == n == checked.checkins,
            expected=n,
            stored=checked.patrol_checkins,
            republished=checked.statuses,
        ),
        _row(
            "statuses equal evaluate_week's",
            checked.agreeing,
            "workers",
            "status, counted and required as of the engine's watermark, from the plan's fixes",
            target="all",
            peer=checked.sampled,
            peer_name="workers sampled",
            met=checked.agreeing == checked.sampled,
        ),
        _row("arrival → status readable, p50", latency.p50_ms, "ms", steady, target="—"),
        _row(
            "arrival → status readable, p99",
            latency.p99_ms,
            "ms",
            steady,
            target=p99_target,
            peer=TARGET_P99_MS,
            met=latency.p99_ms <= TARGET_P99_MS,
        ),
        _row(
            "compliance_report, whole city, worker level",
            direct_ms,
            "ms",
            f"{items:,} (worker, grid) items; {runs}",
            target=query_target,
            peer=TARGET_QUERY_MS,
            met=direct_ms <= TARGET_QUERY_MS,
        ),
        _row(
            "GET /api/v1/compliance?week=2020-W37",
            http_ms,
            "ms",
            f"FastAPI TestClient, JSON included; {runs}",
            target=query_target,
            peer=TARGET_QUERY_MS,
            met=http_ms <= TARGET_QUERY_MS,
        ),
    ]


def main() -> None:
    """`python -m wangge.benchmarks.compliance [--workers N]`: run on the configured services."""
    from wangge.benchmarks.rows import add_json_option, write_rows
    from wangge.cli import progress_bar
    from wangge.settings import DatabaseSettings, KafkaSettings, LocalServicesSettings

    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--workers", type=int, default=None, help="default: all 2,381")
    parser.add_argument("--fix-interval", type=int, default=30, help="seconds between fixes")
    parser.add_argument("--latency-seconds", type=float, default=25.0)
    parser.add_argument("--processes", type=int, default=1, help="`wangge consume` processes")
    add_json_option(parser)
    args = parser.parse_args()
    console = Console()
    if not console.is_terminal:
        console = Console(width=200)  # a log file should keep the table's rows whole
    database, kafka = DatabaseSettings(), KafkaSettings()
    services.ensure_postgis(database, log=console.print)
    services.ensure_broker(kafka, LocalServicesSettings(), log=console.print)
    with progress_bar() as progress:
        rows = run_compliance_benchmark(
            database.url,
            kafka.bootstrap,
            args.workers,
            args.fix_interval,
            progress,
            processes=args.processes,
            latency_seconds=args.latency_seconds,
        )
    table = render_table(rows)
    table.title = "wangge compliance benchmark"
    console.print(table)
    for name, value in describe_machine(database.url).items():
        console.print(f"{name}: {value}")
    if args.json:
        write_rows(args.json, "compliance", rows)


if __name__ == "__main__":
    main()
