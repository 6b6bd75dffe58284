"""`wangge bench api`: the API's read endpoints under load, each against a bare FastAPI ceiling.

In one run, on a fresh copy of the reference city: the real app (`create_app`) and a
ceiling app (one async route returning a constant) each run under uvicorn, one worker, in
a process of their own, and a load generator in a third (`wangge.benchmarks.loadgen`)
drives them one endpoint at a time:

1. closed loop with N keep-alive connections: the ceiling, then locate and nearest at
   random points inside the city, bbox (one community's box), tiles at z12 and z14 and
   the OGC items page; requests/s, p50 and p99, each as a ratio to the ceiling's;
2. open loop at a fixed rate: locate at 500 requests/s, and tiles at z12 and z14 at a
   lower rate, each beside the ceiling at the same rate.

Tiles are uncached as a map's first view is: no If-None-Match (the server keeps no tile
cache, so every request renders in PostGIS) and every tile over the city in turn. Both
servers run with the same uvicorn settings, access log off; whatever uvicorn picks for
its loop and HTTP parser shows in the machine description.
"""

import argparse
import importlib.util
import json
import os
import random
import subprocess
import sys
import tempfile
import urllib.request
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import psycopg
from rich.table import Table

from geodata.db.engine import libpq_url
from geodata.db.tiles import tiles_covering
from wangge.benchmarks import harness
from wangge.benchmarks.harness import Progress, reference_database, report_console
from wangge.benchmarks.loadgen import LoadResult
from wangge.benchmarks.rows import BenchmarkRow, add_json_option, write_rows
from wangge.benchmarks.servers import API_FACTORY, CEILING_FACTORY, CEILING_PATH, serve

CONNECTIONS = 16
OPEN_RATE = 500.0
TILE_RATE = 50.0  # a few maps opening each second; a view is a dozen tiles or so
TILE_ZOOMS = (12, 14)
POINTS = 2000
SEED = 2020
OGC_PAGE = 10  # the OGC items default limit
TARGET_LOCATE_RATIO, TARGET_LOCATE_P99_MS, TARGET_TILE_P99_MS = 0.4, 5.0, 15.0
CEILING = "ceiling: bare async FastAPI route"
LOCATE = "GET /api/v1/grids/locate"
TILES = "GET /tiles/"
_PRIME_TIMEOUT_S = 120.0


@dataclass(frozen=True)
class ApiRow:
    """One endpoint under one load, beside the ceiling app under the same load."""

    endpoint: str
    load: str
    result: LoadResult
    ceiling: LoadResult
    target: str = "—"
    met: bool | None = None

    @property
    def rate_ratio(self) -> float:
        """Requests/s as a share of the ceiling's."""
        return self.result.rate / self.ceiling.rate

    @property
    def p50_ratio(self) -> float:
        """p50 latency as a multiple of the ceiling's."""
        return self.result.p50_ms / self.ceiling.p50_ms

    @property
    def p99_ratio(self) -> float:
        """p99 latency as a multiple of the ceiling's."""
        return self.result.p99_ms / self.ceiling.p99_ms


def run_api_benchmark(
    database_url: str,
    bootstrap: str,
    duration_s: float = 10,
    progress: Progress | None = None,
    *,
    reference_database_url: str | None = None,
    connections: int = CONNECTIONS,
    open_rate: float = OPEN_RATE,
    tile_rate: float = TILE_RATE,
) -> list[ApiRow]:
    """Load the ceiling and each endpoint for `duration_s` apiece; one row per measurement.

    The database is made on the server of `database_url` and dropped afterwards; the
    reference dataset is generated there unless `reference_database_url` names a database
    holding it (used as a template, so nothing may be connected to it). `bootstrap` is
    handed to the app, which connects to the broker only to post events (not measured).
    """
    notify: Progress = progress or (lambda _stage, _done, _total: None)
    notify("Preparing a database with the reference dataset", 0, 1)
    with (
        reference_database(database_url, reference_database_url) as url,
        tempfile.TemporaryDirectory(prefix="wangge-bench-api-") as folder,
    ):
        targets = city_targets(url)
        tiles = {name: paths for name, paths in targets.items() if name.startswith(TILES)}
        env = {
            **os.environ,
            "WANGGE_DATABASE_URL": url,
            "WANGGE_KAFKA_BOOTSTRAP": bootstrap,
            "WANGGE_EVENT_MAX_AGE_DAYS": "0",  # the benchmark posts 2020-W37's check-ins
        }
        with (
            serve(CEILING_FACTORY, env) as ceiling_port,
            serve(API_FACTORY, env) as api_port,
        ):
            _prime(api_port, targets)
            bench = _Bench(ceiling_port, api_port, duration_s, Path(folder), notify)
            rows = bench.closed(targets, connections)
            rows += bench.open(open_rate, {LOCATE: targets[LOCATE]}, TARGET_LOCATE_P99_MS)
            rows += bench.open(tile_rate, tiles, TARGET_TILE_P99_MS)
    notify("Done", 1, 1)
    return rows


@dataclass(frozen=True)
class _Bench:
    """Loads the ceiling, then endpoints, under one kind of load; one row each."""

    ceiling_port: int
    api_port: int
    duration_s: float
    folder: Path
    notify: Progress

    def closed(self, targets: dict[str, list[str]], connections: int) -> list[ApiRow]:
        """Closed loop at `connections`; locate judged by its rate against the ceiling's."""
        rows = self._rows(
            targets, ["--closed", str(connections)], f"closed, {connections} connections"
        )
        return [
            replace(
                row,
                target=f"≥ {TARGET_LOCATE_RATIO} × ceiling",
                met=row.rate_ratio >= TARGET_LOCATE_RATIO,
            )
            if row.endpoint == LOCATE
            else row
            for row in rows
        ]

    def open(self, rate: float, targets: dict[str, list[str]], p99_ms: float) -> list[ApiRow]:
        """Open loop at `rate`; every endpoint but the ceiling judged by its p99."""
        rows = self._rows(targets, ["--rate", str(rate)], f"open, {rate:,.0f} requests/s")
        return rows[:1] + [
            replace(row, target=f"p99 ≤ {p99_ms:g} ms", met=row.result.p99_ms <= p99_ms)
            for row in rows[1:]
        ]

    def _rows(self, targets: dict[str, list[str]], how: list[str], label: str) -> list[ApiRow]:
        ceiling = self._load(CEILING, self.ceiling_port, [CEILING_PATH], how)
        rows = [ApiRow(CEILING, label, ceiling, ceiling)]
        for name, paths in targets.items():
            rows.append(ApiRow(name, label, self._load(name, self.api_port, paths, how), ceiling))
        return rows

    def _load(
        self,
        name: str,
        port: int,
        paths: Sequence[str],
        how: list[str],
        *,
        expect_status: str | None = None,
    ) -> LoadResult:
        """Run the load generator in its own process and read its result; every answer must
        be a 2xx, or `expect_status` when given (a 304 measured as such)."""
        self.notify(f"{name}: {' '.join(how)}", 0, 1)
        listing = self.folder / f"paths-{uuid.uuid4().hex[:8]}.json"
        listing.write_text(json.dumps(list(paths)))
        command = [sys.executable, "-m", "wangge.benchmarks.loadgen", str(port), str(listing)]
        # Warm-up before the window (connections, the pool, query plans): a second at most.
        warmup_s = min(1.0, self.duration_s / 2)
        command += [*how, "--duration", str(self.duration_s), "--warmup", str(warmup_s)]
        done = subprocess.run(command, capture_output=True, text=True, check=False)
        if done.returncode != 0:
            raise RuntimeError(f"the load generator failed: {done.stderr.strip()[-2000:]}")
        result = LoadResult(**json.loads(done.stdout))
        wrong = (
            result.failures
            if expect_status is None
            else result.requests - result.statuses.get(expect_status, 0)
        )
        if wrong or not result.requests:
            raise RuntimeError(f"{name}: {result.requests} answered, statuses {result.statuses}")
        return result


# --------------------------------------------------------------------------- the city


def city_targets(database_url: str) -> dict[str, list[str]]:
    """The paths each endpoint is loaded with, in a fixed shuffled order per endpoint."""
    with psycopg.connect(libpq_url(database_url)) as conn:
        # Uniform over the grids in force: every point is in the city, so locate is 200.
        points = conn.execute(
            "SELECT ST_X(d.geom), ST_Y(d.geom) FROM ST_Dump(ST_GeneratePoints("
            "(SELECT ST_Union(geom) FROM grids WHERE valid_to IS NULL), %s, %s)) AS d",
            (POINTS, SEED),
        ).fetchall()
        boxes = conn.execute(
            "SELECT ST_XMin(e), ST_YMin(e), ST_XMax(e), ST_YMax(e) FROM ("
            " SELECT ST_Extent(geom) AS e FROM grids WHERE valid_to IS NULL"
            " GROUP BY community_code) AS communities"
        ).fetchall()
        bounds = conn.execute(
            "SELECT ST_XMin(e), ST_YMin(e), ST_XMax(e), ST_YMax(e) FROM ("
            " SELECT ST_Extent(geom) AS e FROM grids WHERE valid_to IS NULL) AS city"
        ).fetchone()
        count = conn.execute("SELECT count(*) FROM grids WHERE valid_to IS NULL").fetchone()
    if not points or not boxes or bounds is None or count is None:
        raise ValueError("no grids in force: import the reference dataset first")
    west, south, east, north = (float(v) for v in bounds)
    at = [f"lon={lon:.6f}&lat={lat:.6f}" for lon, lat in points]
    targets = {
        LOCATE: [f"/api/v1/grids/locate?{q}" for q in at],
        "GET /api/v1/grids/nearest": [f"/api/v1/grids/nearest?{q}" for q in at],
        "GET /api/v1/grids?bbox= (one community)": [
            "/api/v1/grids?bbox=" + ",".join(f"{v:.6f}" for v in box) for box in boxes
        ],
        **{
            f"{TILES}grids/{z}/x/y.pbf (z{z})": [
                f"/tiles/grids/{t[0]}/{t[1]}/{t[2]}.pbf"
                for t in tiles_covering((west, south, east, north), z)
            ]
            for z in TILE_ZOOMS
        },
        "GET /ogc/collections/grids/items": [
            f"/ogc/collections/grids/items?offset={offset}"
            for offset in range(0, int(count[0]), OGC_PAGE)
        ],
    }
    rng = random.Random(SEED)
    for paths in targets.values():
        rng.shuffle(paths)
    return targets


# --------------------------------------------------------------------------- the run


def _prime(port: int, targets: dict[str, list[str]]) -> None:
    """One request per endpoint first: the grid index and the pool are built before timing."""
    for name, paths in targets.items():
        url = f"http://127.0.0.1:{port}{paths[0]}"
        with urllib.request.urlopen(url, timeout=_PRIME_TIMEOUT_S) as response:
            if response.status != 200:
                raise RuntimeError(f"{name}: {paths[0]} answered {response.status}")


# --------------------------------------------------------------------------- report


def describe_machine(database_url: str) -> dict[str, str]:
    """The pipeline benchmark's machine description, with uvicorn's loop and parser."""
    import uvicorn

    # uvicorn's "auto" picks these when they are installed, else asyncio and h11.
    loop = "uvloop" if importlib.util.find_spec("uvloop") else "asyncio"
    parser = "httptools" if importlib.util.find_spec("httptools") else "h11"
    return {
        **harness.describe_machine(database_url),
        "uvicorn": f"{uvicorn.__version__}, one worker, {loop} loop, {parser} parser",
    }


def render_table(rows: list[ApiRow]) -> Table:
    """The rows as a rich table."""
    table = Table(title="wangge API benchmark")
    for column in ("endpoint", "load", "requests/s", "× ceiling", "p50 ms", "× ceiling",
                   "p99 ms", "× ceiling", "target", "met", "client CPU"):  # fmt: skip
        table.add_column(column, justify="left" if column in ("endpoint", "load") else "right")
    for row in rows:
        own = row.result is row.ceiling
        table.add_row(
            row.endpoint, row.load,
            f"{row.result.rate:,.0f}", "—" if own else f"{row.rate_ratio:.2f}",
            f"{row.result.p50_ms:.2f}", "—" if own else f"{row.p50_ratio:.1f}",
            f"{row.result.p99_ms:.2f}", "—" if own else f"{row.p99_ratio:.1f}",
            row.target, {True: "yes", False: "NO", None: "—"}[row.met],
            f"{row.result.client_cpu_share:.0%}",
        )  # fmt: skip
    return table


def as_benchmark_rows(rows: list[ApiRow]) -> list[BenchmarkRow]:
    """The rows in the shape every benchmark shares: closed loop by rate, open loop by p99.

    The ceiling's own rows are left out: each endpoint's row carries it as the peer.
    """
    shared = []
    for row in rows:
        if row.result is row.ceiling:
            continue
        result, ceiling = row.result, row.ceiling
        if row.load.startswith("closed"):
            ours, unit, peer, ratio = result.rate, "requests/s", ceiling.rate, row.rate_ratio
        else:
            ours, unit, peer, ratio = result.p99_ms, "ms p99", ceiling.p99_ms, row.p99_ratio
        shared.append(
            BenchmarkRow(
                f"{row.endpoint}, {row.load}", ours, unit, peer, CEILING, ratio, row.target,
                row.met, f"{result.rate:,.0f} requests/s; p50 {result.p50_ms:.2f} ms"
                f" (ceiling {ceiling.p50_ms:.2f}), p99 {result.p99_ms:.2f} ms"
                f" (ceiling {ceiling.p99_ms:.2f}); client CPU {result.client_cpu_share:.0%}",
            )
        )  # fmt: skip
    return shared


def main() -> None:
    """`python -m wangge.benchmarks.api [--duration S]`: run on the configured services."""
    from wangge import services
    from wangge.settings import DatabaseSettings, KafkaSettings

    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--duration", type=float, default=10.0, help="seconds per measurement")
    parser.add_argument("--connections", type=int, default=CONNECTIONS)
    parser.add_argument("--rate", type=float, default=OPEN_RATE, help="open-loop locate rate")
    parser.add_argument("--tile-rate", type=float, default=TILE_RATE)
    add_json_option(parser)
    args = parser.parse_args()
    console = report_console()
    database = DatabaseSettings()
    services.ensure_postgis(database, log=console.print)
    before = describe_machine(database.url)
    rows = run_api_benchmark(
        database.url,
        KafkaSettings().bootstrap,
        args.duration,
        progress=lambda stage, _done, _total: console.print(f"… {stage}"),
        connections=args.connections,
        open_rate=args.rate,
        tile_rate=args.tile_rate,
    )
    console.print(render_table(rows))
    for name, value in before.items():
        console.print(f"{name}: {value}")
    console.print(f"load average at the end: {', '.join(f'{x:.2f}' for x in os.getloadavg())}")
    if args.json:
        write_rows(args.json, "api", as_benchmark_rows(rows))


if __name__ == "__main__":
    main()
