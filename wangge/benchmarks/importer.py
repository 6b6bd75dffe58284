"""`wangge bench import`: the reference dataset into a fresh database, against ogr2ogr.

In one run, each measured a few times and the median kept: `import_boundaries` (what
`wangge dataset import` runs: validation, versioning, assignments, all or nothing) loads
the reference GeoPackage (seed 2020) into a fresh migrated database, then loads it again
unchanged; GDAL's `ogr2ogr -f PostgreSQL` loads the same layers into a fresh PostGIS
database (COPY, GiST index, no validation), then again with `-overwrite`. A bulk load that
checks nothing is the natural floor for ours; the ratio is what validation costs.
"""

import argparse
import shutil
import statistics
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import psycopg

from geodata.dataset.importer import ImportReport, import_boundaries
from geodata.db import migrate
from geodata.db.engine import create_db_engine
from wangge.benchmarks.harness import (
    REFERENCE_SEED,
    DatabaseServer,
    Progress,
    render_table,
    report_console,
)
from wangge.benchmarks.rows import BenchmarkRow, add_json_option, write_rows

SEED = REFERENCE_SEED
LAYERS = ("districts", "streets", "communities", "grids", "workers", "pois")
#: Ours may take this many times ogr2ogr's time: it validates every feature and versions
#: grids and assignments, which a bulk load does not.
TARGET_RATIO = 5.0


@dataclass
class _Times:
    """Seconds per run of each of the four loads."""

    ours: list[float]
    again: list[float]
    ogr2ogr: list[float]
    overwrite: list[float]


def run_import_benchmark(
    database_url: str, runs: int = 5, progress: Progress | None = None
) -> list[BenchmarkRow]:
    """Time ours and ogr2ogr, `runs` times each after one warm-up; databases dropped after."""
    notify: Progress = progress or (lambda _stage, _done, _total: None)
    ogr2ogr = shutil.which("ogr2ogr")
    if ogr2ogr is None:
        raise RuntimeError("ogr2ogr not found: install gdal-bin (scripts/test-tools.sh does)")
    server = DatabaseServer(database_url)
    times = _Times([], [], [], [])
    try:
        with tempfile.TemporaryDirectory(prefix="wangge-bench-import-") as folder:
            notify("Writing the reference GeoPackage", 0, 1)
            gpkg = Path(folder) / "reference.gpkg"
            features = _write_reference(gpkg)
            notify("Preparing template databases", 0, 1)
            bare = server.create()
            with psycopg.connect(server.url_of(bare), autocommit=True) as conn:
                conn.execute("CREATE EXTENSION postgis")
            schema = server.create(bare)
            migrate.upgrade(server.url_of(schema))
            for run in range(runs + 1):  # the first warms caches and lazy imports up
                notify("Loading the reference dataset", run, runs + 1)
                ours = _time_ours(server.copy(schema), gpkg, features)
                theirs = _time_ogr2ogr(ogr2ogr, server.copy(bare), gpkg, features)
                if run:
                    times.ours.append(ours[0])
                    times.again.append(ours[1])
                    times.ogr2ogr.append(theirs[0])
                    times.overwrite.append(theirs[1])
    finally:
        server.drop_created()
    notify("Done", 1, 1)
    return _rows(times, features, _gdal_version(ogr2ogr))


def _write_reference(path: Path) -> dict[str, int]:
    from geodata.dataset.generate import generate_reference_dataset, write_geopackage

    dataset = generate_reference_dataset(SEED)
    write_geopackage(dataset, path)
    return {layer: len(getattr(dataset, layer)) for layer in LAYERS}


def _time_ours(url: str, gpkg: Path, features: dict[str, int]) -> tuple[float, float]:
    """Seconds of the import into an empty schema, then of the unchanged re-import."""
    engine = create_db_engine(url)
    try:
        started = time.perf_counter()
        first = import_boundaries(engine, gpkg)
        middle = time.perf_counter()
        second = import_boundaries(engine, gpkg)
        ended = time.perf_counter()
    finally:
        engine.dispose()
    _check(first, features, changed=True)
    _check(second, features, changed=False)
    return middle - started, ended - middle


def _check(report: ImportReport, features: dict[str, int], *, changed: bool) -> None:
    for layer, count in features.items():
        counts = report.layers[layer]
        written = counts.inserted + counts.updated + counts.new_versions
        if (written, counts.unchanged) != ((count, 0) if changed else (0, count)):
            raise AssertionError(f"{layer}: {count} features, import counted {counts}")


def _time_ogr2ogr(
    ogr2ogr: str, url: str, gpkg: Path, features: dict[str, int]
) -> tuple[float, float]:
    """Seconds of ogr2ogr into a bare PostGIS database, then of the same with -overwrite."""
    command = [ogr2ogr, "--config", "PG_USE_COPY", "YES", "-f", "PostgreSQL", f"PG:{url}"]
    seconds = []
    for extra in ([], ["-overwrite"]):
        started = time.perf_counter()
        done = subprocess.run([*command, str(gpkg), *extra], capture_output=True, text=True)
        seconds.append(time.perf_counter() - started)
        if done.returncode != 0:
            raise RuntimeError(f"ogr2ogr failed: {done.stderr.strip()[-2000:]}")
    with psycopg.connect(url) as conn:
        for layer, count in features.items():
            row = conn.execute(f'SELECT count(*) FROM "{layer}"').fetchone()
            if row is None or row[0] != count:
                raise AssertionError(f"ogr2ogr loaded {row} {layer}, not {count}")
    return seconds[0], seconds[1]


def _gdal_version(ogr2ogr: str) -> str:
    done = subprocess.run([ogr2ogr, "--version"], capture_output=True, text=True, check=False)
    return done.stdout.strip() or "GDAL ?"


def _rows(times: _Times, features: dict[str, int], gdal: str) -> list[BenchmarkRow]:
    runs = len(times.ours)
    what = ", ".join(f"{count:,} {layer}" for layer, count in features.items())
    target = f"≤ {TARGET_RATIO:g} × ogr2ogr"
    rows = []
    for name, ours, peer, peer_name in (
        ("import into a fresh database", times.ours, times.ogr2ogr, "ogr2ogr -f PostgreSQL"),
        ("re-import, nothing changed", times.again, times.overwrite, "ogr2ogr -overwrite"),
    ):
        ours_ms = statistics.median(ours) * 1000
        peer_ms = statistics.median(peer) * 1000
        ratio = ours_ms / peer_ms
        rows.append(
            BenchmarkRow(
                f"reference dataset (seed {SEED}): {name}", ours_ms, "ms", peer_ms, peer_name,
                ratio, target, ratio <= TARGET_RATIO,
                f"median of {runs} runs; {what}; ogr2ogr from {gdal}, a process per load",
            )
        )  # fmt: skip
    return rows


def main() -> None:
    """`python -m wangge.benchmarks.importer [--runs N]`: run on the configured PostGIS."""
    from wangge import services
    from wangge.settings import DatabaseSettings

    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=5, help="timed runs of each load")
    add_json_option(parser)
    args = parser.parse_args()
    console = report_console()
    database = DatabaseSettings()
    services.ensure_postgis(database, log=console.print)
    rows = run_import_benchmark(
        database.url, args.runs, lambda stage, _done, _total: console.print(f"… {stage}")
    )
    table = render_table(rows)
    table.title = "wangge import benchmark"
    console.print(table)
    if args.json:
        write_rows(args.json, "import", rows)


if __name__ == "__main__":
    main()
