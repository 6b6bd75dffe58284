"""`wangge bench trackers`: OsmAnd fixes through the gateway against JSON check-ins.

In one run, on a fresh copy of the reference city, the real app (`create_app`, one
uvicorn worker in a process of its own, access log off) is loaded by the load generator
(`wangge.benchmarks.loadgen`, another process) with a closed loop of N keep-alive
connections, alternately:

- `POST /api/v1/checkins`: one JSON check-in per request, with a worker's bearer token;
- `GET /api/v1/trackers/osmand/{secret}?id=…&lat=…&lon=…&timestamp=…`: the same fixes as
  Traccar Client and the OsmAnd app send them, one device per worker.

Both end the same way, produced to grid.checkins.v1 and acknowledged by the broker
(acks=all) before the answer; what differs is what comes before: a bearer token and a
JSON body, or a device secret in the path and a query to decode. The rounds alternate
(JSON, OsmAnd, JSON, OsmAnd, ...) so that a noisy machine weighs on both alike; each
side's rate is its requests over its seconds in all rounds. The target is OsmAnd ≥ 0.8 ×
the JSON check-in's rate. The fixes are spread over many workers, so that no token or
device reaches its write allowance (20 per second).
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
import urllib.request
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlencode, urlsplit

import psycopg
from rich.table import Table

from geodata.accounts import account_spec
from geodata.contract import Topics
from geodata.db import accounts_store, devices_store
from geodata.db.engine import create_db_engine, libpq_url, unit_of_work
from geodata.trackers import TrackerKind, device_url
from wangge import services
from wangge.benchmarks.harness import (
    PARTITIONS,
    Progress,
    describe_machine,
    reference_database,
    report_console,
)
from wangge.benchmarks.loadgen import LoadResult
from wangge.benchmarks.rows import BenchmarkRow, add_json_option, write_rows
from wangge.benchmarks.servers import API_FACTORY, serve

CONNECTIONS = 16
WORKERS = 200
FIXES_PER_WORKER = 10
ROUNDS = 2
TARGET_RATIO = 0.8
JSON_CHECKIN = "POST /api/v1/checkins (JSON, bearer token)"
OSMAND = "GET /api/v1/trackers/osmand/{secret} (OsmAnd query)"


@dataclass(frozen=True)
class Fix:
    """One worker's fix, to be posted both ways."""

    worker_id: str
    token: str
    device: str
    secret: str
    lon: float
    lat: float
    at: datetime


@dataclass(frozen=True)
class TrackerRun:
    """Both endpoints' results, each summed over its rounds, and every round's rate."""

    json: LoadResult
    osmand: LoadResult
    json_rates: list[float]
    osmand_rates: list[float]

    @property
    def ratio(self) -> float:
        """OsmAnd's requests/s as a share of the JSON check-in's."""
        return self.osmand.rate / self.json.rate


def _fixes(url: str, workers: int, per_worker: int) -> list[Fix]:
    """Workers with a point inside their grid, each with a token and an OsmAnd device."""
    with psycopg.connect(libpq_url(url)) as conn:
        rows = conn.execute(
            "SELECT DISTINCT ON (a.worker_id) a.worker_id, ST_X(p), ST_Y(p)"
            " FROM worker_assignments a JOIN grids g ON g.code = a.grid_code AND g.valid_to IS NULL"
            " CROSS JOIN LATERAL ST_PointOnSurface(g.geom) AS p"
            " ORDER BY a.worker_id LIMIT %s",
            (workers,),
        ).fetchall()
    engine = create_db_engine(url)
    start = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=1)
    fixes = []
    try:
        with unit_of_work(engine) as session:
            for worker_id, lon, lat in rows:
                spec = account_spec(f"bench-{worker_id}", "worker", None, worker_id)
                token = accounts_store.add_token(
                    session, accounts_store.create_account(session, spec)
                )
                device, secret = devices_store.register_device(
                    session, worker_id, TrackerKind.OSMAND, None
                )
                fixes += [
                    Fix(worker_id, token, device.identifier, secret, round(lon, 6), round(lat, 6),
                        start + timedelta(seconds=30 * i))
                    for i in range(per_worker)
                ]  # fmt: skip
    finally:
        engine.dispose()
    # Worker after worker in each round of fixes: no credential posts twice in a row.
    return sorted(fixes, key=lambda fix: (fix.at, fix.worker_id))


def json_target(fix: Fix) -> dict[str, Any]:
    """The JSON check-in of a fix, as a phone posts it."""
    body = json.dumps(
        {
            "event_id": str(uuid.uuid4()),
            "worker_id": fix.worker_id,
            "lon": fix.lon,
            "lat": fix.lat,
            "recorded_at": fix.at.isoformat(),
            "accuracy_m": 8.0,
        }
    )
    headers = {"Authorization": f"Bearer {fix.token}", "Content-Type": "application/json"}
    return {"method": "POST", "path": "/api/v1/checkins", "headers": headers, "body": body}


def osmand_target(fix: Fix) -> str:
    """The same fix as Traccar Client sends it: a GET of its device's URL and a query."""
    path = urlsplit(device_url("http://x", TrackerKind.OSMAND, fix.secret)).path
    query = {
        "id": fix.device, "timestamp": int(fix.at.timestamp()), "lat": fix.lat, "lon": fix.lon,
        "speed": 2.72, "bearing": 93.0, "altitude": 611.0, "accuracy": 8.0, "batt": 87.0,
    }  # fmt: skip
    return f"{path}?{urlencode(query)}"


def run_trackers_benchmark(
    database_url: str,
    bootstrap: str,
    duration_s: float = 10,
    rounds: int = ROUNDS,
    progress: Progress | None = None,
    *,
    reference_database_url: str | None = None,
    connections: int = CONNECTIONS,
) -> TrackerRun:
    """Load both endpoints in alternating rounds of `duration_s`; their summed results."""
    notify: Progress = progress or (lambda _stage, _done, _total: None)
    notify("Preparing a database with the reference dataset", 0, 1)
    topics = Topics.under(f"bench{uuid.uuid4().hex[:8]}.")
    services.ensure_topics(bootstrap, PARTITIONS, topics)
    try:
        with (
            reference_database(database_url, reference_database_url) as url,
            tempfile.TemporaryDirectory(prefix="wangge-bench-trackers-") as folder,
        ):
            fixes = _fixes(url, WORKERS, FIXES_PER_WORKER)
            targets: dict[str, list[str | dict[str, Any]]] = {
                JSON_CHECKIN: [json_target(fix) for fix in fixes],
                OSMAND: [osmand_target(fix) for fix in fixes],
            }
            env = {
                **os.environ,
                "WANGGE_DATABASE_URL": url,
                "WANGGE_KAFKA_BOOTSTRAP": bootstrap,
                "WANGGE_TOPIC_NAMESPACE": topics.checkins.removesuffix(Topics().checkins),
                "WANGGE_EVENT_MAX_AGE_DAYS": "0",
            }
            with serve(API_FACTORY, env) as port:
                _prime(port, fixes[0])
                results: dict[str, list[LoadResult]] = {JSON_CHECKIN: [], OSMAND: []}
                for round_ in range(rounds):
                    for name, paths in targets.items():
                        notify(f"{name}: round {round_ + 1} of {rounds}", round_, rounds)
                        results[name].append(
                            _load(port, paths, connections, duration_s, Path(folder))
                        )
    finally:
        services.delete_topics(bootstrap, topics)
    notify("Done", 1, 1)
    return TrackerRun(
        _summed(results[JSON_CHECKIN]),
        _summed(results[OSMAND]),
        [r.rate for r in results[JSON_CHECKIN]],
        [r.rate for r in results[OSMAND]],
    )


def _prime(port: int, fix: Fix) -> None:
    """One request of each first: the pool, the caches and the producer are warm."""
    target = json_target(fix)
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}{target['path']}",
        data=target["body"].encode(),
        headers=target["headers"],
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=60) as response:
        if response.status != 202:
            raise RuntimeError(f"the JSON check-in answered {response.status}")
    with urllib.request.urlopen(f"http://127.0.0.1:{port}{osmand_target(fix)}", timeout=60) as r:
        if r.status != 200:
            raise RuntimeError(f"the OsmAnd endpoint answered {r.status}")


def _load(
    port: int, targets: Sequence[str | dict[str, Any]], connections: int, duration_s: float,
    folder: Path,
) -> LoadResult:  # fmt: skip
    """Run the load generator in its own process and read its result."""
    listing = folder / f"targets-{uuid.uuid4().hex[:8]}.json"
    listing.write_text(json.dumps(list(targets)))
    command = [sys.executable, "-m", "wangge.benchmarks.loadgen", str(port), str(listing)]
    command += ["--closed", str(connections), "--duration", str(duration_s)]
    command += ["--warmup", str(min(1.0, duration_s / 2))]
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"the load generator failed: {done.stderr.strip()[-2000:]}")
    result = LoadResult(**json.loads(done.stdout))
    if result.failures or not result.requests:
        raise RuntimeError(f"{result.requests} answered, statuses {result.statuses}")
    return result


def _summed(results: Sequence[LoadResult]) -> LoadResult:
    """The rounds as one: requests and seconds added; the worst round's percentiles."""
    statuses: dict[str, int] = {}
    for result in results:
        for status, count in result.statuses.items():
            statuses[status] = statuses.get(status, 0) + count
    return LoadResult(
        requests=sum(r.requests for r in results),
        failures=sum(r.failures for r in results),
        seconds=sum(r.seconds for r in results),
        p50_ms=max(r.p50_ms for r in results),
        p99_ms=max(r.p99_ms for r in results),
        max_ms=max(r.max_ms for r in results),
        client_cpu_share=max(r.client_cpu_share for r in results),
        statuses=statuses,
    )


def as_benchmark_rows(run: TrackerRun, connections: int = CONNECTIONS) -> list[BenchmarkRow]:
    """One row: OsmAnd's rate beside the JSON check-in's, measured in the same run."""
    json_side, osmand = run.json, run.osmand
    rounds = ", ".join(
        f"{j:,.0f}/{o:,.0f}" for j, o in zip(run.json_rates, run.osmand_rates, strict=True)
    )
    return [
        BenchmarkRow(
            f"OsmAnd GET through the gateway, closed, {connections} connections",
            osmand.rate, "requests/s", json_side.rate, "JSON POST /api/v1/checkins, same run",
            run.ratio, f"≥ {TARGET_RATIO} × JSON check-in", run.ratio >= TARGET_RATIO,
            f"rounds JSON/OsmAnd {rounds} requests/s; p50 {osmand.p50_ms:.2f} ms"
            f" (JSON {json_side.p50_ms:.2f}), p99 {osmand.p99_ms:.2f} ms"
            f" (JSON {json_side.p99_ms:.2f}); client CPU {osmand.client_cpu_share:.0%}",
        )
    ]  # fmt: skip


def render_table(run: TrackerRun) -> Table:
    """Both endpoints as a rich table."""
    table = Table(title="wangge tracker endpoints benchmark")
    for column in ("endpoint", "requests/s", "rounds", "p50 ms", "p99 ms", "client CPU"):
        table.add_column(column, justify="left" if column == "endpoint" else "right")
    for name, result, rates in (
        (JSON_CHECKIN, run.json, run.json_rates),
        (OSMAND, run.osmand, run.osmand_rates),
    ):
        table.add_row(
            name, f"{result.rate:,.0f}", ", ".join(f"{r:,.0f}" for r in rates),
            f"{result.p50_ms:.2f}", f"{result.p99_ms:.2f}", f"{result.client_cpu_share:.0%}",
        )  # fmt: skip
    return table


def main() -> None:
    """`python -m wangge.benchmarks.trackers [--duration S] [--rounds N]`."""
    from wangge.settings import DatabaseSettings, KafkaSettings

    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--duration", type=float, default=10.0, help="seconds per round")
    parser.add_argument("--rounds", type=int, default=ROUNDS, help="rounds of each endpoint")
    parser.add_argument("--connections", type=int, default=CONNECTIONS)
    add_json_option(parser)
    args = parser.parse_args()
    console = report_console()
    database = DatabaseSettings()
    services.ensure_postgis(database, log=console.print)
    machine = describe_machine(database.url)
    run = run_trackers_benchmark(
        database.url,
        KafkaSettings().bootstrap,
        args.duration,
        args.rounds,
        progress=lambda stage, _done, _total: console.print(f"… {stage}"),
        connections=args.connections,
    )
    console.print(render_table(run))
    verdict = "met" if run.ratio >= TARGET_RATIO else "NOT met"
    console.print(f"OsmAnd / JSON check-in: {run.ratio:.2f} (target ≥ {TARGET_RATIO}: {verdict})")
    for name, value in machine.items():
        console.print(f"{name}: {value}")
    console.print(f"load average at the end: {', '.join(f'{x:.2f}' for x in os.getloadavg())}")
    if args.json:
        write_rows(args.json, "trackers", as_benchmark_rows(run, args.connections))


if __name__ == "__main__":
    main()
