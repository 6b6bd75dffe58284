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
import time

from geodata.db.engine import create_db_engine
from wangge.benchmarks.api import ApiRow
from wangge.benchmarks.city_reads import load_city_reads, report_city_reads
from wangge.benchmarks.coverage_seed import seed_week
from wangge.benchmarks.harness import describe_machine, reference_database, report_console
from wangge.benchmarks.rows import add_json_option

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
    console = report_console()
    with reference_database(database_url, reference_database_url) as url:
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
        return load_city_reads(url, PATHS, duration_s, CONNECTIONS, TARGET_P99_MS, console)


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
    report_city_reads(console, "coverage", rows, first, before, args.json)


if __name__ == "__main__":
    main()
