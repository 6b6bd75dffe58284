"""`wangge bench peers`: wangge beside tipg and a bare FastAPI route, same city, same load.

In one run, each server under uvicorn (one worker, access log off) in a process of its
own, each on its own copy of the reference city (so that each one's new PostgreSQL
sessions can be counted apart): wangge as `wangge serve` configures it; wangge again with
its tile cache off, whose every tile is drawn as a first view's is; tipg (FastAPI +
asyncpg, the OGC Features and Tiles server GIS users pick, from its own environment:
`wangge.benchmarks.peer_env`) publishing the same `grids` table; and a bare FastAPI app
with one async route returning a constant. The load generator
(`wangge.benchmarks.loadgen`, closed loop, 16 keep-alive connections) drives one read at
a time in rounds alternated ours / peer / ours / peer, so that both sides see the same
machine. Reads: OGC items pages of 100 grids, one community's bbox, one feature by id and
tiles at z12 and z14 drawn each time (against tipg); tile cache hits, tile 304
revalidations, `nearest` and the city-wide compliance of the open week (against the bare
route); and the sessions wangge opened from its start to the end of the run, against its
pool size.
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import psycopg

from geodata.compliance import IsoWeek
from wangge.benchmarks.harness import DatabaseServer, Progress, database_of
from wangge.benchmarks.loadgen import LoadResult, Target
from wangge.benchmarks.peer_env import DEFAULT_FOLDER, PeerEnvironment, ensure_peer_environment
from wangge.benchmarks.peer_reads import (
    BARE,
    CONNECTIONS,
    RENDERING,
    SERVER_NAMES,
    TILE_ZOOMS,
    TIPG,
    WANGGE,
    City,
    Read,
    plan_reads,
    read_city,
    tipg_env,
)
from wangge.benchmarks.peer_results import (
    PeerRow,
    PeersResult,
    Sessions,
    Side,
    as_benchmark_rows,
    render_table,
)
from wangge.benchmarks.servers import API_FACTORY, CEILING_FACTORY, Server, serve_all

ROUNDS = 2  # pairs: ours, peer, ours, peer
DURATION_S = 5.0
_PRIME_TIMEOUT_S = 120.0


# --------------------------------------------------------------------------- servers


def _get(port: int, target: Target) -> tuple[int, dict[str, str], bytes]:
    """One request with urllib: status, headers and body (a 304 is not an error here)."""
    path, headers = (target, {}) if isinstance(target, str) else (target["path"], target["headers"])
    request = urllib.request.Request(f"http://127.0.0.1:{port}{path}", headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=_PRIME_TIMEOUT_S) as response:
            return response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, dict(exc.headers), exc.read()


def tile_etags(port: int, city: City) -> dict[tuple[int, int, int], str]:
    """Every tile fetched once from wangge (so its cache holds them all): their ETags."""
    etags = {}
    for tile in (t for z in TILE_ZOOMS for t in city.tiles[z]):
        status, headers, _ = _get(port, "/tiles/grids/{}/{}/{}.pbf".format(*tile))
        if status != 200 or "etag" not in {name.lower() for name in headers}:
            raise RuntimeError(f"tile {tile}: {status}, headers {headers}")
        etags[tile] = next(v for k, v in headers.items() if k.lower() == "etag")
    return etags


def session_count(server: DatabaseServer, url: str) -> int:
    """Sessions ever opened to the database of `url` (counted at connection time)."""
    # Asked from the `postgres` database, so that asking opens no session on it.
    with psycopg.connect(server.url_of("postgres"), autocommit=True) as conn:
        row = conn.execute(
            "SELECT sessions FROM pg_stat_database WHERE datname = %s", (database_of(url),)
        ).fetchone()
    return int(row[0]) if row else 0


# --------------------------------------------------------------------------- the run


@dataclass
class _Loader:
    """Runs the load generator in its own process, one round at a time."""

    folder: Path
    connections: int
    duration_s: float

    def round(
        self, port: int, paths: Sequence[Target], status: str, duration_s: float | None = None
    ) -> LoadResult:
        """One closed-loop round; every answer must have `status`.

        A round in which no answer arrived (each took longer than the round, as on a
        loaded machine in a short run) is run again four times as long, once.
        """
        duration_s = duration_s or self.duration_s
        for attempt in (duration_s, 4 * duration_s):
            result = self._run(port, paths, attempt)
            if result.requests:
                break
        if not result.requests or set(result.statuses) != {status}:
            raise RuntimeError(f"{paths[0]}: {result.requests} answered, {result.statuses}")
        return result

    def warm(self, port: int, paths: Sequence[Target]) -> None:
        """A round whose figures are dropped (its answers may well all be late)."""
        self._run(port, paths, min(2.0, self.duration_s))

    def _run(self, port: int, paths: Sequence[Target], duration_s: float) -> LoadResult:
        listing = self.folder / f"paths-{uuid.uuid4().hex[:8]}.json"
        listing.write_text(json.dumps(list(paths)))
        command = [sys.executable, "-m", "wangge.benchmarks.loadgen", str(port), str(listing)]
        command += ["--closed", str(self.connections), "--duration", str(duration_s)]
        # Warm-up before the window: connections opened, every one with a request out.
        command += ["--warmup", str(min(1.0, duration_s / 2))]
        done = subprocess.run(command, capture_output=True, text=True, check=False)
        if done.returncode != 0:
            raise RuntimeError(f"the load generator failed: {done.stderr.strip()[-2000:]}")
        return LoadResult(**json.loads(done.stdout))


def _feature_ids(body: bytes) -> list[object] | None:
    """The ids of a GeoJSON feature or collection, in order; None for anything else."""
    if not body.startswith(b"{"):
        return None
    document = json.loads(body)
    if document.get("type") == "Feature":
        return [document.get("id")]
    features = document.get("features")
    return [f.get("id") for f in features] if isinstance(features, list) else None


def _prime(ports: dict[str, int], read: Read) -> tuple[int, int]:
    """One request to each side first (snapshots, plans, caches); the answers' sizes.

    Where both answer GeoJSON, they must hold the same features in the same order, or
    the two would not be doing the same work.
    """
    answers = []
    for server, target, status in ((read.ours_server, read.ours[0], read.ours_status),
                                   (read.peer_server, read.peer[0], "200")):  # fmt: skip
        got, _, body = _get(ports[server], target)
        if str(got) != status:
            raise RuntimeError(
                f"{read.name}: {SERVER_NAMES[server]} answered {got}: {body[:300]!r}"
            )
        answers.append(body)
    ours, peer = (_feature_ids(body) for body in answers)
    if ours is not None and peer is not None and ours != peer:
        raise RuntimeError(f"{read.name}: features {ours[:5]}… against the peer's {peer[:5]}…")
    return len(answers[0]), len(answers[1])


def _warm_up(loader: _Loader, ports: dict[str, int], reads: Sequence[Read]) -> None:
    """An unmeasured round on each server first, so that its pool is open to working size.

    tipg's asyncpg pool opens connections as concurrency asks (each running tipg's catalog
    SQL), wangge's pool likewise: a cost of starting, not of the first read measured.
    """
    warmed: set[str] = set()
    for read in reads:
        for server, paths in ((read.ours_server, read.ours), (read.peer_server, read.peer)):
            if server not in warmed:
                warmed.add(server)
                loader.warm(ports[server], paths)


def _measure(
    loader: _Loader,
    ports: dict[str, int],
    reads: Sequence[Read],
    sizes: Sequence[tuple[int, int]],
    rounds: int,
    notify: Progress,
) -> list[PeerRow]:
    """Each read in rounds alternated ours / peer; one row each."""
    total, rows = len(reads) * rounds * 2, []
    for i, (read, (ours_bytes, peer_bytes)) in enumerate(zip(reads, sizes, strict=True)):
        ours_rounds, peer_rounds = [], []
        for r in range(rounds):
            done = (i * rounds + r) * 2
            notify(f"{read.name}: {SERVER_NAMES[read.ours_server]}", done, total)
            ours_rounds.append(loader.round(ports[read.ours_server], read.ours, read.ours_status))
            notify(f"{read.name}: {SERVER_NAMES[read.peer_server]}", done + 1, total)
            peer_rounds.append(loader.round(ports[read.peer_server], read.peer, "200"))
        rows.append(PeerRow(read, Side(read.ours_server, ours_rounds, ours_bytes),
                            Side(read.peer_server, peer_rounds, peer_bytes)))  # fmt: skip
    notify("Measured", total, total)
    return rows


@contextmanager
def _databases(database_url: str, template_url: str | None) -> Iterator[list[str]]:
    """Three copies of the reference city: wangge's, the tile-drawing wangge's, tipg's."""
    server = DatabaseServer(database_url)
    try:
        template = database_of(template_url) if template_url else server.build_reference()
        yield [server.copy(template) for _ in range(3)]
    finally:
        server.drop_created()


@contextmanager
def _servers(
    peer: PeerEnvironment, env: dict[str, str], urls: Sequence[str], folder: Path
) -> Iterator[dict[str, int]]:
    """The four servers, started together; their ports by name."""
    ours_url, drawing_url, tipg_url = urls
    servers = {
        BARE: Server(CEILING_FACTORY, env),
        TIPG: Server("tipg.main:app", tipg_env(tipg_url), peer.python, is_factory=False,
                     cwd=folder),
        RENDERING: Server(API_FACTORY, {**env, "WANGGE_DATABASE_URL": drawing_url,
                                        "WANGGE_TILE_CACHE_MB": "0"}),
        WANGGE: Server(API_FACTORY, {**env, "WANGGE_DATABASE_URL": ours_url}),
    }  # fmt: skip
    with serve_all(list(servers.values())) as ports:
        yield dict(zip(servers, ports, strict=True))


def run_peers_benchmark(
    database_url: str,
    bootstrap: str,
    *,
    duration_s: float = DURATION_S,
    rounds: int = ROUNDS,
    connections: int = CONNECTIONS,
    peer_folder: Path = DEFAULT_FOLDER,
    reference_database_url: str | None = None,
    progress: Progress | None = None,
) -> PeersResult:
    """Serve the city with each server, load every read in alternated rounds; the rows.

    Databases are made on the server of `database_url` and dropped afterwards; the
    reference dataset is generated there unless `reference_database_url` names a database
    holding it (copied as a template, so nothing may be connected to it).
    """
    from wangge.settings import DatabaseSettings, PatrolSettings
    from wangge.users_cli import add_user

    notify: Progress = progress or (lambda _stage, _done, _total: None)
    notify(f"Installing tipg into {peer_folder} (first run only)", 0, 0)
    peer = ensure_peer_environment(peer_folder)
    notify("Preparing the reference city", 0, 0)
    pool_size = DatabaseSettings().db_pool_size
    stats = DatabaseServer(database_url)
    with (
        _databases(database_url, reference_database_url) as urls,
        tempfile.TemporaryDirectory(prefix="wangge-bench-peers-") as folder,
    ):
        ours_url = urls[0]
        city = read_city(ours_url)
        week = IsoWeek.week_of(datetime.now(UTC), PatrolSettings().compliance_config().tz)
        # The whole city is an admin's to read; the token is checked as for any caller.
        token = add_user(ours_url, "bench-admin", "admin", None, None)
        env = {**os.environ, "WANGGE_KAFKA_BOOTSTRAP": bootstrap}
        before = [session_count(stats, url) for url in urls]
        notify("Starting wangge (twice), tipg and the bare route", 0, 0)
        with _servers(peer, env, urls, Path(folder)) as ports:
            notify("Fetching every tile once from wangge; a round on each server", 0, 0)
            reads = plan_reads(city, tile_etags(ports[WANGGE], city), week, token)
            loader = _Loader(Path(folder), connections, duration_s)
            # Every read once (the compliance memory starts with its first request), then
            # the pools opened: what is counted after that is the steady load's.
            sizes = [_prime(ports, read) for read in reads]
            _warm_up(loader, ports, reads)
            warm = session_count(stats, ours_url)
            rows = _measure(loader, ports, reads, sizes, rounds, notify)
            after = [session_count(stats, url) for url in urls]
        sessions = Sessions(
            pool_size=pool_size,
            wangge=after[0] - before[0],
            wangge_under_load=after[0] - warm,
            rendering=after[1] - before[1],
            tipg=after[2] - before[2],
        )
    return PeersResult(rows, sessions, peer, rounds, duration_s)


def describe_machine(database_url: str, peer: PeerEnvironment) -> dict[str, str]:
    """The API benchmark's machine description, with the peer's environment."""
    from wangge.benchmarks.api import describe_machine as api_machine

    return {**api_machine(database_url), "peer": peer.describe()}


def main() -> None:
    """`python -m wangge.benchmarks.peers [--duration S] [--rounds N]`: the configured services."""
    from rich.progress import BarColumn, MofNCompleteColumn, TextColumn, TimeElapsedColumn
    from rich.progress import Progress as Bar

    from wangge import services
    from wangge.benchmarks.harness import report_console
    from wangge.benchmarks.rows import add_json_option, write_rows
    from wangge.settings import DatabaseSettings, KafkaSettings

    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--duration", type=float, default=DURATION_S, help="seconds per round")
    parser.add_argument("--rounds", type=int, default=ROUNDS, help="pairs of rounds per read")
    parser.add_argument("--connections", type=int, default=CONNECTIONS)
    parser.add_argument("--peer-venv", type=Path, default=DEFAULT_FOLDER, metavar="FOLDER")
    add_json_option(parser)
    args = parser.parse_args()
    console = report_console()
    database = DatabaseSettings()
    services.ensure_postgis(database, log=console.print)
    load_before = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    started = time.monotonic()
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
               TimeElapsedColumn())  # fmt: skip
    with Bar(*columns, console=console, transient=True) as bar:
        task = bar.add_task("peers", total=None)

        def show(stage: str, done: int, total: int) -> None:
            bar.update(task, description=stage, completed=done, total=total or None)
            if not console.is_terminal:  # a log: one line a stage, with the time it began
                console.print(f"… {time.monotonic() - started:6.1f} s  {stage}")

        result = run_peers_benchmark(
            database.url, KafkaSettings().bootstrap, duration_s=args.duration,
            rounds=args.rounds, connections=args.connections, peer_folder=args.peer_venv,
            progress=show,
        )  # fmt: skip
    console.print(render_table(result))
    for name, value in describe_machine(database.url, result.peer).items():
        console.print(f"{name}: {value}")
    console.print(
        f"load average when it started: {load_before}; took {time.monotonic() - started:,.0f} s"
    )
    if args.json:
        write_rows(args.json, "peers", as_benchmark_rows(result))


if __name__ == "__main__":
    main()
