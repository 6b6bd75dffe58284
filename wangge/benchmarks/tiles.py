"""How long the API takes to serve vector tiles it has not served before, at z12 and z14.

"Uncached" means what a map's first view costs: no If-None-Match, so every request
renders its tile in PostGIS (the server keeps no tile cache; PostgreSQL's buffers are
warm, as they are on a running server). One keep-alive connection, one request at a
time, timed from the request's first byte to the body's last.
"""

import argparse
import contextlib
import json
import math
import os
import socket
import statistics
import subprocess
import sys
import time
import urllib.parse
from collections.abc import Iterator, Sequence
from http.client import HTTPConnection, HTTPSConnection
from typing import TYPE_CHECKING, Any

from geodata.db.tiles import tiles_covering

if TYPE_CHECKING:
    from fastapi import FastAPI

Tile = tuple[int, int, int]

DEFAULT_ZOOMS = (12, 14)
TARGET_P99_MS = 15.0


def run_tile_benchmark(
    base_url: str,
    tiles: Sequence[Tile] | None = None,
    *,
    layer: str = "grids",
    zooms: Sequence[int] = DEFAULT_ZOOMS,
    rounds: int = 3,
    timeout_s: float = 10.0,
) -> dict[str, float]:
    """Latency of uncached tile requests, p50 and p99 per zoom, in milliseconds.

    `tiles` defaults to every tile at `zooms` over the layer's bounds (from its TileJSON).
    Each round fetches every tile once, so each zoom has `rounds` samples per tile.
    """
    parsed = urllib.parse.urlsplit(base_url.rstrip("/"))
    with _connection(parsed, timeout_s) as connection:
        if tiles is None:
            status, body = _get(connection, f"{parsed.path}/tiles/{layer}.json")
            if status != 200:
                raise RuntimeError(f"GET /tiles/{layer}.json answered {status}")
            west, south, east, north = json.loads(body)["bounds"]
            tiles = [tile for z in zooms for tile in tiles_covering((west, south, east, north), z)]
        if not tiles:
            raise ValueError("no tiles to fetch")
        # One request first: the connection, the pool and the prepared plans warm up, as
        # they are on a server that has run for more than a second.
        _get(connection, _tile_path(parsed.path, layer, tiles[0]))
        samples: dict[int, list[float]] = {}
        sizes: dict[int, list[int]] = {}
        for _ in range(rounds):
            for tile in tiles:
                started = time.perf_counter()
                status, body = _get(connection, _tile_path(parsed.path, layer, tile))
                elapsed_ms = (time.perf_counter() - started) * 1000
                if status != 200:
                    raise RuntimeError(f"tile {tile} answered {status}")
                samples.setdefault(tile[0], []).append(elapsed_ms)
                sizes.setdefault(tile[0], []).append(len(body))
    figures: dict[str, float] = {}
    for z in sorted(samples):
        times = sorted(samples[z])
        figures[f"z{z}_tiles"] = float(len(times) // rounds)
        figures[f"z{z}_requests"] = float(len(times))
        figures[f"z{z}_p50_ms"] = statistics.median(times)
        figures[f"z{z}_p99_ms"] = _percentile(times, 0.99)
        figures[f"z{z}_max_ms"] = times[-1]
        figures[f"z{z}_mean_kib"] = statistics.fmean(sizes[z]) / 1024
    return figures


def _percentile(ordered: list[float], q: float) -> float:
    """The nearest-rank percentile of sorted samples (no interpolation, so a real sample)."""
    return ordered[max(1, math.ceil(len(ordered) * q)) - 1]


def _tile_path(prefix: str, layer: str, tile: Tile) -> str:
    z, x, y = tile
    return f"{prefix}/tiles/{layer}/{z}/{x}/{y}.pbf"


@contextlib.contextmanager
def _connection(url: urllib.parse.SplitResult, timeout_s: float) -> Iterator[HTTPConnection]:
    factory = HTTPSConnection if url.scheme == "https" else HTTPConnection
    connection = factory(url.hostname or "127.0.0.1", url.port, timeout=timeout_s)
    try:
        yield connection
    finally:
        connection.close()


def _get(connection: HTTPConnection, path: str) -> tuple[int, bytes]:
    # no-cache also tells any proxy on the way to go to the server.
    connection.request("GET", path, headers={"Cache-Control": "no-cache"})
    response = connection.getresponse()
    return response.status, response.read()


def create_tiles_app() -> "FastAPI":
    """An app with only the tiles router, on the configured database (a uvicorn factory)."""
    import asyncio

    from fastapi import FastAPI

    from geodata.db.engine import create_db_engine
    from grid_service.errors import install_error_handlers
    from grid_service.routing import add_routes
    from grid_service.tiles import router
    from wangge.settings import DatabaseSettings, TileCacheSettings

    app = FastAPI()
    install_error_handlers(app)
    add_routes(app, router)
    app.state.engine = create_db_engine(DatabaseSettings().url)
    app.state.tile_draws = asyncio.Semaphore(TileCacheSettings().tile_draws)
    return app


@contextlib.contextmanager
def serve_tiles(database_url: str) -> Iterator[str]:
    """Serve the tiles router alone on a free local port, in its own process; yield its URL.

    Its own process, because a server thread would share this one's GIL with the timing
    client and add the client's pauses to the tiles' latency.
    """
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = int(probe.getsockname()[1])
    command = [
        sys.executable,
        "-m",
        "uvicorn",
        "wangge.benchmarks.tiles:create_tiles_app",
        "--factory",
    ]
    command += ["--port", str(port), "--log-level", "warning", "--no-access-log"]
    env = {**os.environ, "WANGGE_DATABASE_URL": database_url}
    server = subprocess.Popen(command, env=env)
    try:
        deadline = time.monotonic() + 30
        while True:
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2):
                break
            if time.monotonic() > deadline or server.poll() is not None:
                raise RuntimeError("the tile server did not start")
            time.sleep(0.05)
        yield f"http://127.0.0.1:{port}"
    finally:
        server.terminate()
        server.wait(timeout=10)


def main(argv: Sequence[str] | None = None) -> None:
    """`python -m wangge.benchmarks.tiles [--base-url URL]`: print the figures as JSON."""
    from wangge.settings import DatabaseSettings

    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--base-url", help="a running API; default: serve the tiles here")
    parser.add_argument("--layer", default="grids")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args(argv)
    figures: dict[str, Any]
    if args.base_url:
        figures = run_tile_benchmark(args.base_url, layer=args.layer, rounds=args.rounds)
    else:
        with serve_tiles(DatabaseSettings().url) as base_url:
            figures = run_tile_benchmark(base_url, layer=args.layer, rounds=args.rounds)
    figures["target_p99_ms"] = TARGET_P99_MS
    print(json.dumps(figures, indent=2))


if __name__ == "__main__":
    main()
