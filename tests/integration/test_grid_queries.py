"""/api/v1/grids... on the reference dataset (real PostGIS), each answer against SQL.

The expected answers are PostGIS queries written here from the rules, independently of
geodata.db.grid_queries: ST_Covers with the smallest code (else the nearest within
30 m in EPSG:4545) for locate, ST_Intersects(ST_MakeEnvelope) by code for the listing,
ST_Distance on geography for nearest, ST_DWithin on geography for within, and
ST_Intersects(ST_GeomFromGeoJSON) for intersecting.
"""

import json
import math
import re
from collections.abc import Callable, Iterator
from typing import Any
from urllib.parse import quote

import numpy as np
import pytest
import shapely
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import BaseModel
from sqlalchemy import Engine, text

from geodata.crs import wgs84_to_gcj02
from geodata.db.engine import create_db_engine
from grid_service.app import ApiConfig, create_app
from grid_service.grid_documents import (
    GridDetailFeature,
    GridFeatureCollection,
    LocatedGridFeature,
    NearGridFeatureCollection,
)

pytestmark = pytest.mark.integration

GRIDS = "/api/v1/grids"
SEED = 37
# The city's extent (107.05-107.35, 34.327-34.407) and a margin around it, so that
# random points also fall near the edge (the 30 m rule) and outside.
EXTENT = (107.04, 34.32, 107.36, 34.415)
GEOJSON = "application/geo+json"
AS_JSON = {"content-type": "application/json"}

_LOCATE_SQL = text(
    """
    WITH pt AS (SELECT ST_SetSRID(ST_MakePoint(:lon, :lat), 4326) AS geom)
    SELECT covering.code, covering.n, nearest.code AS near_code, nearest.distance
    FROM pt
    LEFT JOIN LATERAL (
        SELECT min(g.code) AS code, count(*) AS n FROM grids g
        WHERE g.valid_to IS NULL AND ST_Covers(g.geom, pt.geom)
    ) covering ON true
    LEFT JOIN LATERAL (
        SELECT g.code, ST_Distance(ST_Transform(g.geom, 4545), ST_Transform(pt.geom, 4545))
            AS distance
        FROM grids g
        WHERE g.valid_to IS NULL AND covering.n = 0
          AND ST_Distance(ST_Transform(g.geom, 4545), ST_Transform(pt.geom, 4545)) <= 30
        ORDER BY distance, g.code LIMIT 1
    ) nearest ON true
    """
)
_HIERARCHY_SQL = text(
    """
    SELECT c.name AS community_name, s.code AS street_code, s.name AS street_name,
           d.code AS district_code, d.name AS district_name
    FROM grids g JOIN communities c ON c.code = g.community_code
    JOIN streets s ON s.code = c.street_code JOIN districts d ON d.code = s.district_code
    WHERE g.code = :code AND g.valid_to IS NULL
    """
)
_STAFF_SQL = text(
    """
    SELECT w.worker_id, w.name FROM worker_assignments a JOIN workers w USING (worker_id)
    WHERE a.grid_code = :code AND a.valid_from <= now()
      AND (a.valid_to IS NULL OR a.valid_to > now())
    ORDER BY w.worker_id
    """
)
_NEAREST_SQL = text(
    """
    SELECT code, ST_Distance(geom::geography,
                             ST_SetSRID(ST_MakePoint(:lon, :lat), 4326)::geography) AS d
    FROM grids WHERE valid_to IS NULL ORDER BY d, code LIMIT :k
    """
)
_WITHIN_SQL = text(
    """
    SELECT code, ST_Distance(geom::geography, pt::geography) AS d
    FROM grids, ST_SetSRID(ST_MakePoint(:lon, :lat), 4326) AS pt
    WHERE valid_to IS NULL AND ST_DWithin(geom::geography, pt::geography, :r)
    ORDER BY d, code
    """
)
_INTERSECTING_SQL = text(
    """
    SELECT code FROM grids
    WHERE valid_to IS NULL
      AND ST_Intersects(geom, ST_SetSRID(ST_GeomFromGeoJSON(:geojson), 4326))
    ORDER BY code
    """
)


@pytest.fixture(scope="module")
def reference_url(reference_database_factory: Callable[[], str]) -> str:
    """One copy of the reference database for the module's read-only tests."""
    return reference_database_factory()


@pytest.fixture(scope="module")
def engine(reference_url: str) -> Iterator[Engine]:
    """The test's own engine, for the independent SQL."""
    eng = create_db_engine(reference_url)
    yield eng
    eng.dispose()


@pytest.fixture(scope="module")
def client(reference_url: str) -> Iterator[TestClient]:
    """The real app with the grids router; a 5xx is answered, not raised, to be seen."""
    app = create_app(ApiConfig(reference_url, "127.0.0.1:9"))
    with TestClient(app, raise_server_exceptions=False) as test_client:
        yield test_client


def _ok(response: Any, model: type[BaseModel]) -> dict[str, Any]:
    """The body of a 200 GeoJSON answer, checked against its documented model."""
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == GEOJSON
    body: dict[str, Any] = response.json()
    model.model_validate(body)
    return body


def _codes(body: dict[str, Any]) -> list[str]:
    return [feature["id"] for feature in body["features"]]


def _random_points(n: int, seed: int = SEED) -> list[tuple[float, float]]:
    rng = np.random.default_rng(seed)
    lon = rng.uniform(EXTENT[0], EXTENT[2], n)
    lat = rng.uniform(EXTENT[1], EXTENT[3], n)
    return [(float(x), float(y)) for x, y in zip(lon, lat, strict=True)]


def _vertices(engine: Engine, n: int) -> list[tuple[float, float]]:
    """Grid vertices: most are shared by two or three grids (boundary_tiebreak)."""
    with engine.connect() as conn:
        rows = conn.execute(
            text(
                "SELECT ST_X(p.geom), ST_Y(p.geom) FROM grids, ST_DumpPoints(geom) p "
                "WHERE valid_to IS NULL ORDER BY code, p.path LIMIT :n OFFSET 500"
            ),
            {"n": n},
        ).all()
    return [(float(x), float(y)) for x, y in rows]


# --------------------------------------------------------------------------- locate


def test_locate_agrees_with_postgis_covers_smallest_code_then_30_m(
    client: TestClient, engine: Engine
) -> None:
    points = _random_points(200) + _vertices(engine, 40)
    rules: dict[str, int] = {}
    with engine.connect() as conn:
        for lon, lat in points:
            row = conn.execute(_LOCATE_SQL, {"lon": lon, "lat": lat}).one()
            response = client.get(f"{GRIDS}/locate", params={"lon": lon, "lat": lat})
            if row.code is None and row.near_code is None:
                assert response.status_code == 404, (lon, lat, response.text)
                assert response.json()["code"] == "point_outside_area"
                rules["outside_area"] = rules.get("outside_area", 0) + 1
                continue
            feature = _ok(response, LocatedGridFeature)
            properties = feature["properties"]
            if row.code is not None:
                expected = (row.code, "contains" if row.n == 1 else "boundary_tiebreak", 0.0)
            else:
                expected = (row.near_code, "nearest_within_tolerance", row.distance)
            assert feature["id"] == properties["code"] == expected[0], (lon, lat)
            assert properties["assignment_rule"] == expected[1], (lon, lat)
            assert properties["distance_m"] == pytest.approx(expected[2], abs=5e-4)
            rules[expected[1]] = rules.get(expected[1], 0) + 1
            _assert_hierarchy_and_staff(conn, properties)
            assert "phone" not in response.text
    # The set exercised every rule.
    assert set(rules) == {
        "contains",
        "boundary_tiebreak",
        "nearest_within_tolerance",
        "outside_area",
    }, rules


def _assert_hierarchy_and_staff(conn: Any, properties: dict[str, Any]) -> None:
    code = properties["code"]
    hierarchy = conn.execute(_HIERARCHY_SQL, {"code": code}).one()
    assert {key: properties[key] for key in hierarchy._fields} == hierarchy._asdict()
    staff = conn.execute(_STAFF_SQL, {"code": code}).all()
    assert properties["staff"] == [{"worker_id": w.worker_id, "name": w.name} for w in staff]
    assert properties["staff"], "every reference grid has at least one worker"


def test_locate_converts_gcj02_to_wgs84_first(client: TestClient, engine: Engine) -> None:
    with engine.connect() as conn:
        rows = conn.execute(
            text(
                "SELECT code, ST_X(p) AS lon, ST_Y(p) AS lat FROM grids, "
                "ST_PointOnSurface(geom) p WHERE valid_to IS NULL ORDER BY code LIMIT 20"
            )
        ).all()
        moved = 0
        for row in rows:
            gcj_lon, gcj_lat = wgs84_to_gcj02(row.lon, row.lat)
            params = {"lon": gcj_lon, "lat": gcj_lat}
            feature = _ok(
                client.get(f"{GRIDS}/locate", params={**params, "crs": "GCJ-02"}),
                LocatedGridFeature,
            )
            assert feature["id"] == row.code
            assert feature["properties"]["point"] == pytest.approx([row.lon, row.lat], abs=1e-7)
            # Read as WGS84, the same numbers are some 500 m off: PostGIS's grid there.
            raw = client.get(f"{GRIDS}/locate", params=params)
            there = conn.execute(_LOCATE_SQL, {"lon": gcj_lon, "lat": gcj_lat}).one()
            assert (raw.json().get("id") if raw.status_code == 200 else None) == (
                there.code or there.near_code
            )
            moved += there.code != row.code
    # GCJ-02 is some 500 m off here, more than most grids are wide.
    assert moved > len(rows) // 2


def test_locate_treats_cgcs2000_as_wgs84_and_refuses_other_crs(client: TestClient) -> None:
    params = {"lon": 107.2, "lat": 34.37}
    wgs84 = client.get(f"{GRIDS}/locate", params=params).json()
    cgcs = client.get(f"{GRIDS}/locate", params={**params, "crs": "EPSG:4490"}).json()
    assert cgcs == wgs84
    response = client.get(f"{GRIDS}/locate", params={**params, "crs": "EPSG:3857"})
    assert (response.status_code, response.json()["code"]) == (422, "unsupported_crs")


def test_boundaries_before_the_reference_dataset_hold_no_grid(client: TestClient) -> None:
    before = "2019-06-01T00:00:00+08:00"
    locate = client.get(f"{GRIDS}/locate", params={"lon": 107.2, "lat": 34.37, "at": before})
    assert (locate.status_code, locate.json()["code"]) == (404, "point_outside_area")
    listing = _ok(client.get(GRIDS, params={"at": before}), GridFeatureCollection)
    assert (listing["numberMatched"], listing["features"]) == (0, [])
    one = client.get(f"{GRIDS}/610302001001001", params={"at": before})
    assert (one.status_code, one.json()["code"]) == (404, "grid_not_found")
    later = _ok(
        client.get(GRIDS, params={"at": "2020-01-01T00:00:00+08:00", "limit": 1}),
        GridFeatureCollection,
    )
    assert later["numberMatched"] == 1138


# --------------------------------------------------------------------------- listing


def test_bbox_listing_pages_agree_with_postgis_envelope_query(
    client: TestClient, engine: Engine
) -> None:
    bbox = (107.12, 34.34, 107.22, 34.39)
    with engine.connect() as conn:
        expected = conn.execute(
            text(
                "SELECT code, name, community_code, households FROM grids "
                "WHERE valid_to IS NULL AND ST_Intersects(geom, "
                "ST_MakeEnvelope(:a, :b, :c, :d, 4326)) ORDER BY code"
            ),
            dict(zip("abcd", bbox, strict=True)),
        ).all()
    assert len(expected) > 150
    url: str | None = f"{GRIDS}?bbox={','.join(map(str, bbox))}&limit=37"
    pages: list[dict[str, Any]] = []
    while url is not None:
        pages.append(_ok(client.get(url), GridFeatureCollection))
        url = next((link["href"] for link in pages[-1]["links"] if link["rel"] == "next"), None)
    assert len(pages) == math.ceil(len(expected) / 37)
    assert all(page["numberMatched"] == len(expected) for page in pages)
    assert [page["numberReturned"] for page in pages[:-1]] == [37] * (len(pages) - 1)
    features = [feature for page in pages for feature in page["features"]]
    assert [
        (f["id"], p["name"], p["community_code"], p["households"])
        for f in features
        for p in [f["properties"]]
    ] == [tuple(row) for row in expected]
    second = {link["rel"]: link["href"] for link in pages[1]["links"]}
    assert "offset=0" in second["prev"]
    assert "offset=37" in second["self"]
    assert "prev" not in {link["rel"] for link in pages[0]["links"]}


def test_code_prefix_filters_the_listing_alone_and_with_a_bbox(
    client: TestClient, engine: Engine
) -> None:
    with engine.connect() as conn:
        street = conn.execute(
            text("SELECT code FROM grids WHERE code LIKE '610302001%' ORDER BY code")
        ).scalars()
        expected_street = list(street)
        expected_both = list(
            conn.execute(
                text(
                    "SELECT code FROM grids WHERE code LIKE '6103%' AND valid_to IS NULL AND "
                    "ST_Intersects(geom, ST_MakeEnvelope(107.1, 34.33, 107.3, 34.40, 4326)) "
                    "ORDER BY code"
                )
            ).scalars()
        )
    body = _ok(
        client.get(GRIDS, params={"code": "610302001", "limit": 1000}), GridFeatureCollection
    )
    assert _codes(body) == expected_street
    body = _ok(
        client.get(
            GRIDS, params={"code": "6103", "bbox": "107.1,34.33,107.3,34.40", "limit": 1000}
        ),
        GridFeatureCollection,
    )
    assert _codes(body) == expected_both
    empty = _ok(client.get(GRIDS, params={"code": "9"}), GridFeatureCollection)
    assert (empty["numberMatched"], empty["links"][0]["rel"]) == (0, "self")


def test_every_coordinate_has_at_most_7_decimals_and_is_the_stored_one_rounded(
    client: TestClient, engine: Engine
) -> None:
    texts = [
        client.get(GRIDS, params={"limit": 1000, "offset": offset}).text for offset in (0, 1000)
    ]
    # Numbers kept as their text, to count the decimals actually written.
    features = [f for body in texts for f in json.loads(body, parse_float=str)["features"]]
    assert len(features) == 1138
    with engine.connect() as conn:
        stored: dict[str, bytes] = {
            code: bytes(wkb)
            for code, wkb in conn.execute(
                text("SELECT code, ST_AsBinary(geom) FROM grids WHERE valid_to IS NULL")
            )
        }
    decimals = re.compile(r"-?\d+(?:\.(\d{1,7}))?")
    for feature in features:
        served = feature["geometry"]["coordinates"]
        flat = [c for polygon in served for ring in polygon for position in ring for c in position]
        assert all(decimals.fullmatch(str(c)) for c in flat), feature["id"]
        original = shapely.get_coordinates(shapely.from_wkb(stored[feature["id"]]))
        np.testing.assert_allclose(
            np.array(flat, dtype=float).reshape(-1, 2), original, rtol=0, atol=0.5e-7 + 1e-12
        )


def test_one_grid_by_code_has_its_stored_geometry_hierarchy_and_staff(
    client: TestClient, engine: Engine
) -> None:
    with engine.connect() as conn:
        code, geojson, households = conn.execute(
            text(
                "SELECT code, ST_AsGeoJSON(geom, 7), households FROM grids "
                "WHERE valid_to IS NULL ORDER BY code LIMIT 1 OFFSET 77"
            )
        ).one()
        feature = _ok(client.get(f"{GRIDS}/{code}"), GridDetailFeature)
        assert feature["geometry"] == json.loads(geojson)
        assert feature["properties"]["households"] == households
        assert feature["properties"]["valid_to"] is None
        _assert_hierarchy_and_staff(conn, feature["properties"])
    missing = client.get(f"{GRIDS}/610302999999999")
    assert (missing.status_code, missing.json()["code"]) == (404, "grid_not_found")


# --------------------------------------------------------------------------- nearest, within


def test_nearest_agrees_with_postgis_order_by_geography_distance(
    client: TestClient, engine: Engine
) -> None:
    points = [*_random_points(30, seed=SEED + 1), (0.0, 0.0), (107.2, 40.0)]
    with engine.connect() as conn:
        for i, (lon, lat) in enumerate(points):
            k = (1, 7, 50)[i % 3]
            expected = conn.execute(_NEAREST_SQL, {"lon": lon, "lat": lat, "k": k}).all()
            body = _ok(
                client.get(f"{GRIDS}/nearest", params={"lon": lon, "lat": lat, "k": k}),
                NearGridFeatureCollection,
            )
            assert _codes(body) == [row.code for row in expected], (lon, lat, k)
            distances = [f["properties"]["distance_m"] for f in body["features"]]
            np.testing.assert_allclose(distances, [row.d for row in expected], atol=5e-4)
            assert body["numberReturned"] == k


def test_within_agrees_with_postgis_dwithin_on_geography(
    client: TestClient, engine: Engine
) -> None:
    points = _random_points(24, seed=SEED + 2)
    with engine.connect() as conn:
        for i, (lon, lat) in enumerate(points):
            radius = (30.0, 400.0, 5000.0)[i % 3]
            expected = conn.execute(_WITHIN_SQL, {"lon": lon, "lat": lat, "r": radius}).all()
            params = {"lon": lon, "lat": lat, "radius_m": radius, "limit": 1000}
            body = _ok(client.get(f"{GRIDS}/within", params=params), NearGridFeatureCollection)
            assert _codes(body) == [row.code for row in expected], (lon, lat, radius)
            assert body["numberMatched"] == len(expected)
            distances = [f["properties"]["distance_m"] for f in body["features"]]
            np.testing.assert_allclose(distances, [row.d for row in expected], atol=5e-4)
    # Paged like the listing.
    lon, lat = 107.2, 34.37
    with engine.connect() as conn:
        expected_codes = [
            r.code for r in conn.execute(_WITHIN_SQL, {"lon": lon, "lat": lat, "r": 5000})
        ]
    params = {"lon": lon, "lat": lat, "radius_m": 5000, "limit": 100, "offset": 200}
    page = _ok(client.get(f"{GRIDS}/within", params=params), NearGridFeatureCollection)
    assert _codes(page) == expected_codes[200:300]
    assert {link["rel"] for link in page["links"]} == {"self", "next", "prev"}


# --------------------------------------------------------------------------- intersecting


def _circle(lon: float, lat: float, r: float, n: int = 24) -> list[list[float]]:
    ring = [
        [lon + r * math.cos(2 * math.pi * i / n), lat + r * math.sin(2 * math.pi * i / n)]
        for i in range(n)
    ]
    return [*ring, ring[0]]


def _test_geometries() -> list[dict[str, Any]]:
    (a, b), (c, d), (e, f) = _random_points(3, seed=SEED + 3)
    return [
        {"type": "Polygon", "coordinates": [_circle(a, b, 0.01)]},
        {"type": "Polygon", "coordinates": [_circle(c, d, 0.03), _circle(c, d, 0.01)]},
        {"type": "MultiPolygon", "coordinates": [[_circle(a, b, 0.005)], [_circle(e, f, 0.004)]]},
        {"type": "LineString", "coordinates": [[107.05, 34.33], [107.35, 34.40]]},
        {"type": "MultiLineString", "coordinates": [[[a, b], [c, d]], [[e, f], [e + 0.01, f]]]},
        {"type": "Point", "coordinates": [a, b]},
        {"type": "MultiPoint", "coordinates": [[a, b], [c, d], [e, f], [0.0, 0.0]]},
        {"type": "Polygon", "coordinates": [_circle(10.0, 10.0, 0.1)]},
    ]


@pytest.mark.parametrize("index", range(len(_test_geometries())))
def test_intersecting_agrees_with_postgis_st_intersects(
    client: TestClient, engine: Engine, index: int
) -> None:
    geometry = _test_geometries()[index]
    with engine.connect() as conn:
        expected = list(
            conn.execute(_INTERSECTING_SQL, {"geojson": json.dumps(geometry)}).scalars()
        )
    response = client.post(f"{GRIDS}/intersecting", params={"limit": 1000}, json=geometry)
    body = _ok(response, GridFeatureCollection)
    assert _codes(body) == expected
    assert body["numberMatched"] == len(expected)
    assert body["links"] == []


def test_intersecting_pages_by_code(client: TestClient, engine: Engine) -> None:
    line = {"type": "LineString", "coordinates": [[107.05, 34.33], [107.35, 34.40]]}
    with engine.connect() as conn:
        expected = list(conn.execute(_INTERSECTING_SQL, {"geojson": json.dumps(line)}).scalars())
    page = client.post(
        f"{GRIDS}/intersecting",
        params={"limit": 10, "offset": 5},
        content=json.dumps(line),
        headers={"content-type": GEOJSON},
    )
    body = _ok(page, GridFeatureCollection)
    assert _codes(body) == expected[5:15]
    assert (body["numberMatched"], body["numberReturned"]) == (len(expected), 10)


# --------------------------------------------------------------------------- bad input

_POINT = {"lon": "107.2", "lat": "34.37"}


def _polygon(ring: list[list[float]]) -> bytes:
    return json.dumps({"type": "Polygon", "coordinates": [ring]}).encode()


_BOW_TIE = [[107.1, 34.3], [107.2, 34.4], [107.2, 34.3], [107.1, 34.4], [107.1, 34.3]]


@pytest.mark.parametrize(
    ("path", "params", "status", "code"),
    [
        ("/locate", {"lon": "nan", "lat": "34.37"}, 422, "coordinate_out_of_range"),
        ("/locate", {"lon": "NaN", "lat": "34.37"}, 422, "coordinate_out_of_range"),
        ("/locate", {"lon": "107.2", "lat": "inf"}, 422, "coordinate_out_of_range"),
        ("/locate", {"lon": "-Infinity", "lat": "34.37"}, 422, "coordinate_out_of_range"),
        ("/locate", {"lon": "181", "lat": "34.37"}, 422, "coordinate_out_of_range"),
        ("/locate", {"lon": "107.2", "lat": "-90.5"}, 422, "coordinate_out_of_range"),
        ("/locate", {"lon": "1e999", "lat": "34.37"}, 422, "coordinate_out_of_range"),
        ("/locate", {"lon": "east", "lat": "34.37"}, 422, "invalid_request"),
        ("/locate", {"lon": "107.2"}, 422, "invalid_request"),
        ("/locate", {**_POINT, "crs": "EPSG:3857"}, 422, "unsupported_crs"),
        ("/locate", {**_POINT, "at": "2020-09-07T09:00:00"}, 422, "invalid_request"),
        ("/locate", {"lon": "0", "lat": "0"}, 404, "point_outside_area"),
        ("", {"bbox": "107.2,34.3,107.1,34.4"}, 422, "invalid_bbox"),
        ("", {"bbox": "107.1,34.4,107.2,34.3"}, 422, "invalid_bbox"),
        ("", {"bbox": "107.1,34.3,107.2"}, 422, "invalid_bbox"),
        ("", {"bbox": "107.1,34.3,107.2,nan"}, 422, "invalid_bbox"),
        ("", {"bbox": "107.1,34.3,Infinity,34.4"}, 422, "invalid_bbox"),
        ("", {"bbox": "107.1,34.3,181,34.4"}, 422, "invalid_bbox"),
        ("", {"bbox": "106,34,107.5,35"}, 422, "bbox_too_large"),
        ("", {"limit": "0"}, 422, "invalid_request"),
        ("", {"limit": "1001"}, 422, "invalid_request"),
        ("", {"offset": "-1"}, 422, "invalid_request"),
        ("", {"offset": str(10**30)}, 422, "invalid_request"),
        ("", {"code": "61O302"}, 422, "invalid_code"),
        ("", {"code": "6103020010010011"}, 422, "invalid_code"),
        ("/nearest", {**_POINT, "k": "0"}, 422, "invalid_request"),
        ("/nearest", {**_POINT, "k": "51"}, 422, "invalid_request"),
        ("/nearest", {"lon": "181", "lat": "34.37"}, 422, "coordinate_out_of_range"),
        ("/within", {**_POINT, "radius_m": "0"}, 422, "invalid_radius"),
        ("/within", {**_POINT, "radius_m": "-5"}, 422, "invalid_radius"),
        ("/within", {**_POINT, "radius_m": "5000.01"}, 422, "invalid_radius"),
        ("/within", {**_POINT, "radius_m": "nan"}, 422, "invalid_radius"),
        ("/within", {**_POINT, "radius_m": "inf"}, 422, "invalid_radius"),
        ("/within", _POINT, 422, "invalid_request"),
        ("/within", {"lon": "nan", "lat": "34", "radius_m": "10"}, 422, "coordinate_out_of_range"),
        ("/12345", {}, 422, "invalid_request"),
        ("/61030200100100x", {}, 422, "invalid_request"),
        ("/999999999999999", {}, 404, "grid_not_found"),
    ],
)
def test_bad_query_input_is_refused_with_its_status_and_code(
    client: TestClient, path: str, params: dict[str, str], status: int, code: str
) -> None:
    response = client.get(f"{GRIDS}{path}", params=params)
    assert response.status_code == status, response.text
    body = response.json()
    assert body["code"] == code
    assert body["detail"]
    assert response.headers["content-type"] == "application/json"


def _ring(n: int, lon: float = 107.2, lat: float = 34.37, r: float = 0.01) -> list[list[float]]:
    # 6 decimals: 10,000 positions at full double precision would be ~400 KB, over the
    # body cap, which would then answer before the vertex limit could.
    return [[round(x, 6), round(y, 6)] for x, y in _circle(lon, lat, r, n)]


@pytest.mark.parametrize(
    ("body", "status", "code"),
    [
        (b"not json", 422, "invalid_json"),
        (b"", 422, "invalid_json"),
        (b'{"type": "Point", "coordinates": [NaN, 34.37]}', 422, "coordinate_out_of_range"),
        (b'{"type": "Point", "coordinates": [107.2, Infinity]}', 422, "coordinate_out_of_range"),
        (b'{"type": "Point", "coordinates": [181, 34.37]}', 422, "coordinate_out_of_range"),
        (_polygon(_BOW_TIE), 422, "invalid_geometry"),
        (b'{"type": "GeometryCollection", "geometries": []}', 422, "invalid_geojson"),
        (b'{"type": "Feature", "geometry": null, "properties": {}}', 422, "invalid_geojson"),
        (
            b'{"type": "Polygon", "coordinates": [[[107, 34], [108, 34], [107, 35]]]}',
            422,
            "invalid_geojson",
        ),
        (b"[107.2, 34.37]", 422, "invalid_geojson"),
        (_polygon(_ring(10_000)), 422, "geometry_too_complex"),
        (
            json.dumps(
                {
                    "type": "MultiPolygon",
                    "coordinates": [[_ring(4, lon=100 + i / 10)] for i in range(101)],
                }
            ).encode(),
            422,
            "geometry_too_complex",
        ),
        (
            b" " * (256 * 1024) + b'{"type": "Point", "coordinates": [107, 34]}',
            413,
            "payload_too_large",
        ),
    ],
)
def test_bad_posted_geometry_is_refused_with_its_status_and_code(
    client: TestClient, body: bytes, status: int, code: str
) -> None:
    response = client.post(f"{GRIDS}/intersecting", content=body, headers=AS_JSON)
    assert response.status_code == status, response.text
    assert response.json()["code"] == code
    assert response.json()["detail"]


def test_ten_thousand_vertices_are_accepted(client: TestClient) -> None:
    ring = _ring(9_999, r=0.02)
    assert len(ring) == 10_000
    response = client.post(f"{GRIDS}/intersecting", content=_polygon(ring), headers=AS_JSON)
    assert _ok(response, GridFeatureCollection)["numberMatched"] > 0


def test_an_oversized_body_without_content_length_is_cut_off_while_streamed(
    client: TestClient,
) -> None:
    def chunks() -> Iterator[bytes]:
        yield b'{"type": "Point", "coordinates": [107.2, 34.37]'
        for _ in range(100):
            yield b" " * 4096  # 400 KiB of whitespace in all

    response = client.post(f"{GRIDS}/intersecting", content=chunks(), headers=AS_JSON)
    assert (response.status_code, response.json()["code"]) == (413, "payload_too_large")


# --------------------------------------------------------------------------- any input

_TOKENS = st.sampled_from(
    [
        "",
        "nan",
        "NaN",
        "inf",
        "-Infinity",
        "1e999",
        "-0",
        "0",
        "181",
        "-91",
        "5000",
        "5001",
        "107.2",
        "34.37",
        "1,2,3,4",
        "107.1,34.3,107.2,34.4",
        "GCJ-02",
        "EPSG:4490",
        "2020-09-07T09:00:00+08:00",
        "0001-01-01T00:00:00+14:00",
        "9999-12-31T23:59:59-14:00",
        "2020-09-07",
        "610302",
        "%00",
        "\u5b9d\u9e21",
        "9" * 40,
    ]
)
_VALUES = _TOKENS | st.text(max_size=12) | st.floats().map(repr) | st.integers().map(str)
_PARAMS = st.dictionaries(
    st.sampled_from(
        ["lon", "lat", "crs", "at", "bbox", "code", "limit", "offset", "k", "radius_m", "x"]
    ),
    _VALUES,
    max_size=6,
)
_JSONISH = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=6),
    lambda children: (
        st.lists(children, max_size=6)
        | st.dictionaries(st.sampled_from(["type", "coordinates", "geometry", "x"]), children)
    ),
    max_leaves=30,
)
_GEOMETRY_TYPES = st.sampled_from(
    ["Point", "MultiPoint", "LineString", "MultiLineString", "Polygon", "MultiPolygon", "Feature"]
)
_BODIES = (
    st.binary(max_size=300)
    | _JSONISH.map(lambda v: json.dumps(v).encode())
    | st.builds(
        lambda kind, coordinates: json.dumps({"type": kind, "coordinates": coordinates}).encode(),
        _GEOMETRY_TYPES,
        _JSONISH,
    )
)


@settings(
    max_examples=400,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    path=st.sampled_from(["", "/locate", "/nearest", "/within", "/610302001001001"])
    | st.text(max_size=20).map(lambda s: "/" + quote(s, safe="")),
    params=_PARAMS,
)
def test_no_query_yields_a_server_error(
    client: TestClient, path: str, params: dict[str, str]
) -> None:
    response = client.get(f"{GRIDS}{path}", params=params)
    assert response.status_code < 500, (path, params, response.text)
    if response.status_code >= 400:
        assert response.json()["code"]


@settings(
    max_examples=300,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(body=_BODIES, params=_PARAMS)
def test_no_posted_body_yields_a_server_error(
    client: TestClient, body: bytes, params: dict[str, str]
) -> None:
    response = client.post(f"{GRIDS}/intersecting", content=body, params=params, headers=AS_JSON)
    assert response.status_code < 500, (body, params, response.text)
    if response.status_code >= 400:
        assert response.json()["code"]


# --------------------------------------------------------------------------- OpenAPI


def test_openapi_documents_every_route_with_its_geojson_schema(client: TestClient) -> None:
    spec = client.get("/openapi.json").json()
    paths = spec["paths"]
    expected = {
        f"{GRIDS}/locate": ("get", "LocatedGridFeature"),
        GRIDS: ("get", "GridFeatureCollection"),
        f"{GRIDS}/{{code}}": ("get", "GridDetailFeature"),
        f"{GRIDS}/nearest": ("get", "NearGridFeatureCollection"),
        f"{GRIDS}/within": ("get", "NearGridFeatureCollection"),
        f"{GRIDS}/intersecting": ("post", "GridFeatureCollection"),
    }
    for path, (method, model) in expected.items():
        operation = paths[path][method]
        assert operation["description"], path
        content = operation["responses"]["200"]["content"]
        assert content[GEOJSON]["schema"]["$ref"] == f"#/components/schemas/{model}"
        assert "422" in operation["responses"]
    body = paths[f"{GRIDS}/intersecting"]["post"]["requestBody"]["content"]
    assert len(body[GEOJSON]["schema"]["oneOf"]) == 6
    collection = spec["components"]["schemas"]["GridFeatureCollection"]["properties"]
    assert {"numberMatched", "numberReturned", "links", "features"} <= set(collection)


def test_nearest_documents_the_parameters_it_reads_itself_as_fastapi_would(
    client: TestClient,
) -> None:
    # nearest reads its query itself; locate's lon, lat, crs and at are FastAPI's own.
    paths = client.get("/openapi.json").json()["paths"]
    fastapi = {p["name"]: p for p in paths[f"{GRIDS}/locate"]["get"]["parameters"]}
    nearest = paths[f"{GRIDS}/nearest"]["get"]["parameters"]
    assert [p["name"] for p in nearest] == ["lon", "lat", "k", "crs", "at"]
    for parameter in nearest:
        if parameter["name"] != "k":
            assert parameter == fastapi[parameter["name"]]
    k = nearest[2]
    assert (k["in"], k["required"], k["description"]) == ("query", False, "how many grids")
    assert k["schema"] == {
        "type": "integer", "minimum": 1, "maximum": 50, "default": 5,
        "description": "how many grids", "title": "K",
    }  # fmt: skip
