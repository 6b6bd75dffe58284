"""`wangge bench track`: one worker's week of fixes (about 500) under load, against a bare
FastAPI ceiling in the same run.

On a fresh copy of the reference city with a week of walks seeded as the pipeline stores
it (`wangge.benchmarks.walk_seed`), the real app and the ceiling app (one async route
returning a constant) each run under uvicorn, one worker, in a process of their own; the
load generator (`wangge.benchmarks.loadgen`) drives each in a closed loop of 16 keep-alive
connections: `GET /api/v1/workers/{id}/track?from=&to=` for the whole week, one page, with
a supervisor's bearer token (the area filter on, as a supervisor's map asks). Target: p99
<= 50 ms (issue #15).
"""

import argparse
import json
import os
import tempfile
import urllib.parse
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from rich.table import Table

from wangge.benchmarks.api import CEILING, CONNECTIONS, _Bench, describe_machine
from wangge.benchmarks.harness import Progress, reference_database, report_console
from wangge.benchmarks.loadgen import LoadResult
from wangge.benchmarks.rows import BenchmarkRow, add_json_option, write_rows
from wangge.benchmarks.servers import API_FACTORY, CEILING_FACTORY, CEILING_PATH, serve
from wangge.benchmarks.walk_seed import local_week_bounds, seed_walk_week

TARGET_P99_MS = 50.0
TRACK = "GET /api/v1/workers/{id}/track (a week)"


@dataclass(frozen=True)
class TrackRun:
    """The track and the ceiling under the same closed loop, and the page's size."""

    track: LoadResult
    ceiling: LoadResult
    fixes: int
    page_bytes: int
    connections: int

    @property
    def met(self) -> bool:
        """Whether the track's p99 is within the target."""
        return self.track.p99_ms <= TARGET_P99_MS


def run_track_benchmark(
    database_url: str,
    duration_s: float = 10,
    progress: Progress | None = None,
    *,
    reference_database_url: str | None = None,
    connections: int = CONNECTIONS,
) -> TrackRun:
    """Seed a week, then load the ceiling and the track for `duration_s` each."""
    from wangge.users_cli import add_user

    notify: Progress = progress or (lambda _stage, _done, _total: None)
    notify("Preparing a database with the reference dataset and a week of walks", 0, 1)
    with (
        reference_database(database_url, reference_database_url) as url,
        tempfile.TemporaryDirectory(prefix="wangge-bench-track-") as folder,
    ):
        walk = seed_walk_week(url)
        token = add_user(url, "bench-track", "supervisor", walk.grid_code[:6], None)
        start, end = local_week_bounds(walk.week)
        query = urllib.parse.urlencode({"from": start.isoformat(), "to": end.isoformat()})
        path = f"/api/v1/workers/{walk.worker_id}/track?{query}"
        headers = {"Authorization": f"Bearer {token}"}
        env = {**os.environ, "WANGGE_DATABASE_URL": url, "WANGGE_KAFKA_BOOTSTRAP": "127.0.0.1:9"}
        with serve(CEILING_FACTORY, env) as ceiling_port, serve(API_FACTORY, env) as api_port:
            request = urllib.request.Request(f"http://127.0.0.1:{api_port}{path}", headers=headers)
            with urllib.request.urlopen(request, timeout=60) as response:
                page = response.read()
            fixes = int(json.loads(page)["number_returned"])
            if fixes < 400:
                raise RuntimeError(f"the seeded week answered {fixes} fixes, not about 500")
            bench = _Bench(ceiling_port, api_port, duration_s, Path(folder), notify)
            how = ["--closed", str(connections)]
            ceiling = bench._load(CEILING, ceiling_port, [CEILING_PATH], how)
            track = bench._load(TRACK, api_port, [{"path": path, "headers": headers}], how)  # type: ignore[list-item]
    notify("Done", 1, 1)
    return TrackRun(track, ceiling, fixes, len(page), connections)


def render_table(run: TrackRun) -> Table:
    """The run as a rich table."""
    table = Table(title=f"wangge track benchmark: {run.fixes} fixes, {run.page_bytes:,} bytes")
    for column in ("endpoint", "requests/s", "p50 ms", "p99 ms", "max ms", "target", "met"):
        table.add_column(column, justify="left" if column == "endpoint" else "right")
    for name, result, target, met in (
        (CEILING, run.ceiling, "—", "—"),
        (TRACK, run.track, f"p99 ≤ {TARGET_P99_MS:g} ms", "yes" if run.met else "NO"),
    ):
        table.add_row(
            name, f"{result.rate:,.0f}", f"{result.p50_ms:.2f}", f"{result.p99_ms:.2f}",
            f"{result.max_ms:.2f}", target, met,
        )  # fmt: skip
    return table


def as_benchmark_rows(run: TrackRun) -> list[BenchmarkRow]:
    """The run in the shape every benchmark shares: the track's p99 beside the ceiling's."""
    track, ceiling = run.track, run.ceiling
    return [
        BenchmarkRow(
            f"{TRACK}, closed, {run.connections} connections", track.p99_ms, "ms p99",
            ceiling.p99_ms, CEILING, track.p99_ms / ceiling.p99_ms,
            f"p99 ≤ {TARGET_P99_MS:g} ms", run.met,
            f"{run.fixes} fixes, {run.page_bytes:,} bytes a page; {track.rate:,.0f} requests/s"
            f" (ceiling {ceiling.rate:,.0f}); p50 {track.p50_ms:.2f} ms"
            f" (ceiling {ceiling.p50_ms:.2f}); client CPU {track.client_cpu_share:.0%}",
        )
    ]  # fmt: skip


def main() -> None:
    """`python -m wangge.benchmarks.track [--duration S]`: run on the configured database."""
    from wangge import services
    from wangge.settings import DatabaseSettings

    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--duration", type=float, default=10.0, help="seconds per measurement")
    parser.add_argument("--connections", type=int, default=CONNECTIONS)
    add_json_option(parser)
    args = parser.parse_args()
    console = report_console()
    database = DatabaseSettings()
    services.ensure_postgis(database, log=console.print)
    before = describe_machine(database.url)
    run = run_track_benchmark(
        database.url,
        args.duration,
        progress=lambda stage, _done, _total: console.print(f"… {stage}"),
        connections=args.connections,
    )
    console.print(render_table(run))
    for name, value in before.items():
        console.print(f"{name}: {value}")
    console.print(f"load average at the end: {', '.join(f'{x:.2f}' for x in os.getloadavg())}")
    if args.json:
        write_rows(args.json, "track", as_benchmark_rows(run))


if __name__ == "__main__":
    main()
