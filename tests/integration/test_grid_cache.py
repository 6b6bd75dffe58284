"""Locate and nearest answer from memory what PostGIS says, and follow changes at the next check.

The expected answers are built here from SQL written independently of geodata.db:
ST_Covers with the smallest code (else the nearest within 30 m in EPSG:4545) among the
versions valid at `at`, the version's GeoJSON by ST_AsGeoJSON(geom, 7), its hierarchy by
joins, and its staff by their assignment periods. The database is given a history first
(boundary versions closed and redrawn, staff moved, a worker renamed), so that the time
rules are exercised at and around each change.
"""

import json
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import numpy as np
import psycopg
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Connection, Engine, text

from event_consumers.grid_snapshot import batch_snapshot
from geodata.crs import to_wgs84, wgs84_to_gcj02
from geodata.db import grid_queries
from geodata.db.engine import create_db_engine
from geodata.db.grid_cache import GridSnapshotCache, load_snapshot
from geodata.db.grid_queries import grid_detail
from geodata.errors import GridNotFound
from geodata.snapshot_policy import SnapshotPolicy
from grid_service.app import ApiConfig, create_app

pytestmark = pytest.mark.integration

LOCATE = "/api/v1/grids/locate"
NEAREST = "/api/v1/grids/nearest"
LOCAL = ZoneInfo("Asia/Shanghai")
SEED = 41
# The city's extent and a margin, so that points also fall near its edge and outside.
EXTENT = (107.04, 34.32, 107.36, 34.415)
# When the history below changes things: boundaries redrawn, staff moved.
REDRAWN_AT = datetime(2021, 3, 1, 8, 0, tzinfo=UTC)
MOVED_AT = datetime(2021, 6, 1, 0, 0, 0, 250_000, tzinfo=UTC)

_LOCATE_SQL = text(
    """
    WITH pt AS (SELECT ST_SetSRID(ST_MakePoint(:lon, :lat), 4326) AS geom),
    valid AS (
        SELECT code, geom FROM grids
        WHERE valid_from <= :at AND (valid_to IS NULL OR :at < valid_to)
    )
    SELECT covering.code, covering.n, nearest.code AS near_code, nearest.distance
    FROM pt
    LEFT JOIN LATERAL (
        SELECT min(v.code) AS code, count(*) AS n FROM valid v WHERE ST_Covers(v.geom, pt.geom)
    ) covering ON true
    LEFT JOIN LATERAL (
        SELECT v.code, ST_Distance(ST_Transform(v.geom, 4545), ST_Transform(pt.geom, 4545))
            AS distance
        FROM valid v
        WHERE covering.n = 0
          AND ST_Distance(ST_Transform(v.geom, 4545), ST_Transform(pt.geom, 4545)) <= 30
        ORDER BY distance, v.code LIMIT 1
    ) nearest ON true
    """
)
_GRID_SQL = text(
    """
    SELECT g.code, g.name, g.community_code, g.households, g.valid_from, g.valid_to,
           ST_AsGeoJSON(g.geom, 7) AS geojson, c.name AS community_name,
           s.code AS street_code, s.name AS street_name,
           d.code AS district_code, d.name AS district_name
    FROM grids g, communities c, streets s, districts d
    WHERE c.code = g.community_code AND s.code = c.street_code AND d.code = s.district_code
      AND g.code = :code AND g.valid_from <= :at AND (g.valid_to IS NULL OR :at < g.valid_to)
    """
)
_STAFF_SQL = text(
    """
    SELECT DISTINCT w.worker_id, w.name FROM worker_assignments a JOIN workers w USING (worker_id)
    WHERE a.grid_code = :code AND a.valid_from <= :at AND (a.valid_to IS NULL OR :at < a.valid_to)
    ORDER BY w.worker_id
    """
)


@pytest.fixture(scope="module")
def history_url(reference_database_factory: Callable[[], str]) -> str:
    """A copy of the reference city with a history of boundaries and staff."""
    url = reference_database_factory()
    engine = create_db_engine(url)
    try:
        with engine.begin() as conn:
            _write_history(conn)
    finally:
        engine.dispose()
    return url


def _write_history(conn: Connection) -> None:
    # Every 40th grid is redrawn: its version closed and a shrunken one put in force, so
    # that points near its edge fall to a neighbour, or nowhere, after REDRAWN_AT.
    conn.execute(
        text(
            "WITH closed AS ("
            "  UPDATE grids SET valid_to = :t WHERE valid_to IS NULL AND id % 40 = 0"
            "  RETURNING code, community_code, name, households, geom)"
            " INSERT INTO grids (code, community_code, name, households, geom, valid_from)"
            " SELECT code, community_code, name || '（新）', households + 1,"
            "  ST_Multi(ST_Scale(geom, 'POINT(0.8 0.8)'::geometry, ST_Centroid(geom))), :t"
            " FROM closed"
        ),
        {"t": REDRAWN_AT},
    )
    # Every 7th assignment ends at MOVED_AT, and the next worker takes the grid over then;
    # every 11th worker also joins a second grid for a while (overlapping periods).
    conn.execute(
        text(
            "WITH ended AS ("
            "  UPDATE worker_assignments SET valid_to = :t WHERE id % 7 = 0"
            "  RETURNING grid_code, id)"
            " INSERT INTO worker_assignments (worker_id, grid_code, valid_from)"
            " SELECT w.worker_id, e.grid_code, :t FROM ended e"
            " JOIN workers w ON w.worker_id = (SELECT min(worker_id) FROM workers"
            "   WHERE worker_id > (SELECT worker_id FROM worker_assignments WHERE id = e.id))"
        ),
        {"t": MOVED_AT},
    )
    conn.execute(
        text(
            "INSERT INTO worker_assignments (worker_id, grid_code, valid_from, valid_to)"
            " SELECT a.worker_id, b.grid_code, :start, :end"
            " FROM worker_assignments a JOIN worker_assignments b ON b.id = a.id + 1"
            " WHERE a.id % 11 = 0 AND a.valid_to IS NULL"
        ),
        {"start": REDRAWN_AT - timedelta(days=30), "end": MOVED_AT},
    )


@pytest.fixture(scope="module")
def engine(history_url: str) -> Iterator[Engine]:
    """The test's own engine, for the independent SQL."""
    eng = create_db_engine(history_url)
    yield eng
    eng.dispose()


@pytest.fixture(scope="module")
def client(history_url: str) -> Iterator[TestClient]:
    """The real app; a 5xx is answered, not raised, to be seen."""
    app = create_app(ApiConfig(history_url, "127.0.0.1:9"))
    with TestClient(app, raise_server_exceptions=False) as test_client:
        yield test_client


def _instants() -> list[datetime | None]:
    """Times around each change, to the microsecond; None is the default, now."""
    around = [
        moment + timedelta(microseconds=delta)
        for moment in (REDRAWN_AT, MOVED_AT)
        for delta in (-1, 0, 1)
    ]
    return [None, datetime(2020, 6, 1, tzinfo=LOCAL), *around]


def _random_points(n: int) -> list[tuple[float, float]]:
    rng = np.random.default_rng(SEED)
    lon = rng.uniform(EXTENT[0], EXTENT[2], n)
    lat = rng.uniform(EXTENT[1], EXTENT[3], n)
    return [(float(x), float(y)) for x, y in zip(lon, lat, strict=True)]


def _local(moment: datetime | None) -> str | None:
    return None if moment is None else moment.astimezone(LOCAL).isoformat()


def _expected(
    conn: Connection, lon: float, lat: float, at: datetime
) -> tuple[dict[str, Any] | None, float | None]:
    """The located feature by PostGIS (distance_m aside), and PostGIS's distance."""
    where = conn.execute(_LOCATE_SQL, {"lon": lon, "lat": lat, "at": at}).one()
    if where.code is None and where.near_code is None:
        return None, None
    code = where.code or where.near_code
    grid = conn.execute(_GRID_SQL, {"code": code, "at": at}).one()
    staff = conn.execute(_STAFF_SQL, {"code": code, "at": at}).all()
    if where.code is not None:
        rule, distance = ("contains" if where.n == 1 else "boundary_tiebreak"), 0.0
    else:
        rule, distance = "nearest_within_tolerance", float(where.distance)
    properties = {
        "code": grid.code,
        "name": grid.name,
        "community_code": grid.community_code,
        "households": grid.households,
        "valid_from": _local(grid.valid_from),
        "valid_to": _local(grid.valid_to),
        "community_name": grid.community_name,
        "street_code": grid.street_code,
        "street_name": grid.street_name,
        "district_code": grid.district_code,
        "district_name": grid.district_name,
        "staff": [{"worker_id": w.worker_id, "name": w.name} for w in staff],
        "assignment_rule": rule,
        "distance_m": None,
        "point": [round(lon, 7), round(lat, 7)],
    }
    feature = {
        "type": "Feature",
        "id": grid.code,
        "geometry": json.loads(grid.geojson),
        "properties": properties,
    }
    return feature, distance


def _body(document: dict[str, Any]) -> bytes:
    """The bytes the API has always written (Starlette's JSONResponse rendering)."""
    return json.dumps(
        document, ensure_ascii=False, allow_nan=False, indent=None, separators=(",", ":")
    ).encode()


def _assert_locate_matches_postgis(
    client: TestClient,
    conn: Connection,
    lon: float,
    lat: float,
    at: datetime | None,
    crs: str = "EPSG:4326",
) -> str:
    """Locate (lon, lat) in `crs` at `at`; assert the answer is PostGIS's, byte for byte."""
    params: dict[str, Any] = {"lon": lon, "lat": lat, "crs": crs}
    if at is not None:
        params["at"] = at.isoformat()
    response = client.get(LOCATE, params=params)
    wgs_lon, wgs_lat = to_wgs84(lon, lat, crs)
    expected, distance = _expected(conn, wgs_lon, wgs_lat, at or datetime.now(UTC))
    if expected is None:
        assert (response.status_code, response.json()["code"]) == (404, "point_outside_area")
        return "outside_area"
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "application/geo+json"
    served = response.json()["properties"]["distance_m"]
    # The index measures in GEOS what PostGIS measures: equal to well under a millimetre.
    assert served == pytest.approx(distance, abs=5e-4), (lon, lat, at)
    expected["properties"]["distance_m"] = served
    assert response.content == _body(expected), (lon, lat, at)
    return str(expected["properties"]["assignment_rule"])


def test_locate_is_postgis_answer_byte_for_byte_at_any_time(
    client: TestClient, engine: Engine
) -> None:
    points = _random_points(120)
    rules: dict[str, int] = {}
    with engine.connect() as conn:
        # Grids with a history, sampled near their edge, where redrawing moves the answer.
        edges = conn.execute(
            text(
                "SELECT ST_X(p), ST_Y(p) FROM grids,"
                " ST_PointN(ST_ExteriorRing(ST_GeometryN(geom, 1)), 1) p"
                " WHERE valid_to IS NOT NULL ORDER BY code LIMIT 25"
            )
        ).all()
        points += [(float(x) + 1e-5, float(y)) for x, y in edges]
        for i, at in enumerate(_instants()):
            for lon, lat in points[i::3]:
                rule = _assert_locate_matches_postgis(client, conn, lon, lat, at)
                rules[rule] = rules.get(rule, 0) + 1
    assert set(rules) >= {"contains", "nearest_within_tolerance", "outside_area"}, rules


def test_locate_in_gcj02_is_postgis_answer_at_the_converted_point(
    client: TestClient, engine: Engine
) -> None:
    with engine.connect() as conn:
        for lon, lat in _random_points(30):
            gcj_lon, gcj_lat = wgs84_to_gcj02(lon, lat)
            _assert_locate_matches_postgis(client, conn, gcj_lon, gcj_lat, None, "GCJ-02")


def test_every_grid_detail_in_memory_equals_postgis_around_each_change(engine: Engine) -> None:
    snapshot = load_snapshot(engine)
    with engine.connect() as conn:
        codes = list(conn.execute(text("SELECT DISTINCT code FROM grids ORDER BY code")).scalars())
    instants = [at or datetime.now(UTC) for at in _instants()]
    compared = 0
    for code in codes[::4]:
        for at in instants:
            try:
                expected = grid_detail(engine, code, at)
            except GridNotFound:
                with pytest.raises(GridNotFound):
                    snapshot.detail(code, at)
                continue
            assert snapshot.detail(code, at) == expected, (code, at)
            compared += 1
    assert compared > 1000


# Measured over these points: at most 3e-5 m apart (PostGIS rounds its sphere a little
# differently); only a point in the sliver between an edge and its great-circle arc could
# be further apart, by under the sliver's width (geodata/geography_distance.py).
NEAREST_TOLERANCE_M = 1e-4


def test_nearest_in_memory_is_postgis_answer_at_any_time(
    client: TestClient, engine: Engine
) -> None:
    snapshot = load_snapshot(engine)
    # Over the city and around it, a far corner of the world, and each grid's first vertex
    # (on the boundary: distance 0 to it and to its neighbours, ties by code).
    points = [*_random_points(240), (0.0, 0.0), (107.2, 40.0), (-70.5, -33.4)]
    with engine.connect() as conn:
        vertices = conn.execute(
            text(
                "SELECT ST_X(p), ST_Y(p) FROM grids,"
                " ST_PointN(ST_ExteriorRing(ST_GeometryN(geom, 1)), 1) p ORDER BY code LIMIT 40"
            )
        ).all()
    points += [(float(x), float(y)) for x, y in vertices]
    compared = 0
    for i, at in enumerate(_instants()):
        when = at or datetime.now(UTC)
        for j, (lon, lat) in enumerate(points[i::3]):
            k = (1, 7, 50)[j % 3]
            expected = grid_queries.nearest_grids(engine, lon, lat, k, at=when)
            found = snapshot.nearest(lon, lat, k, when)
            assert [g.code for g in found] == [g.code for g in expected], (lon, lat, k, at)
            for got, want in zip(found, expected, strict=True):
                assert got.distance_m == pytest.approx(want.distance_m, abs=NEAREST_TOLERANCE_M)
                assert replace(got, distance_m=None) == replace(want, distance_m=None)
            compared += len(found)
    assert compared > 5000


def test_nearest_route_answers_from_memory_as_postgis_would(
    client: TestClient, engine: Engine
) -> None:
    for lon, lat in _random_points(20):
        at = datetime.now(UTC)
        response = client.get(NEAREST, params={"lon": lon, "lat": lat, "k": 7})
        assert response.status_code == 200, response.text
        expected = grid_queries.nearest_grids(engine, lon, lat, 7, at=at)
        features = response.json()["features"]
        assert [f["id"] for f in features] == [g.code for g in expected]
        served = [f["properties"]["distance_m"] for f in features]
        assert served == pytest.approx([g.distance_m for g in expected], abs=5e-4 + 1e-4)


class _Clock:
    """A monotonic clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


@contextmanager
def _app_with_clock(url: str) -> Iterator[tuple[TestClient, GridSnapshotCache, _Clock]]:
    """The app, its grids checked every 5 s of a clock the test moves."""
    app = create_app(ApiConfig(url, "127.0.0.1:9"))
    with TestClient(app) as client:
        clock = _Clock()
        cache = GridSnapshotCache(
            app.state.engine, SnapshotPolicy(check_interval_s=5.0), clock=clock
        )
        app.state.grid_snapshots = cache
        yield client, cache, clock


def _after_the_next_check(client: TestClient, cache: GridSnapshotCache, clock: _Clock) -> None:
    """Make a check due; a request starts it in the background; wait until it is done."""
    clock.now += 5.0
    assert cache.fresh() is None
    client.get(LOCATE, params={"lon": 107.2, "lat": 34.37})
    deadline = time.monotonic() + 60.0  # a guard against hanging, not a timing
    while cache.fresh() is None:
        assert time.monotonic() < deadline, "the background check never finished"
        time.sleep(0.01)


def _point_in(engine: Engine, offset: int) -> tuple[str, float, float]:
    with engine.connect() as conn:
        code, lon, lat = conn.execute(
            text(
                "SELECT code, ST_X(p), ST_Y(p) FROM grids, ST_PointOnSurface(geom) p "
                "WHERE valid_to IS NULL ORDER BY code LIMIT 1 OFFSET :n"
            ),
            {"n": offset},
        ).one()
    return str(code), float(lon), float(lat)


def test_locate_follows_a_boundary_change_at_the_next_check(
    reference_database_factory: Callable[[], str],
) -> None:
    with _app_with_clock(reference_database_factory()) as (client, cache, clock):
        engine: Engine = cache.engine
        code, lon, lat = _point_in(engine, 600)
        params = {"lon": lon, "lat": lat}
        assert client.get(LOCATE, params=params).json()["id"] == code
        now = datetime.now(UTC)
        with engine.begin() as conn:
            conn.execute(
                text("UPDATE grids SET valid_to = :t WHERE code = :c AND valid_to IS NULL"),
                {"t": now, "c": code},
            )
            expected = conn.execute(_LOCATE_SQL, {**params, "at": now}).one()
        # Locate answers from memory: until the next check, from the grids as they were.
        assert client.get(LOCATE, params=params).json()["id"] == code
        _after_the_next_check(client, cache, clock)
        response = client.get(LOCATE, params=params)
        assert expected.code is None
        if expected.near_code is None:
            assert response.json()["code"] == "point_outside_area"
        else:
            assert response.json()["id"] == expected.near_code
        before = client.get(LOCATE, params={**params, "at": "2021-01-01T00:00:00+00:00"})
        assert before.json()["id"] == code


def test_staff_and_name_changes_show_at_the_next_check(
    reference_database_factory: Callable[[], str],
) -> None:
    with _app_with_clock(reference_database_factory()) as (client, cache, clock):
        engine: Engine = cache.engine
        code, lon, lat = _point_in(engine, 300)
        params = {"lon": lon, "lat": lat}
        before = client.get(LOCATE, params=params)
        staff = before.json()["properties"]["staff"]
        assert staff
        now = datetime.now(UTC)
        with engine.begin() as conn:
            conn.execute(
                text("UPDATE workers SET name = name || '（调）' WHERE worker_id = :w"),
                {"w": staff[0]["worker_id"]},
            )
            conn.execute(
                text(
                    "INSERT INTO worker_assignments (worker_id, grid_code, valid_from)"
                    " SELECT max(worker_id), :c, :t FROM workers"
                ),
                {"c": code, "t": now - timedelta(minutes=1)},
            )
            conn.execute(
                text("UPDATE communities SET name = name || '（改）' WHERE code = left(:c, 12)"),
                {"c": code},
            )
        # Until the next check, the grids in memory answer, as they were read.
        assert client.get(LOCATE, params=params).content == before.content
        _after_the_next_check(client, cache, clock)
        after = client.get(LOCATE, params=params)
        with engine.connect() as conn:
            expected, distance = _expected(conn, lon, lat, datetime.now(UTC))
        assert expected is not None
        expected["properties"]["distance_m"] = distance
        assert after.content == _body(expected)
        properties = after.json()["properties"]
        assert properties["staff"][0]["name"].endswith("（调）")
        assert len(properties["staff"]) == len(staff) + 1
        assert properties["community_name"].endswith("（改）")


def test_a_check_that_finds_nothing_changed_keeps_the_snapshot(engine: Engine) -> None:
    clock = _Clock()
    cache = GridSnapshotCache(engine, SnapshotPolicy(check_interval_s=5.0), clock=clock)
    assert cache.current() is None  # nothing read yet: a request must wait for the load
    first = cache.snapshot()
    assert cache.current() is cache.fresh() is first
    clock.now += 5.0
    assert cache.fresh() is None
    assert cache.snapshot() is first  # checked: the stamp is unchanged
    assert cache.fresh() is first


def test_a_database_away_is_a_transient_failure_for_the_consumers() -> None:
    # The runner backs off and retries a batch on psycopg's OperationalError only; any
    # other error would send the batch's records one by one towards the dead letters.
    cache = GridSnapshotCache(create_db_engine("postgresql://nobody@127.0.0.1:9/none"))
    with pytest.raises(psycopg.OperationalError):
        batch_snapshot(cache)
