"""`wangge bench history`: the platform after a year of history against its first week.

One database of the reference city, with the current week (2020-W37, the compliance
benchmark's) loaded up to Wednesday night: the check-ins, the engine's copy, patrols,
statuses, changes and coverage that Monday to Wednesday leave, generated in SQL
(`wangge.benchmarks.history_load`). A copy of it is measured as week 1, on an empty
history; then the 51 weeks before it are loaded into the original and the same measures
run again as week 52, the current week after a year:

- check-ins of Thursday on (the compliance benchmark's walks) produced, then drained by
  one `wangge consume` running every handler: the check-in stage's rate into PostGIS and
  the end-to-end rate (patrols, statuses, outbox published);
- arrival → status readable at a steady rate, p99;
- the city-wide compliance report (`compliance_report`) and `GET /api/v1/compliance`;
- a worker's week: their patrols (`worker_patrols`) and their track (`track_stamp` and
  `track_page`, what the track route reads when its kept page is stale).

Target: week 52 within 1.2× of week 1 on every measure; the load's time and the disk a
week takes are reported beside them.
"""

import argparse
import os
import statistics
import tempfile
import time
import uuid
from dataclasses import dataclass, replace
from datetime import timedelta
from pathlib import Path

import numpy as np
import psycopg

from geodata.compliance import ComplianceConfig, IsoWeek
from geodata.contract import Topics
from geodata.db.compliance_read import worker_patrols
from geodata.db.engine import create_db_engine
from geodata.db.track_read import track_page, track_stamp
from geodata.track import DEFAULT_LIMIT
from wangge import services
from wangge.benchmarks import history_load
from wangge.benchmarks.compliance import Fold, median_ms, time_city_wide_read, wait_folded
from wangge.benchmarks.compliance_latency import Latency, measure_latency
from wangge.benchmarks.compliance_week import WEEK, WeekPlan, plan_week
from wangge.benchmarks.harness import (
    PARTITIONS,
    DatabaseServer,
    Progress,
    consumer_processes,
    database_of,
    describe_machine,
    render_table,
    report_console,
)
from wangge.benchmarks.history_load import WeekLoad
from wangge.benchmarks.pipeline import produce_all
from wangge.benchmarks.rows import BenchmarkRow, add_json_option, write_rows

BAOJI_WORKERS = 2381
TARGET_RATIO = 1.2
#: The current week is loaded Monday to Wednesday; the measures' check-ins come after.
LOADED_DAYS = 3
SEED = 52


@dataclass(frozen=True)
class Measures:
    """One run of every measure, on one state of the history."""

    fold: Fold
    latency: Latency
    report_ms: float
    http_ms: float
    items: int
    patrols_ms: float
    track_ms: float
    worker_id: str
    fixes: int


@dataclass(frozen=True)
class HistoryRun:
    """Week 1 and week 52 measured, and what the history took to load and holds."""

    first: Measures
    last: Measures
    weeks: list[WeekLoad]
    load_s: float
    vacuum_s: float
    disk: dict[str, int]
    counted: dict[str, dict[str, int]]
    scale: float
    workers: int


def run_history_benchmark(
    database_url: str,
    bootstrap: str,
    weeks: int = 52,
    scale: float = 1.0,
    progress: Progress | None = None,
    *,
    events: int = 100_000,
    latency_rate: float = 1000.0,
    latency_seconds: float = 25.0,
    query_runs: int = 20,
    reference_database_url: str | None = None,
) -> HistoryRun:
    """Measure the current week on an empty history, load `weeks - 1` weeks before it,
    measure again. Databases are made on `database_url`'s server and dropped after; the
    reference dataset is generated there unless `reference_database_url` names a database
    holding it (used as a template, so nothing may be connected to it)."""
    notify: Progress = progress or (lambda _stage, _done, _total: None)
    server = DatabaseServer(database_url)
    config = ComplianceConfig()
    thursday = WEEK.start(config.tz) + timedelta(days=LOADED_DAYS)
    try:
        notify("Preparing a database with the reference dataset", 0, 1)
        if reference_database_url:
            name = server.create(database_of(reference_database_url))
        else:
            name = server.build_reference()
        url = server.url_of(name)
        workers = None if scale >= 1 else max(1, round(BAOJI_WORKERS * scale))
        notify("Planning the week's walks", 0, 1)
        plan = plan_week(url, workers)
        live = _from(plan, int(thursday.timestamp()))
        notify(f"Loading {WEEK} to Wednesday", 0, 1)
        with psycopg.connect(url) as conn:
            history_load.prepare_template(conn, plan.pairs)
            current = history_load.load_week(conn, WEEK, weeks, LOADED_DAYS, final=False)
            history_load.set_engine_clock(
                conn, thursday - timedelta(seconds=1), WEEK.days()[LOADED_DAYS - 1]
            )
        history_load.vacuum_analyze(url)
        measure = _Measure(bootstrap, live, notify, events, latency_rate, latency_seconds)
        first = measure(server.copy(name), query_runs, "week 1")
        loaded, load_s, vacuum_s = load_history(url, weeks - 1, notify)
        with psycopg.connect(url) as conn:
            notify("Counting the history's rows", 0, 1)
            counted = history_load.rows_by_week(conn)
            disk = {table: history_load.disk_bytes(conn, table) for table in history_load.GROWING}
            history_load.drop_template(conn)
        last = measure(url, query_runs, f"week {weeks}")
    finally:
        server.drop_created()
    notify("Done", 1, 1)
    return HistoryRun(
        first, last, [*loaded, current], load_s, vacuum_s, disk, counted, scale, len(plan.pairs)
    )


def _from(plan: WeekPlan, start_s: int) -> WeekPlan:
    """The plan's fixes from `start_s` on."""
    keep = plan.at_s >= start_s
    ids = np.frombuffer(plan.ids, dtype=np.uint8).reshape(-1, 16)[keep].tobytes()
    return replace(
        plan,
        worker=plan.worker[keep],
        at_s=plan.at_s[keep],
        lon=plan.lon[keep],
        lat=plan.lat[keep],
        accuracy=plan.accuracy[keep],
        ids=ids,
    )


def _fresh(plan: WeekPlan, seed: int) -> WeekPlan:
    """The same fixes as new events."""
    return replace(plan, ids=np.random.default_rng(seed).bytes(16 * len(plan)))


def load_history(url: str, weeks: int, notify: Progress) -> tuple[list[WeekLoad], float, float]:
    """The `weeks` weeks before WEEK, oldest first; (loads, seconds in all, of which
    vacuuming)."""
    monday = WEEK.days()[0]
    began = time.perf_counter()
    loads = []
    with psycopg.connect(url) as conn:
        for k in range(weeks):
            week = IsoWeek.of_date(monday - timedelta(weeks=weeks - k))
            notify(f"Loading {week} ({k + 1}/{weeks})", k, weeks)
            loads.append(history_load.load_week(conn, week, k))
    notify(f"Vacuuming {weeks} weeks", weeks, weeks)
    vacuuming = time.perf_counter()
    history_load.vacuum_analyze(url)
    ended = time.perf_counter()
    return loads, ended - began, ended - vacuuming


class _Measure:
    """Every measure, the same way on any state of the history."""

    def __init__(
        self,
        bootstrap: str,
        live: WeekPlan,
        notify: Progress,
        events: int,
        rate: float,
        seconds: float,
    ) -> None:
        self.bootstrap, self.notify = bootstrap, notify
        self.rate, self.seconds = rate, seconds
        # Each run's check-ins are new events at the same times, so both runs do the same.
        self.drained = list(_fresh(live, SEED).messages(0, min(events, len(live))))
        self.steady = _fresh(live, SEED + 1)

    def __call__(self, url: str, runs: int, label: str) -> Measures:
        topics = Topics.under(f"bench{uuid.uuid4().hex[:8]}.")
        services.ensure_topics(self.bootstrap, PARTITIONS, topics)
        try:
            with tempfile.TemporaryDirectory(prefix="wangge-bench-history-") as folder:
                logs = Path(folder)
                self.notify(f"{label}: producing {len(self.drained):,} check-ins", 0, 1)
                produce_all(self.bootstrap, topics.checkins, self.drained)
                group = f"bench-{uuid.uuid4().hex[:8]}"
                with consumer_processes(
                    url, self.bootstrap, topics, group, 1, logs, stop_timeout_s=60
                ) as running:
                    expected = len(self.drained)
                    timeout = 600 + expected / 200
                    fold = wait_folded(
                        url, group, topics, expected, running, self.notify, timeout, logs
                    )
                    self.notify(f"{label}: latency at {self.rate:,.0f} check-ins/s", 0, 1)
                    latency = measure_latency(
                        url, self.bootstrap, topics.checkins, self.steady, self.rate, self.seconds
                    )
        finally:
            services.delete_topics(self.bootstrap, topics)
        self.notify(f"{label}: timing the reads", 0, 1)
        report_ms, http_ms, items = time_city_wide_read(url, self.bootstrap, runs)
        worker_id, fixes, patrols_ms, track_ms = time_worker_reads(url, runs)
        return Measures(fold, latency, report_ms, http_ms, items, patrols_ms, track_ms,
                        worker_id, fixes)  # fmt: skip


def time_worker_reads(url: str, runs: int) -> tuple[str, int, float, float]:
    """The busiest worker of the week: (id, fixes, ms for their patrols, for their track)."""
    config = ComplianceConfig()
    start, end = WEEK.start(config.tz), WEEK.end(config.tz)
    engine = create_db_engine(url)
    try:
        with psycopg.connect(url) as conn:
            row = conn.execute(
                "SELECT worker_id FROM patrols WHERE week = %s GROUP BY worker_id"
                " ORDER BY count(*) DESC, worker_id LIMIT 1",
                (str(WEEK),),
            ).fetchone()
        if row is None:
            raise RuntimeError(f"no patrols in {WEEK}: nothing was loaded")
        worker_id = str(row[0])

        def track() -> int:
            track_stamp(engine, worker_id, start, end)
            page = track_page(
                engine, worker_id, start, end, limit=DEFAULT_LIMIT, timezone=config.timezone
            )
            return len(page.fixes)

        patrols_ms = median_ms(lambda: worker_patrols(engine, worker_id, WEEK, config), runs)
        track_ms = median_ms(track, runs)
        fixes = track()
    finally:
        engine.dispose()
    return worker_id, fixes, patrols_ms, track_ms


# --------------------------------------------------------------------------- rows


def _compare(
    name: str, unit: str, first: float, last: float, weeks: int, detail: str, *, rate: bool
) -> BenchmarkRow:
    """Week `weeks` beside week 1: a rate may fall to 1/1.2 of it, a time rise to 1.2×."""
    ratio = last / first if first else None
    bound = 1 / TARGET_RATIO if rate else TARGET_RATIO
    met = None if ratio is None else ratio >= bound if rate else ratio <= bound
    target = f"≥ {bound:.2f} × week 1" if rate else f"≤ {bound:g} × week 1"
    return BenchmarkRow(
        f"{name}, week {weeks}", last, unit, first, "week 1 (empty history)", ratio, target, met,
        detail,
    )  # fmt: skip


def as_benchmark_rows(run: HistoryRun) -> list[BenchmarkRow]:
    """The run in the shape every benchmark shares."""
    weeks = len(run.weeks)
    a, b = run.first, run.last
    history = run.weeks[:-1]
    loaded = sum(w.rows["checkins"] for w in history)
    per_week = {t: size / weeks for t, size in run.disk.items()}
    mb = 1024**2
    scale = f"{run.workers:,} workers ({run.scale:.0%} of Baoji)"
    fold = f"{a.fold.records:,} check-ins of Thursday on, 1 `wangge consume` (every handler)"
    steady = f"{b.latency.events:,} check-ins at {b.latency.rate:,.0f}/s; p50 week 1"
    steady += f" {a.latency.p50_ms:,.0f} ms, week {weeks} {b.latency.p50_ms:,.0f} ms"
    runs = "median of the runs after 3 warm-ups"
    reads = f"{runs}; worker {b.worker_id}, {b.fixes:,} fixes"
    return [
        BenchmarkRow(
            f"history loaded: {weeks - 1} weeks before {WEEK}", loaded, "check-ins", None, "",
            None, "context", None,
            f"{scale}; {run.load_s:,.0f} s in all ({loaded / run.load_s:,.0f} check-ins/s),"
            f" of which {run.vacuum_s:,.0f} s vacuuming; a week"
            f" {statistics.median(w.seconds for w in history):,.1f} s (median), rows a week: "
            + ", ".join(f"{t} {n:,}" for t, n in history[0].rows.items()),
        ),
        BenchmarkRow(
            "disk a week, every growing table with its indexes", sum(per_week.values()) / mb,
            "MB", None, "", None, "context", None,
            f"{sum(run.disk.values()) / 1024**3:,.1f} GB for {weeks} weeks: "
            + ", ".join(f"{t} {size / mb:,.1f} MB" for t, size in per_week.items()),
        ),
        _compare("check-in stage: stored and assigned", "events/s",
                 a.fold.records / a.fold.checkins_s, b.fold.records / b.fold.checkins_s,
                 weeks, fold, rate=True),
        _compare("end to end: patrols, statuses, outbox published", "events/s",
                 a.fold.records / a.fold.total_s, b.fold.records / b.fold.total_s,
                 weeks, fold, rate=True),
        _compare("arrival → status readable, p99", "ms", a.latency.p99_ms, b.latency.p99_ms,
                 weeks, steady, rate=False),
        _compare("compliance_report, whole city, worker level", "ms", a.report_ms, b.report_ms,
                 weeks, f"{b.items:,} (worker, grid) items; {runs}", rate=False),
        _compare(f"GET /api/v1/compliance?week={WEEK}", "ms", a.http_ms, b.http_ms, weeks,
                 f"FastAPI TestClient, JSON included; {runs}", rate=False),
        _compare("a worker's week of patrols (worker_patrols)", "ms", a.patrols_ms,
                 b.patrols_ms, weeks, reads, rate=False),
        _compare("a worker's week of track (track_stamp + track_page)", "ms", a.track_ms,
                 b.track_ms, weeks, reads, rate=False),
    ]  # fmt: skip


def main() -> None:
    """`python -m wangge.benchmarks.history [--weeks N] [--scale F]`: on the configured
    services."""
    from wangge.commands.common import progress_bar
    from wangge.settings import DatabaseSettings, KafkaSettings, LocalServicesSettings

    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--weeks", type=int, default=52, help="weeks in all, the measured last")
    parser.add_argument("--scale", type=float, default=1.0, help="fraction of Baoji's workers")
    parser.add_argument("--events", type=int, default=100_000, help="check-ins drained")
    parser.add_argument("--latency-seconds", type=float, default=25.0)
    parser.add_argument("--runs", type=int, default=20, help="runs of each read")
    add_json_option(parser)
    args = parser.parse_args()
    if not 2 <= args.weeks <= 1000 or not 0 < args.scale <= 1:
        parser.error("--weeks from 2 to 1000, --scale in (0, 1]")
    console = report_console()
    database, kafka = DatabaseSettings(), KafkaSettings()
    services.ensure_postgis(database, log=console.print)
    services.ensure_broker(kafka, LocalServicesSettings(), log=console.print)
    before = os.getloadavg()
    began = time.perf_counter()
    with progress_bar() as progress:
        run = run_history_benchmark(
            database.url, kafka.bootstrap, args.weeks, args.scale, progress,
            events=args.events, latency_seconds=args.latency_seconds, query_runs=args.runs,
        )  # fmt: skip
    rows = as_benchmark_rows(run)
    table = render_table(rows)
    table.title = "wangge history benchmark"
    console.print(table)
    for name, value in describe_machine(database.url).items():
        console.print(f"{name}: {value}")
    console.print(
        f"wall time {time.perf_counter() - began:,.0f} s; load average at the start"
        f" {', '.join(f'{x:.2f}' for x in before)}"
    )
    if args.json:
        write_rows(args.json, "history", rows)


if __name__ == "__main__":
    main()
