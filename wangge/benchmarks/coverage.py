"""`wangge bench coverage`: GET /api/v1/coverage for the whole city and a week of walks.

A copy of the reference city gets 2020-W37's walks of every worker assigned all week (or
`--workers` of them), a fix a minute, through the real storage stage (which ORs covered
cells in) and compliance stage (which writes the counted patrols), as
`wangge.benchmarks.coverage_seed` runs them. The real app then answers the city's week
of coverage, per grid and per district, to 16 closed-loop clients, beside the ceiling (a
bare FastAPI route) under the same load in the same run; target p99 <= 200 ms. The first
answer after the server starts is timed on its own.
"""

import argparse
import os
import tempfile
import time
from dataclasses import replace
from pathlib import Path

from geodata.db.engine import create_db_engine
from wangge.benchmarks.api import ApiRow, _Bench, render_table
from wangge.benchmarks.coverage_seed import seed_week
from wangge.benchmarks.evaluation import _first_answer_ms, as_benchmark_rows
from wangge.benchmarks.harness import describe_machine, reference_database, report_console
from wangge.benchmarks.rows import add_json_option, write_rows
from wangge.benchmarks.servers import API_FACTORY, CEILING_FACTORY, serve

CONNECTIONS = 16
TARGET_P99_MS = 200.0
WEEK = "from=2020-09-07&to=2020-09-13"
PATHS = {
    "coverage, city's week by grid": f"/api/v1/coverage?{WEEK}&level=grid",
    "coverage, city's week by district": f"/api/v1/coverage?{WEEK}&level=district",
}


def run_coverage_benchmark(
    database_url: str,
    duration_s: float,
    workers: int | None = None,
    reference_database_url: str | None = None,
) -> tuple[list[ApiRow], dict[str, float]]:
    """Seed the week, serve the app and the ceiling, load both; the rows and first answers."""
    from wangge.users_cli import add_user

    console = report_console()
    with (
        reference_database(database_url, reference_database_url) as url,
        tempfile.TemporaryDirectory(prefix="wangge-bench-coverage-") as folder,
    ):
        began = time.perf_counter()
        engine = create_db_engine(url)
        try:
            plan = seed_week(engine, url, workers)
            with engine.connect() as conn:
                days = conn.exec_driver_sql("SELECT count(*) FROM coverage_days").scalar_one()
                conn.exec_driver_sql("ANALYZE")
        finally:
            engine.dispose()
        console.print(
            f"… {len(plan.pairs):,} workers' week: {len(plan.at_s):,} fixes, {days:,} covered"
            f" grid-days, through both stages in {time.perf_counter() - began:.1f} s"
        )
        token = add_user(url, "bench-admin", "admin", None, None)
        env = {**os.environ, "WANGGE_DATABASE_URL": url, "WANGGE_KAFKA_BOOTSTRAP": "127.0.0.1:9"}
        with serve(CEILING_FACTORY, env) as ceiling_port, serve(API_FACTORY, env) as api_port:
            first = {name: _first_answer_ms(api_port, path, token) for name, path in PATHS.items()}
            targets = {
                name: [{"path": path, "headers": {"Authorization": f"Bearer {token}"}}]
                for name, path in PATHS.items()
            }
            bench = _Bench(
                ceiling_port,
                api_port,
                duration_s,
                Path(folder),
                lambda stage, _done, _total: console.print(f"… {stage}"),
            )
            rows = bench._rows(
                targets,  # type: ignore[arg-type]
                ["--closed", str(CONNECTIONS)],
                f"closed, {CONNECTIONS} connections",
            )
    judged = [
        row
        if row.result is row.ceiling
        else replace(
            row, target=f"p99 ≤ {TARGET_P99_MS:g} ms", met=row.result.p99_ms <= TARGET_P99_MS
        )
        for row in rows
    ]
    return judged, first


def main() -> None:
    """`python -m wangge.benchmarks.coverage [--duration S] [--workers N]`: on the services."""
    from wangge import services
    from wangge.settings import DatabaseSettings

    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--duration", type=float, default=10.0, help="seconds per measurement")
    parser.add_argument(
        "--workers", type=int, default=None, help="walk this many workers (default: all)"
    )
    add_json_option(parser)
    args = parser.parse_args()
    console = report_console()
    database = DatabaseSettings()
    services.ensure_postgis(database, log=console.print)
    before = describe_machine(database.url)
    rows, first = run_coverage_benchmark(database.url, args.duration, args.workers)
    console.print(render_table(rows))
    for name, ms in first.items():
        console.print(f"{name}: first answer after start {ms:.0f} ms")
    for name, value in before.items():
        console.print(f"{name}: {value}")
    console.print(f"load average at the end: {', '.join(f'{x:.2f}' for x in os.getloadavg())}")
    if args.json:
        write_rows(args.json, "coverage", as_benchmark_rows(rows, first))


if __name__ == "__main__":
    main()
