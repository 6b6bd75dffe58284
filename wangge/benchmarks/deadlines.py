"""The deadline benchmark: from a due moment to its escalation published, among 100,000
open cases.

A fresh migrated database gets `--cases` open cases due in a month (the load the engine
carries) and `--probes` more whose due moments fall one after another at `--rate` per
second from a few seconds after the engine has loaded. The engine (`event_consumers.
deadlines`, on the wall clock, as it runs in production where events carry the present)
and the status outbox's publisher run as in the intake stage; a probe's latency is its
outbox row's `published_at` (set once the broker acknowledged the record) less its due
moment. The simulator files a few hundred incidents a day, so due moments come far
apart; the default rate, one a second, is well above it.
"""

import argparse
import time
import uuid
from datetime import UTC, datetime, timedelta

import numpy as np
import psycopg

from event_consumers.deadlines import DeadlineEngine, DeadlineEngineThread
from event_consumers.outbox import INCIDENT_STATUS_OUTBOX, OutboxPublisher, OutboxPublisherThread
from geodata.contract import Topics
from geodata.db import migrate
from wangge import services
from wangge.benchmarks.harness import DatabaseServer, report_console, scalar
from wangge.benchmarks.rows import BenchmarkRow

TARGET_P99_S = 1.0
GRID = "610302001001003"


class WallClock:
    """The present, whatever the events say."""

    def now(self) -> datetime | None:
        """The wall clock."""
        return datetime.now(UTC)

    def observe(self, event_time: datetime) -> None:
        """Ignored."""


def _fill(url: str, cases: int, probes: int, first_due: datetime, rate: float) -> None:
    """`cases` open cases due in a month and `probes` due `1/rate` s apart from `first_due`."""
    with psycopg.connect(url) as conn:
        conn.execute(
            "INSERT INTO incidents (incident_id, event_id, category, source, reported_at, lon,"
            " lat, geom, grid_code, community_code, staff_id, assignment_rule, status, payload,"
            " due_at)"
            " SELECT id, id, 'environment.garbage', 'hotline', now(), 107.15, 34.37,"
            " ST_SetSRID(ST_MakePoint(107.15, 34.37), 4326), %s, %s, 'W00001', 'contains',"
            " 'dispatched', '{}'::jsonb, %s + (n * interval '1 second')"
            " FROM (SELECT gen_random_uuid() AS id, n FROM generate_series(1, %s) n) s",
            (GRID, GRID[:12], first_due + timedelta(days=30), cases),
        )
        conn.execute(
            "INSERT INTO incidents (incident_id, event_id, category, source, reported_at, lon,"
            " lat, geom, grid_code, community_code, staff_id, assignment_rule, status, payload,"
            " due_at)"
            " SELECT id, id, 'environment.garbage', 'hotline', now(), 107.15, 34.37,"
            " ST_SetSRID(ST_MakePoint(107.15, 34.37), 4326), %s, %s, 'W00001', 'contains',"
            " 'dispatched', '{}'::jsonb, %s + ((n - 1) * %s * interval '1 second')"
            " FROM (SELECT gen_random_uuid() AS id, n FROM generate_series(1, %s) n) s",
            (GRID, GRID[:12], first_due, 1.0 / rate, probes),
        )


def run_deadline_benchmark(
    database_url: str, bootstrap: str, cases: int, probes: int, rate: float
) -> list[BenchmarkRow]:
    """Load the cases, let the probes fall due, and measure due moment -> published."""
    topics = Topics.under(f"bench{uuid.uuid4().hex[:8]}.")
    services.ensure_topics(bootstrap, 1, topics)
    server = DatabaseServer(database_url)
    try:
        url = server.url_of(server.create())
        migrate.upgrade(url)
        lead = 15.0 + cases / 20000  # time to load the queue before the first probe
        first_due = datetime.now(UTC) + timedelta(seconds=lead)
        _fill(url, cases, probes, first_due, rate)
        engine = DeadlineEngine(url, WallClock())
        loaded = time.perf_counter()
        engine.load()
        load_s = time.perf_counter() - loaded
        engine.close()
        publisher = OutboxPublisherThread(
            OutboxPublisher(url, bootstrap, topics.incident_status, INCIDENT_STATUS_OUTBOX)
        )
        runner = DeadlineEngineThread(DeadlineEngine(url, WallClock()))
        publisher.start()
        runner.start()
        end = first_due + timedelta(seconds=probes / rate + 10)
        try:
            with psycopg.connect(url, autocommit=True) as conn:
                while datetime.now(UTC) < end:
                    done = scalar(
                        conn,
                        "SELECT count(*) FROM incident_status_changes"
                        " WHERE published_at IS NOT NULL",
                    )
                    if done >= probes:
                        break
                    time.sleep(0.5)
                rows = conn.execute(
                    "SELECT extract(epoch FROM c.published_at - (c.body->>'at')::timestamptz)"
                    " FROM incident_status_changes c WHERE c.published_at IS NOT NULL"
                ).fetchall()
                queued = scalar(conn, "SELECT count(*) FROM incident_status_changes")
        finally:
            runner.stop()
            publisher.stop()
    finally:
        server.drop_created()
        services.delete_topics(bootstrap, topics)
    latencies = np.array([float(row[0]) for row in rows])
    if latencies.size == 0:
        raise RuntimeError("no escalation was published")
    p50, p99 = np.percentile(latencies, [50, 99])
    detail = (
        f"{cases:,} open cases queued in {load_s:.2f} s; {len(latencies)} of {probes} probes"
        f" published ({queued} changes queued) at {rate:g}/s; p50 {p50 * 1000:.0f} ms,"
        f" max {latencies.max() * 1000:.0f} ms"
    )
    return [
        BenchmarkRow(
            name="deadline: due moment -> escalation published, p99",
            ours=round(float(p99) * 1000, 1),
            unit="ms",
            peer=None,
            peer_name="",
            ratio=None,
            target=f"<= {TARGET_P99_S * 1000:g} ms",
            met=bool(p99 <= TARGET_P99_S and len(latencies) == probes and queued == probes),
            detail=detail,
        )
    ]


def main() -> None:
    """`python -m wangge.benchmarks.deadlines`: run on the configured services."""
    from wangge.benchmarks.harness import render_table
    from wangge.benchmarks.rows import add_json_option, write_rows
    from wangge.settings import DatabaseSettings, KafkaSettings, LocalServicesSettings

    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--cases", type=int, default=100_000, help="open cases queued")
    parser.add_argument("--probes", type=int, default=120, help="cases that fall due")
    parser.add_argument("--rate", type=float, default=1.0, help="due moments per second")
    add_json_option(parser)
    args = parser.parse_args()
    console = report_console()
    database, kafka = DatabaseSettings(), KafkaSettings()
    services.ensure_postgis(database, log=console.print)
    services.ensure_broker(kafka, LocalServicesSettings(), log=console.print)
    rows = run_deadline_benchmark(database.url, kafka.bootstrap, args.cases, args.probes, args.rate)
    console.print(render_table(rows))
    if args.json:
        write_rows(args.json, "deadlines", rows)


if __name__ == "__main__":
    main()
