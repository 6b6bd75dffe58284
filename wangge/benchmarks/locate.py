"""How fast the in-memory grid index locates points, against PostGIS one query at a time.

The consumers could ask PostGIS for each event's grid; they use `GridIndex` instead.
This puts a number on why: the same points, the same rules, both ways, in one run.
"""

import json
import statistics
import time
from datetime import UTC, datetime
from typing import Any

import numpy as np
import psycopg
import shapely
from sqlalchemy import Engine

from geodata.dataset.layers import METRIC_CRS
from geodata.db.grid_versions import load_grid_versions
from geodata.snapshot_policy import DEFAULT_TOLERANCE_M
from geodata.spatial_index import AssignmentRule, GridIndex

#: Points PostGIS answers one by one; enough for a stable rate, quick enough to run often.
POSTGIS_SAMPLE = 2000
INDEX_REPEATS = 5
SEED = 37
# Beyond the grids' bounds, so that the batch also has GPS-error and outside points.
MARGIN_DEG = 0.005
# A longitude degree is longer than 50 km below 63° N, so this box holds every grid
# within the tolerance; it only pre-selects candidates for the exact metric distance.
_METRES_PER_DEGREE_LOWER_BOUND = 50_000.0

# The rules as PostGIS answers them for one point: the grid versions valid at t that
# cover the point (smallest code), else the nearest within the tolerance in metres.
_LOCATE_ONE_SQL = """
WITH pt AS (
    SELECT ST_SetSRID(ST_MakePoint(%(lon)s, %(lat)s), 4326) AS geom, %(t)s::timestamptz AS t
), covering AS (
    SELECT min(g.code) AS code, count(DISTINCT g.code) AS n
    FROM grids g, pt
    WHERE ST_Covers(g.geom, pt.geom)
      AND g.valid_from <= pt.t AND (g.valid_to IS NULL OR pt.t < g.valid_to)
)
SELECT covering.code, covering.n, nearest.code, nearest.distance
FROM covering
LEFT JOIN LATERAL (
    SELECT g.code,
           ST_Distance(ST_Transform(g.geom, %(srid)s), ST_Transform(pt.geom, %(srid)s))
               AS distance
    FROM grids g, pt
    WHERE covering.n = 0
      AND g.geom && ST_Expand(pt.geom, %(box)s)
      AND g.valid_from <= pt.t AND (g.valid_to IS NULL OR pt.t < g.valid_to)
      AND ST_Distance(ST_Transform(g.geom, %(srid)s), ST_Transform(pt.geom, %(srid)s))
          <= %(tolerance)s
    ORDER BY distance, g.code
    LIMIT 1
) nearest ON true
"""


def run_locate_benchmark(engine: Engine, points: int = 20000) -> dict[str, float]:
    """Index locate() rate on one batch vs PostGIS answering points one query at a time."""
    started = time.perf_counter()
    index = GridIndex.build(load_grid_versions(engine))
    build_s = time.perf_counter() - started
    if index.size == 0:
        raise ValueError("no grids in the database: import boundaries first")

    lon, lat = _sample_points(index, points)
    now = datetime.now(UTC)
    at = np.full(points, np.datetime64(now.replace(tzinfo=None), "us"))

    index.locate(lon[:100], lat[:100], at[:100])  # warm-up: first-call allocations
    timings = []
    for _ in range(INDEX_REPEATS):
        started = time.perf_counter()
        located = index.locate(lon, lat, at)
        timings.append(time.perf_counter() - started)
    index_s = statistics.median(timings)

    sample = min(POSTGIS_SAMPLE, points)
    postgis_s, answers = _postgis_one_at_a_time(engine, lon[:sample], lat[:sample], now)
    disagreements = sum(
        answer != (located.codes[i], located.rules[i]) for i, answer in enumerate(answers)
    )
    index_rate = points / index_s
    postgis_rate = sample / postgis_s
    return {
        "grid_versions": float(index.size),
        "index_build_s": build_s,
        "index_points": float(points),
        "index_points_per_s": index_rate,
        "index_us_per_point": 1e6 / index_rate,
        "postgis_points": float(sample),
        "postgis_points_per_s": postgis_rate,
        "postgis_us_per_point": 1e6 / postgis_rate,
        "speedup": index_rate / postgis_rate,
        "disagreements": float(disagreements),
    }


def _sample_points(index: GridIndex, n: int) -> tuple[np.ndarray[Any, Any], ...]:
    """Uniform points over the grids' bounds plus a margin: mostly inside, some outside."""
    rng = np.random.default_rng(SEED)
    geometries = [version.geometry for version in index.versions]
    xmin, ymin, xmax, ymax = shapely.total_bounds(geometries)
    lon = rng.uniform(xmin - MARGIN_DEG, xmax + MARGIN_DEG, n)
    lat = rng.uniform(ymin - MARGIN_DEG, ymax + MARGIN_DEG, n)
    return lon, lat


def _postgis_one_at_a_time(
    engine: Engine, lon: np.ndarray[Any, Any], lat: np.ndarray[Any, Any], at: datetime
) -> tuple[float, list[tuple[str | None, AssignmentRule]]]:
    """Seconds for PostGIS to answer each point with its own prepared query, and answers."""
    params: dict[str, object] = {
        "t": at,
        "srid": _srid(METRIC_CRS),
        "tolerance": DEFAULT_TOLERANCE_M,
        "box": DEFAULT_TOLERANCE_M / _METRES_PER_DEGREE_LOWER_BOUND,
    }
    rows = []
    with engine.connect() as sa_conn:
        conn = sa_conn.connection.driver_connection
        assert isinstance(conn, psycopg.Connection)
        with conn.cursor() as cur:
            # Prepare and warm the plan first: a consumer would keep one prepared query.
            for i in range(min(10, len(lon))):
                cur.execute(_LOCATE_ONE_SQL, _point(params, lon[i], lat[i]), prepare=True)
                cur.fetchone()
            started = time.perf_counter()
            for x, y in zip(lon, lat, strict=True):
                cur.execute(_LOCATE_ONE_SQL, _point(params, x, y), prepare=True)
                rows.append(cur.fetchone())
            elapsed = time.perf_counter() - started
        sa_conn.rollback()
    return elapsed, [_answer(row) for row in rows]


def _point(params: dict[str, object], lon: float, lat: float) -> dict[str, object]:
    return {**params, "lon": float(lon), "lat": float(lat)}


def _answer(row: tuple[Any, ...] | None) -> tuple[str | None, AssignmentRule]:
    """The (code, rule) of one row of `_LOCATE_ONE_SQL`."""
    assert row is not None
    covering_code, covering_n, nearest_code, _distance = row
    if covering_n:
        rule = AssignmentRule.CONTAINS if covering_n == 1 else AssignmentRule.BOUNDARY_TIEBREAK
        return covering_code, rule
    if nearest_code is not None:
        return nearest_code, AssignmentRule.NEAREST_WITHIN_TOLERANCE
    return None, AssignmentRule.OUTSIDE_AREA


def _srid(crs: str) -> int:
    """The numeric SRID of an "EPSG:nnnn" name, for SQL."""
    authority, _, code = crs.partition(":")
    if authority.upper() != "EPSG" or not code.isdigit():
        raise ValueError(f"expected an EPSG code, got {crs!r}")
    return int(code)


def main() -> None:
    """Run the benchmark on the configured database and print the figures as JSON."""
    from geodata.db.engine import create_db_engine
    from wangge.settings import DatabaseSettings

    engine = create_db_engine(DatabaseSettings().url)
    try:
        print(json.dumps(run_locate_benchmark(engine), indent=2))
    finally:
        engine.dispose()


if __name__ == "__main__":
    main()
