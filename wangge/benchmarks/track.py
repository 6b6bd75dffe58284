"""`wangge bench track`: one worker's week of fixes (about 500) under load, against a bare
FastAPI ceiling in the same run.

On a fresh copy of the reference city with a week of walks seeded as the pipeline stores
it (`wangge.benchmarks.walk_seed`), the real app and the ceiling app (one async route
returning a constant) each run under uvicorn, one worker, in a process of their own; the
load generator (`wangge.benchmarks.loadgen`) drives each in a closed loop of 16 keep-alive
connections: `GET /api/v1/workers/{id}/track?from=&to=` for the whole week, one page, with
a supervisor's bearer token (the area filter on, as a supervisor's map asks). Target: p99
<= 50 ms (issue #15). Then the same page as a browser asks for it (`Accept-Encoding:
gzip`), and revalidated (`If-None-Match` with the page's ETag, a 304 while unchanged), as
a map replaying the week would.
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
TRACK_GZIP = "the same, Accept-Encoding: gzip"
TRACK_REVALIDATED = "the same, If-None-Match (304)"


@dataclass(frozen=True)
class TrackRun:
    """The track and the ceiling under the same closed loop, and the page's size."""

    track: LoadResult
    ceiling: LoadResult
    fixes: int
    page_bytes: int
    connections: int
    gzipped: LoadResult
    gzip_bytes: int
    revalidated: LoadResult

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
            gzip_headers = headers | {"Accept-Encoding": "gzip"}
            request = urllib.request.Request(request.full_url, headers=gzip_headers)
            with urllib.request.urlopen(request, timeout=60) as response:
                gzip_bytes = len(response.read())  # urllib does not decode it
                gzip_etag = response.headers.get("ETag")
            # A server that sends no ETag is asked plainly again (a 200 each time).
            revalidate = gzip_headers | ({"If-None-Match": gzip_etag} if gzip_etag else {})
            bench = _Bench(ceiling_port, api_port, duration_s, Path(folder), notify)
            how = ["--closed", str(connections)]
            ceiling = bench._load(CEILING, ceiling_port, [CEILING_PATH], how)
            track, gzipped, revalidated = [
                bench._load(name, api_port, [_target(path, sent)], how, expect_status=ok)
                for name, sent, ok in (
                    (TRACK, headers, None),
                    (TRACK_GZIP, gzip_headers, None),
                    (TRACK_REVALIDATED, revalidate, "304" if gzip_etag else None),
                )
            ]
    notify("Done", 1, 1)
    return TrackRun(track, ceiling, fixes, len(page), connections, gzipped, gzip_bytes, revalidated)


def _target(path: str, headers: dict[str, str]) -> str:
    # The load generator takes a path or {"path", "headers"}; `_Bench._load` is typed for
    # paths alone, and passes either on as JSON.
    return {"path": path, "headers": headers}  # type: ignore[return-value]


def render_table(run: TrackRun) -> Table:
    """The run as a rich table."""
    table = Table(
        title=f"wangge track benchmark: {run.fixes} fixes, {run.page_bytes:,} bytes"
        f" ({run.gzip_bytes:,} gzipped)"
    )
    for column in ("endpoint", "requests/s", "p50 ms", "p99 ms", "max ms", "target", "met"):
        table.add_column(column, justify="left" if column == "endpoint" else "right")
    goal = f"p99 ≤ {TARGET_P99_MS:g} ms"
    for name, result, target, met in (
        (CEILING, run.ceiling, "—", "—"),
        (TRACK, run.track, goal, "yes" if run.met else "NO"),
        (TRACK_GZIP, run.gzipped, goal, _met(run.gzipped)),
        (TRACK_REVALIDATED, run.revalidated, goal, _met(run.revalidated)),
    ):
        table.add_row(
            name, f"{result.rate:,.0f}", f"{result.p50_ms:.2f}", f"{result.p99_ms:.2f}",
            f"{result.max_ms:.2f}", target, met,
        )  # fmt: skip
    return table


def _met(result: LoadResult) -> str:
    return "yes" if result.p99_ms <= TARGET_P99_MS else "NO"


def as_benchmark_rows(run: TrackRun) -> list[BenchmarkRow]:
    """The run in the shape every benchmark shares: each track row's p99 beside the
    ceiling's."""
    ceiling = run.ceiling
    return [
        BenchmarkRow(
            f"{name}, closed, {run.connections} connections", track.p99_ms, "ms p99",
            ceiling.p99_ms, CEILING, track.p99_ms / ceiling.p99_ms,
            f"p99 ≤ {TARGET_P99_MS:g} ms", track.p99_ms <= TARGET_P99_MS,
            f"{run.fixes} fixes, {size:,} bytes a page; {track.rate:,.0f} requests/s"
            f" (ceiling {ceiling.rate:,.0f}); p50 {track.p50_ms:.2f} ms"
            f" (ceiling {ceiling.p50_ms:.2f}); client CPU {track.client_cpu_share:.0%}",
        )
        for name, track, size in (
            (TRACK, run.track, run.page_bytes),
            (TRACK_GZIP, run.gzipped, run.gzip_bytes),
            (TRACK_REVALIDATED, run.revalidated, 0),
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
