"""OGC API - Features Part 3 and friends: CQL2 filters, queryables, sortby, properties, CORS.

Each filter is checked against the same condition written in SQL on the same database,
through the real app on uvicorn; the queryables are read by OWSLib, the client GIS tools
are built on.
"""

import json
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient
from owslib.ogcapi.features import Features
from pygeofilter.parsers.cql2_text import parse as parse_cql2_text
from sqlalchemy import Engine, text

from geodata.db.engine import create_db_engine
from grid_service.app import ApiConfig, create_app
from tests.integration.live_support import serving

pytestmark = pytest.mark.integration

UNUSED_BROKER = "127.0.0.1:9"  # the OGC routes never produce; the producer is lazy
ORIGIN = "https://gis.city.example"
BOX = (107.14, 34.36, 107.16, 34.37)  # central Weibin: a few dozen grids, some cut by it
BBOX_TEXT = ",".join(map(str, BOX))


@pytest.fixture(scope="module")
def database_url(reference_database_factory: Callable[[], str]) -> str:
    """One reference city for the module: every test here only reads."""
    return reference_database_factory()


@pytest.fixture(scope="module")
def engine(database_url: str) -> Iterator[Engine]:
    """An engine on that city, to ask PostGIS what the API should answer."""
    engine = create_db_engine(database_url)
    yield engine
    engine.dispose()


@pytest.fixture(scope="module")
def base(database_url: str) -> Iterator[str]:
    """The app on uvicorn over the city, with one origin allowed by CORS; its base URL."""
    config = ApiConfig(database_url, UNUSED_BROKER, cors_allow_origins=(ORIGIN,))
    with serving(config) as url:
        yield url


def items(base: str, collection: str = "grids", **params: Any) -> httpx.Response:
    """GET a collection's items."""
    return httpx.get(f"{base}/ogc/collections/{collection}/items", params=params, timeout=30)


def all_codes(base: str, **params: Any) -> list[str]:
    """The ids of every grid the query matches, page after page."""
    codes: list[str] = []
    while True:
        response = items(base, limit=1000, offset=len(codes), **params)
        assert response.status_code == 200, response.text
        page = response.json()
        codes += [feature["id"] for feature in page["features"]]
        if len(codes) >= page["numberMatched"]:
            assert len(codes) == page["numberMatched"]
            return codes


def sql_codes(engine: Engine, condition: str) -> set[str]:
    """Codes of the grids in force that satisfy the SQL condition, as PostGIS says."""
    with engine.connect() as conn:
        rows = conn.execute(text(f"SELECT code FROM grids WHERE valid_to IS NULL AND {condition}"))
        return {row.code for row in rows}


def prop(name: str) -> dict[str, str]:
    """A property in CQL2 JSON."""
    return {"property": name}


BOX_SQL = "ST_Intersects(geom, ST_MakeEnvelope({}, {}, {}, {}, 4326))".format(*BOX)

# (CQL2 text, the same in CQL2 JSON, the same in SQL)
EQUIVALENTS: list[tuple[str, dict[str, Any], str]] = [
    ("households > 500", {"op": ">", "args": [prop("households"), 500]}, "households > 500"),
    (
        "name LIKE '%第1网格'",
        {"op": "like", "args": [prop("name"), "%第1网格"]},
        "name LIKE '%第1网格'",
    ),
    (
        "households BETWEEN 200 AND 300",
        {"op": "between", "args": [prop("households"), [200, 300]]},
        "households BETWEEN 200 AND 300",
    ),
    (
        "community_code IN ('610302001001', '610303001003')",
        {"op": "in", "args": [prop("community_code"), ["610302001001", "610303001003"]]},
        "community_code IN ('610302001001', '610303001003')",
    ),
    (
        f"S_INTERSECTS(geometry, BBOX({BBOX_TEXT}))",
        {"op": "s_intersects", "args": [prop("geometry"), {"bbox": list(BOX)}]},
        BOX_SQL,
    ),
    (
        f"NOT (households <= 300) AND S_INTERSECTS(geometry, BBOX({BBOX_TEXT}))",
        {
            "op": "and",
            "args": [
                {"op": "not", "args": [{"op": "<=", "args": [prop("households"), 300]}]},
                {"op": "s_intersects", "args": [prop("geometry"), {"bbox": list(BOX)}]},
            ],
        },
        f"NOT (households <= 300) AND {BOX_SQL}",
    ),
]


@pytest.mark.parametrize(
    ("cql2_text", "cql2_json", "sql"), EQUIVALENTS, ids=[case[0][:30] for case in EQUIVALENTS]
)
def test_a_cql2_filter_selects_what_the_same_sql_does(
    base: str, engine: Engine, cql2_text: str, cql2_json: dict[str, Any], sql: str
) -> None:
    expected = sql_codes(engine, sql)
    assert 0 < len(expected) < 1138, "a condition that selects all or nothing tests nothing"
    as_text = all_codes(base, filter=cql2_text)
    as_json = all_codes(base, filter=json.dumps(cql2_json), **{"filter-lang": "cql2-json"})
    assert sorted(as_text) == sorted(expected)
    assert sorted(as_json) == sorted(expected)


def test_a_bbox_in_lat_lon_filter_crs_selects_the_same_grids(base: str, engine: Engine) -> None:
    x0, y0, x1, y1 = BOX
    lat_lon = f"S_INTERSECTS(geometry, BBOX({y0},{x0},{y1},{x1}))"
    codes = all_codes(base, filter=lat_lon, **{"filter-crs": "EPSG:4490"})
    assert set(codes) == sql_codes(engine, BOX_SQL)


def test_a_filter_and_the_bbox_parameter_both_apply(base: str, engine: Engine) -> None:
    codes = all_codes(base, filter="households > 400", bbox=BBOX_TEXT)
    assert set(codes) == sql_codes(engine, f"households > 400 AND {BOX_SQL}")


def test_a_malformed_filter_is_400_with_the_parsers_message(base: str) -> None:
    malformed = "households >"
    with pytest.raises(Exception) as parsed:  # noqa: PT011  the parser's own error, whatever its class
        parse_cql2_text(malformed)
    response = items(base, filter=malformed)
    assert response.status_code == 400
    body = response.json()
    assert body["code"] == "invalid_filter"
    assert str(parsed.value).splitlines()[0].strip() in body["detail"]


@pytest.mark.parametrize(
    ("params", "code"),
    [
        ({"filter": "{not json", "filter-lang": "cql2-json"}, "invalid_filter"),
        ({"filter": "households = 'many'"}, "invalid_filter"),
        ({"filter": "S_INTERSECTS(geometry, POINT(500 34))"}, "invalid_filter"),
        ({"filter": "T_AFTER(valid_from, TIMESTAMP('2020-01-01T00:00:00Z'))"}, "invalid_filter"),
        ({"filter": "phone = '1'"}, "unknown_property"),
        ({"filter": "households > 1", "filter-lang": "ecql"}, "invalid_parameter"),
        ({"sortby": "-phone"}, "unknown_property"),
        ({"sortby": "geometry"}, "unknown_property"),
        ({"sortby": "-"}, "invalid_parameter"),
        ({"properties": "name,phone"}, "unknown_property"),
    ],
)
def test_refused_filters_sorts_and_properties_are_400_with_a_code(
    base: str, params: dict[str, str], code: str
) -> None:
    response = items(base, **params)
    assert response.status_code == 400, response.text
    assert response.json()["code"] == code


def test_sortby_orders_by_the_properties_then_the_id(base: str, engine: Engine) -> None:
    response = items(base, sortby="-households,code", limit=50)
    assert response.status_code == 200
    served = [feature["id"] for feature in response.json()["features"]]
    with engine.connect() as conn:
        rows = conn.execute(
            text(
                "SELECT code FROM grids WHERE valid_to IS NULL "
                "ORDER BY households DESC, code LIMIT 50"
            )
        )
        assert served == [row.code for row in rows]
    # `+` unescaped in a URL is a space: ascending all the same.
    ascending = httpx.get(f"{base}/ogc/collections/grids/items?sortby=+households&limit=5")
    households = [feature["properties"]["households"] for feature in ascending.json()["features"]]
    assert households == sorted(households)


def test_properties_chooses_what_each_feature_carries(base: str) -> None:
    page = items(base, properties="name,households", limit=3).json()
    assert [set(feature["properties"]) for feature in page["features"]] == [
        {"name", "households"}
    ] * 3
    assert all(feature["geometry"] for feature in page["features"])
    code = page["features"][0]["id"]
    one = httpx.get(f"{base}/ogc/collections/grids/items/{code}", params={"properties": ""})
    assert one.status_code == 200
    assert one.json()["id"] == code
    assert one.json()["properties"] == {}


def test_owslib_reads_the_queryables(base: str) -> None:
    queryables = Features(f"{base}/ogc").collection_queryables("grids")
    properties = queryables["properties"]
    assert properties["households"]["type"] == "integer"
    assert properties["valid_from"] == {
        "title": "valid_from",
        "type": "string",
        "format": "date-time",
    }
    assert properties["geometry"]["format"] == "geometry-multipolygon"
    assert "flags" not in Features(f"{base}/ogc").collection_queryables("pois")["properties"]


def test_queryables_are_linked_typed_and_declared_in_conformance(base: str) -> None:
    collection = httpx.get(f"{base}/ogc/collections/pois").json()
    (link,) = [
        item
        for item in collection["links"]
        if item["rel"] == "http://www.opengis.net/def/rel/ogc/1.0/queryables"
    ]
    response = httpx.get(link["href"])
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/schema+json"
    assert response.json()["properties"]["geometry"]["format"] == "geometry-point"
    conforms = httpx.get(f"{base}/ogc/conformance").json()["conformsTo"]
    assert "http://www.opengis.net/spec/ogcapi-features-3/1.0/conf/filter" in conforms
    assert "http://www.opengis.net/spec/cql2/1.0/conf/cql2-json" in conforms
    # The incidents' queryables are as closed as the incidents.
    assert httpx.get(f"{base}/ogc/collections/incidents/queryables").status_code == 401


def test_cors_answers_the_preflight_and_marks_reads_for_an_allowed_origin(base: str) -> None:
    preflight = httpx.options(
        f"{base}/tiles/grids/14/13195/6464.mvt",
        headers={
            "Origin": ORIGIN,
            "Access-Control-Request-Method": "GET",
            "Access-Control-Request-Headers": "authorization",
        },
    )
    assert preflight.status_code == 200
    assert preflight.headers["access-control-allow-origin"] == ORIGIN
    assert "GET" in preflight.headers["access-control-allow-methods"]
    assert "authorization" in preflight.headers["access-control-allow-headers"].lower()
    read = httpx.get(
        f"{base}/ogc/collections/grids/items", params={"limit": 1}, headers={"Origin": ORIGIN}
    )
    assert read.status_code == 200
    assert read.headers["access-control-allow-origin"] == ORIGIN
    assert "Content-Crs" in read.headers["access-control-expose-headers"]
    other = httpx.get(f"{base}/livez", headers={"Origin": "https://elsewhere.example"})
    assert "access-control-allow-origin" not in other.headers


def test_without_origins_configured_there_is_no_cors_at_all() -> None:
    # No database is needed: neither answer reaches one.
    client = TestClient(create_app(ApiConfig("postgresql://unused@127.0.0.1/unused", "x:9")))
    preflight = client.options(
        "/ogc/collections",
        headers={"Origin": ORIGIN, "Access-Control-Request-Method": "GET"},
    )
    assert preflight.status_code == 405
    assert "access-control-allow-origin" not in preflight.headers
    read = client.get("/livez", headers={"Origin": ORIGIN})
    assert read.status_code == 200
    assert "access-control-allow-origin" not in read.headers
