"""How fast the compliance engine folds a simulated week of patrols, and how fast it reads.

One run on one machine (broker and PostGIS on it too), in a fresh database holding the
reference dataset and a fresh topic namespace. Every worker walks their grid a few times
in 2020-W37 with a fix every 30 s; the week is produced in time order, then `wangge
consume` (all three handlers, as production runs them) folds it in. Fresh check-ins at a
steady rate then give the time from a check-in's arrival to its status being readable,
and the city-wide compliance read is timed directly and over HTTP.
"""

import argparse
import statistics
import subprocess
import tempfile
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import psycopg

import kafka_clients
from event_consumers.app import COMPLIANCE_STAGE, stage_group_id
from event_consumers.publisher import Publisher
from event_consumers.records import OutboundRecord
from geodata.contract import Topics
from wangge import services
from wangge.benchmarks.compliance_days import BATCH, DayCosts, measure_day_costs
from wangge.benchmarks.compliance_latency import (
    TIME_EVERY,
    Latency,
    SustainedRate,
    highest_sustained_rate,
    measure_latency,
    unpublished,
)
from wangge.benchmarks.compliance_week import (
    SEED,
    WEEK,
    FoldCheck,
    WeekPlan,
    check_fold,
    plan_week,
)
from wangge.benchmarks.harness import (
    PARTITIONS,
    Progress,
    committed,
    consumer_processes,
    describe_machine,
    reference_database,
    render_table,
    report_console,
)
from wangge.benchmarks.history_load import vacuum_analyze
from wangge.benchmarks.rows import BenchmarkRow

TARGET_P99_MS = 1000.0
TARGET_QUERY_MS = 100.0
TARGET_RATE_SHARE = 0.5
TARGET_DAY_RATIO = 1.2
RATE_SHARES = (0.25, 0.5, 0.75, 1.0)
PRODUCE_CHUNK = 50_000
DRAIN_POLL_S = 0.25


# --------------------------------------------------------------------------- services


def _produce(bootstrap: str, topic: str, plan: WeekPlan, notify: Progress) -> float:
    """Produce every fix with acks=all, as fast as kafka-python goes; return the seconds."""
    producer = kafka_clients.producer(
        kafka_clients.KafkaConfig(bootstrap), "bench", acks="all", linger_ms=20
    )
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
            checkins = committed(conn, group, topics.checkins)
            folded = committed(conn, stage_group_id(group, COMPLIANCE_STAGE), topics.assignments)
            now = time.perf_counter()
            if first is None and checkins >= expected:
                # All of it committed between two polls (a small run on a fast machine):
                # time it from the poll before, which saw none, rather than divide by zero.
                first = (previous, 0)
            elif first is None and checkins:
                first = (now, checkins)
            if checkins_at is None and checkins >= expected:
                checkins_at = now
            if first and checkins_at and folded >= expected and not unpublished(conn):
                return Fold(
                    expected - first[1], first[0] - started, checkins_at - first[0], now - first[0]
                )
            notify("Folding the week into patrols", folded, expected)
            if any(p.poll() is not None for p in processes) or now - started > timeout_s:
                tail = "".join(p.read_text()[-2000:] for p in sorted(logs.glob(f"{group}-*.log")))
                raise RuntimeError(f"stopped at {checkins} check-ins, {folded} folded:\n{tail}")
            previous = now
            time.sleep(DRAIN_POLL_S)


# --------------------------------------------------------------------------- reading


def median_ms(call: Callable[[], object], runs: int) -> float:
    """Median ms of `runs` calls, after 3 warm-ups (connections, prepared plans, caches)."""
    for _ in range(3):
        call()
    times = []
    for _ in range(runs):
        began = time.perf_counter()
        call()
        times.append(time.perf_counter() - began)
    return statistics.median(times) * 1000


def time_city_wide_read(url: str, bootstrap: str, runs: int) -> tuple[float, float, int]:
    """Median ms of `compliance_report` (worker level, whole city) and of the HTTP GET."""
    from fastapi.testclient import TestClient

    from geodata.db.compliance_read import compliance_report
    from geodata.db.engine import create_db_engine
    from grid_service.app import ApiConfig, create_app
    from wangge.users_cli import add_user

    engine = create_db_engine(url)
    try:
        as_of = datetime.now(UTC)
        items = len(compliance_report(engine, WEEK, as_of).items)
        direct = median_ms(lambda: compliance_report(engine, WEEK, as_of, level="worker"), runs)
    finally:
        engine.dispose()
    # The whole city is an admin's to read; the token is checked as for any caller.
    headers = {"Authorization": f"Bearer {add_user(url, 'bench-admin', 'admin', None, None)}"}
    with TestClient(create_app(ApiConfig(url, bootstrap)), headers=headers) as client:

        def get() -> None:
            client.get("/api/v1/compliance", params={"week": str(WEEK)}).raise_for_status()

        http = median_ms(get, runs)
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
            reference_database(database_url, reference_database_url) as url,
            tempfile.TemporaryDirectory(prefix="wangge-bench-") as logs,
        ):
            notify("Planning the week's walks", 0, 1)
            plan = plan_week(url, workers, fix_interval_s)
            produce_s = _produce(bootstrap, topics.checkins, plan, notify)
            group = f"bench-{uuid.uuid4().hex[:8]}"
            # Every handler, as production runs them; SIGTERMed at the end.
            with consumer_processes(
                url, bootstrap, topics, group, processes, Path(logs), stop_timeout_s=60
            ) as running:
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
                # This machine's PostgreSQL runs without autovacuum; a city's would have
                # analysed the growing tables during the week (and invalidated the plans
                # the consumers prepared while they were empty: a DELETE of a batch's
                # patrol days kept a scan of the whole table: 5.2 ms a batch, 0.85 after ANALYZE).
                notify("VACUUM ANALYZE, as autovacuum would have during the week", 0, 1)
                vacuum_analyze(url)
                notify(f"Latency at {latency_rate:,.0f} check-ins/s", 0, 1)
                latency = measure_latency(
                    url,
                    bootstrap,
                    topics.checkins,
                    plan.a_week_later(SEED + 1),
                    latency_rate,
                    latency_seconds,
                )
                base_rate = fold.records / fold.checkins_s
                notify("The compliance stage's highest rate with p99 within the target", 0, 1)
                stage = highest_sustained_rate(
                    url,
                    bootstrap,
                    topics.assignments,
                    plan,
                    base_rate,
                    latency_seconds,
                    TARGET_P99_MS,
                    RATE_SHARES,
                    assignments=True,
                )
                notify("The same, end to end", 0, 1)
                end_to_end = highest_sustained_rate(
                    url,
                    bootstrap,
                    topics.checkins,
                    plan,
                    base_rate,
                    latency_seconds,
                    TARGET_P99_MS,
                    RATE_SHARES,
                    first_week=2 + len(RATE_SHARES),
                )
            notify("Cost per check-in, Monday and Sunday", 0, 1)
            days = measure_day_costs(url, plan, 2 + 2 * len(RATE_SHARES), SEED + 7)
            notify("Timing the city-wide read", 0, 1)
            read = time_city_wide_read(url, bootstrap, query_runs)
    finally:
        services.delete_topics(bootstrap, topics)
    notify("Done", 1, 1)
    return _rows(plan, produce_s, fold, checked, latency, read, processes) + _stage_rows(
        stage, end_to_end, days
    )


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
    steady = f"{latency.events:,} check-ins at {latency.rate:,.0f}/s, one in {TIME_EVERY} timed,"
    steady += " seen every"
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


def _steps(sustained: SustainedRate) -> str:
    steps = "; ".join(
        f"{share:.2f}× ({share * sustained.base_rate:,.0f}/s): "
        + (f"p99 {lat.p99_ms:,.0f} ms" if lat else "never drained")
        for share, lat in sustained.steps
    )
    return (
        f"check-in stage {sustained.base_rate:,.0f}/s in this run; held"
        f" {sustained.rate:,.0f}/s; steps tried, each on a fresh week: {steps}"
    )


def _stage_rows(
    stage: SustainedRate, end_to_end: SustainedRate, days: DayCosts
) -> list[BenchmarkRow]:
    return [
        _row(
            "compliance stage: highest rate with p99 ≤ 1 s, × check-in stage",
            stage.ratio,
            "×",
            "assignments produced as the storage stage makes them, to their status"
            f" readable; {_steps(stage)}",
            target=f"≥ {TARGET_RATE_SHARE}",
            met=stage.ratio >= TARGET_RATE_SHARE,
        ),
        _row(
            "end to end: highest rate with arrival → status p99 ≤ 1 s, × check-in stage",
            end_to_end.ratio,
            "×",
            "check-ins through both stages, the load generator, broker and PostgreSQL on the"
            f" same cores; {_steps(end_to_end)}",
        ),
        _row(
            "compliance stage cost per check-in, Sunday / Monday",
            days.ratio,
            "×",
            f"{days.workers:,} workers walking every day of a week; Monday"
            f" {days.monday_us:,.0f} µs over {days.monday_events:,} check-ins, Sunday"
            f" {days.sunday_us:,.0f} µs over {days.sunday_events:,} (the week filled"
            f" Monday to Saturday first); in process, {BATCH:,} per committed batch",
            target=f"≤ {TARGET_DAY_RATIO}",
            met=days.ratio <= TARGET_DAY_RATIO,
        ),
    ]


def main() -> None:
    """`python -m wangge.benchmarks.compliance [--workers N]`: run on the configured services."""
    from wangge.benchmarks.rows import add_json_option, write_rows
    from wangge.commands.common import progress_bar
    from wangge.settings import DatabaseSettings, KafkaSettings, LocalServicesSettings

    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--workers", type=int, default=None, help="default: all 2,381")
    parser.add_argument("--fix-interval", type=int, default=30, help="seconds between fixes")
    parser.add_argument("--latency-seconds", type=float, default=25.0)
    parser.add_argument("--processes", type=int, default=1, help="`wangge consume` processes")
    add_json_option(parser)
    args = parser.parse_args()
    console = report_console()
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
