"""`wangge bench evaluation`: GET /api/v1/evaluation for the whole city and a month of cases.

A copy of the reference city gets a simulated month (October 2020) of cases at the
simulator's rate (`incidents_per_day`, 300), each with a history as the workflow and the
deadlines write it (dispatch, reassignment, start, escalation by the clock or a person,
resolve, reopen, overdue mark, close, cancel), written by COPY. The real app then answers
the city's evaluation, by district and by grid, to 16 closed-loop clients, beside the
ceiling (a bare FastAPI route) under the same load in the same run; target p99 <= 200 ms.
The first answer, computed from the database rather than kept, is timed on its own.
"""

import argparse
import random
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import psycopg

from geodata.db.engine import libpq_url
from wangge.benchmarks.api import ApiRow
from wangge.benchmarks.city_reads import load_city_reads, report_city_reads
from wangge.benchmarks.harness import describe_machine, reference_database, report_console
from wangge.benchmarks.rows import add_json_option

TZ = ZoneInfo("Asia/Shanghai")
MONTH_START = datetime(2020, 10, 1, tzinfo=TZ)
DAYS = 31
CASES_PER_DAY = 300
CONNECTIONS = 16
TARGET_P99_MS = 200.0
SEED = 2020
CATEGORIES = (
    "environment.garbage",
    "environment.road_not_clean",
    "street_order.unlicensed_vendor",
    "street_order.illegal_parking",
    "public_facilities.manhole_cover",
)
SOURCES = ("worker", "worker", "worker", "hotline", "open311")
PERIOD = "from=2020-10-01&to=2020-10-31"
PATHS = {
    "evaluation, city by district": f"/api/v1/evaluation?{PERIOD}&level=district",
    "evaluation, city by grid": f"/api/v1/evaluation?{PERIOD}&level=grid",
}


Entry = tuple[str, str, str, str | None, str, str, datetime]
"""(action, from, to, assignee, actor, role, at): one history entry."""


@dataclass(frozen=True)
class _Place:
    grid: str
    lon: float
    lat: float
    workers: tuple[str, ...]


def _places(conn: psycopg.Connection) -> list[_Place]:
    rows = conn.execute(
        "SELECT g.code, ST_X(ST_PointOnSurface(g.geom)), ST_Y(ST_PointOnSurface(g.geom)),"
        " array_agg(DISTINCT a.worker_id) FROM grids g JOIN worker_assignments a"
        " ON a.grid_code = g.code AND a.valid_to IS NULL WHERE g.valid_to IS NULL"
        " GROUP BY g.code, g.geom"
    ).fetchall()
    return [_Place(r[0], float(r[1]), float(r[2]), tuple(r[3])) for r in rows]


def _history(rng: random.Random, at: datetime, workers: tuple[str, ...]) -> Iterator[Entry]:
    """(action, from, to, assignee, actor, role, at) of one case, oldest first."""
    status, holder = "reported", None

    def step(action: str, to: str, who: str | None, role: str, hours: float) -> Entry:
        nonlocal at, status, holder
        at = at + timedelta(hours=rng.expovariate(1 / hours))
        entry = (action, status, to, who, "deadlines" if role == "system" else "bench", role, at)
        status, holder = to, who
        return entry

    if rng.random() < 0.1:
        yield step("escalate", "escalated", None, "system", 3)
    if rng.random() < 0.05:
        yield step("cancel", "cancelled", None, "supervisor", 2)
        return
    yield step("dispatch", "dispatched", rng.choice(workers), "supervisor", 1.5)
    if rng.random() < 0.1:
        yield step("dispatch", "dispatched", rng.choice(workers), "supervisor", 2)
    yield step("start", "in_progress", holder, "worker", 3)
    if rng.random() < 0.1:
        yield step("escalate", "escalated", None, "system", 30)
        yield step("dispatch", "dispatched", rng.choice(workers), "supervisor", 2)
        yield step("start", "in_progress", holder, "worker", 2)
    yield step("resolve", "resolved", holder, "worker", 20)
    if rng.random() < 0.1:
        yield step("reopen", "in_progress", holder, "supervisor", 6)
        yield step("resolve", "resolved", holder, "worker", 10)
    if rng.random() < 0.9:
        yield step("close", "closed", holder, "supervisor", 6)


def seed_month(url: str, seed: int = SEED, per_day: int = CASES_PER_DAY) -> tuple[int, int]:
    """Write a month of cases and their histories; (cases, history entries)."""
    rng = random.Random(seed)
    cases = events = 0
    with psycopg.connect(libpq_url(url)) as conn:
        places = _places(conn)
        with conn.cursor() as cursor:
            with cursor.copy(
                "COPY incidents (incident_id, event_id, category, source, reporter_id,"
                " reported_at, lon, lat, geom, grid_code, community_code, staff_id,"
                " assignment_rule, status, version, payload) FROM STDIN"
            ) as incidents:
                histories = []
                for _ in range(DAYS * per_day):
                    place = rng.choice(places)
                    incident_id = uuid.UUID(int=rng.getrandbits(128), version=4)
                    reported = MONTH_START + timedelta(seconds=rng.uniform(0, DAYS * 86400))
                    source = rng.choice(SOURCES)
                    history = list(_history(rng, reported, place.workers))
                    last = history[-1] if history else None
                    incidents.write_row(
                        (
                            incident_id,
                            incident_id,
                            rng.choice(CATEGORIES),
                            source,
                            rng.choice(place.workers) if source == "worker" else None,
                            reported,
                            place.lon,
                            place.lat,
                            f"SRID=4326;POINT({place.lon} {place.lat})",
                            place.grid,
                            place.grid[:12],
                            last[3] if last else None,
                            "contains",
                            last[2] if last else "reported",
                            len(history) + 1,
                            "{}",
                        )
                    )
                    histories.append((incident_id, history))
                    cases += 1
            with cursor.copy(
                "COPY incident_events (incident_id, version, action, from_status, to_status,"
                " assignee, actor, actor_role, at) FROM STDIN"
            ) as entries:
                for incident_id, history in histories:
                    for version, entry in enumerate(history, start=2):
                        entries.write_row((incident_id, version, *entry))
                        events += 1
        conn.execute("ANALYZE incidents")
        conn.execute("ANALYZE incident_events")
    return cases, events


def run_evaluation_benchmark(
    database_url: str, duration_s: float, reference_database_url: str | None = None
) -> tuple[list[ApiRow], dict[str, float]]:
    """Seed a month, serve the app and the ceiling, load both; the rows and the first answers."""
    console = report_console()
    with reference_database(database_url, reference_database_url) as url:
        began = time.perf_counter()
        cases, events = seed_month(url)
        console.print(
            f"… {cases:,} cases and {events:,} history entries written"
            f" in {time.perf_counter() - began:.1f} s"
        )
        return load_city_reads(url, PATHS, duration_s, CONNECTIONS, TARGET_P99_MS, console)


def main() -> None:
    """`python -m wangge.benchmarks.evaluation [--duration S]`: on the configured services."""
    from wangge import services
    from wangge.settings import DatabaseSettings

    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--duration", type=float, default=10.0, help="seconds per measurement")
    add_json_option(parser)
    args = parser.parse_args()
    console = report_console()
    database = DatabaseSettings()
    services.ensure_postgis(database, log=console.print)
    before = describe_machine(database.url)
    rows, first = run_evaluation_benchmark(database.url, args.duration)
    report_city_reads(console, "evaluation", rows, first, before, args.json)


if __name__ == "__main__":
    main()
