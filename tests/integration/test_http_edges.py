"""The HTTP API's edges on the real app and a copy of the reference city: hostile input
(NUL bytes, times and weeks beyond what Python and PostgreSQL hold, bodies of the wrong
type or size, bad tokens on public routes, broken boundary files) gets a 4xx with a
stable code, never a 500; private answers are never stored by a cache; /docs is served
without a CDN.
"""

import json
import re
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from httpx import Response
from sqlalchemy import text

from geodata.accounts import new_token
from geodata.db.engine import create_db_engine
from grid_service.errors import install_error_handlers
from tests.integration.incident_support import Env, open_env, snapshot, store_incident
from tests.integration.test_auth import bearer

pytestmark = pytest.mark.integration

WEEK = "2020-W37"
INVALID = "invalid_request"


@pytest.fixture(scope="module")
def env(reference_database_factory: Callable[[], str]) -> Iterator[Env]:
    """The real app on a fresh reference city, with a token per caller (no broker)."""
    with open_env(reference_database_factory()) as opened:
        yield opened


def get(env: Env, caller: str | None, path: str, **params: str) -> Response:
    """GET `path` (already percent-encoded) as `caller`."""
    headers = bearer(env.tokens[caller]) if caller else {}
    # No params argument at all when there are none: httpx would drop the path's query.
    response: Response = env.client.get(path, params=params or None, headers=headers)
    return response


def assert_refused(response: Response, status: int, code: str) -> None:
    """The answer is `status` with the stable `code`."""
    assert (response.status_code, response.json()["code"]) == (status, code), response.text


# --------------------------------------------------------------------------- NUL bytes

NUL_URLS = [
    (None, "/ogc/collections/grids/items/%00"),
    ("admin", "/ogc/collections/incidents/items/%00"),
    ("admin", "/api/v1/workers/%00/patrols"),
    ("sup_x", "/api/v1/workers/W0%0000001/patrols"),
    ("worker_a", "/api/v1/workers/%00/patrols?week=2020-W37"),
    (None, "/api/v1/grids/%00"),
    (None, "/api/v1/grids?code=61%00"),
    (None, "/tiles/grids%00.json"),
    ("admin", "/api/v1/incidents?category=%00"),
    ("admin", "/api/v1/incidents?status=reported%00"),
    ("admin", "/api/v1/incidents/%00"),
    ("admin", "/api/v1/compliance?week=2020-W37%00"),
    (None, "/ogc/collections/grids/items?datetime=%00"),
    (None, "/map/assets/%00"),
    (None, "/docs/assets/%00"),
]


@pytest.mark.parametrize(("caller", "url"), NUL_URLS)
def test_a_nul_byte_in_the_url_is_422_before_any_route(
    env: Env, caller: str | None, url: str
) -> None:
    assert_refused(get(env, caller, url), 422, "invalid_request")


def test_a_nul_byte_in_a_transition_is_422_and_changes_nothing(env: Env) -> None:
    incident_id = store_incident(env.database_url, env.city.grid_a, staff=None)
    before = snapshot(env.database_url, incident_id)
    for body in (
        {"action": "cancel", "note": "dup\u0000licate"},
        {"action": "dispatch", "assignee": "W\u000000001"},
        {"action": "cancel\u0000", "note": "x"},
    ):
        assert_refused(env.patch("admin", incident_id, body), 422, "invalid_request")
    assert snapshot(env.database_url, incident_id) == before


# --------------------------------------------------------------------------- times and weeks


def _outside(env: Env) -> list[tuple[str | None, str, dict[str, str], int, str]]:
    city = env.city
    worker = f"/api/v1/workers/{city.worker_a}/patrols"
    point = {"lon": "107.15", "lat": "34.37"}
    return [
        ("admin", "/api/v1/compliance", {"week": "9999-W52"}, 422, "invalid_week"),
        ("admin", "/api/v1/compliance", {"week": "1969-W52"}, 422, "invalid_week"),
        (
            "admin",
            "/api/v1/compliance",
            {"week": WEEK, "as_of": "9999-12-31T23:59:59-12:00"},
            422,
            "invalid_request",
        ),
        (
            "admin",
            "/api/v1/compliance",
            {"week": "0001-W01", "as_of": "0001-01-01T00:00:00+14:00"},
            422,
            "invalid_request",
        ),
        ("admin", "/api/v1/compliance", {"as_of": "0001-01-01T00:00:00+14:00"}, 422, INVALID),
        ("sup_x", "/api/v1/compliance", {"as_of": "1969-12-31T23:59:59Z"}, 422, INVALID),
        ("worker_a", worker, {"week": "9999-W52"}, 422, "invalid_week"),
        ("admin", worker, {"week": "0001-W01"}, 422, "invalid_week"),
        ("admin", worker, {"week": "２０２０-W37"}, 422, "invalid_week"),
        (None, f"/api/v1/grids/{city.grid_a}", {"at": "0001-01-01T00:00:00+14:00"}, 422, INVALID),
        (None, "/api/v1/grids", {"at": "9999-12-31T23:59:59-12:00"}, 422, INVALID),
        (None, "/api/v1/grids/locate", point | {"at": "9999-12-31T23:59:59-12:00"}, 422, INVALID),
        (None, "/api/v1/grids/nearest", point | {"at": "0001-01-01T00:00:00+14:00"}, 422, INVALID),
        (
            None,
            "/api/v1/grids/within",
            point | {"radius_m": "100", "at": "9000-01-01T00:00:00Z"},
            422,
            "invalid_request",
        ),
        (
            None,
            "/ogc/collections/grids/items",
            {"datetime": "0001-01-01T00:00:00+14:00"},
            400,
            "invalid_parameter",
        ),
        (
            None,
            "/ogc/collections/grids/items",
            {"datetime": "2020-01-01T00:00:00Z/9999-12-31T23:59:59-12:00"},
            400,
            "invalid_parameter",
        ),
        (
            "admin",
            "/ogc/collections/incidents/items",
            {"datetime": "../0001-01-01T00:00:00+14:00"},
            400,
            "invalid_parameter",
        ),
    ]  # fmt: skip


def test_weeks_and_times_outside_1970_to_9000_are_refused_with_a_code(env: Env) -> None:
    for caller, path, params, status, code in _outside(env):
        response = get(env, caller, path, **params)
        assert (response.status_code, response.json()["code"]) == (status, code), (
            path,
            params,
            response.text,
        )


def test_weeks_and_times_at_the_ends_of_the_span_are_served(env: Env) -> None:
    for params in (
        {"week": "1970-W01", "as_of": "1970-01-01T00:00:00Z"},
        {"week": "2200-W01", "as_of": "2200-01-01T00:00:00+08:00"},
        {"week": "9000-W52", "as_of": "8999-12-31T23:59:59+14:00"},
    ):
        response = get(env, "admin", "/api/v1/compliance", **params)
        assert response.status_code == 200, (params, response.text)
    patrols = get(env, "admin", f"/api/v1/workers/{env.city.worker_a}/patrols", week="9000-W52")
    assert patrols.status_code == 200, patrols.text
    old = get(env, None, f"/api/v1/grids/{env.city.grid_a}", at="1970-01-01T00:00:00Z")
    assert_refused(old, 404, "grid_not_found")


# --------------------------------------------------------------------------- DataError


def test_a_value_postgresql_refuses_is_422_not_500(env: Env) -> None:
    # The catch-all behind every route's own checks: a read whose parameter PostgreSQL
    # cannot take, on the real database.
    app = FastAPI()
    install_error_handlers(app)
    engine = create_db_engine(env.database_url)

    @app.get("/nul")
    def nul() -> None:
        with engine.connect() as connection:
            connection.execute(text("SELECT CAST(:value AS text)"), {"value": "a\x00b"})

    @app.get("/overflow")
    def overflow() -> None:
        with engine.connect() as connection:
            connection.execute(text("SELECT CAST('5874897-12-31' AS date) + 1"))

    try:
        with TestClient(app, raise_server_exceptions=False) as client:
            for path in ("/nul", "/overflow"):
                assert_refused(client.get(path), 422, "invalid_request")
    finally:
        engine.dispose()


# --------------------------------------------------------------------------- media types

GEOMETRY = {"type": "Point", "coordinates": [107.15, 34.37]}
NOT_JSON = [
    None,
    "text/plain",
    "text/plain; charset=utf-8",
    "application/x-www-form-urlencoded",
    "multipart/form-data; boundary=x",
    "application/json; charset=latin-1",
    "application/json; charset=iso-8859-1",
    "application/jsonx",
]


def _json_routes(env: Env) -> list[tuple[str, str, str | None, dict[str, str], Any]]:
    incident_id = store_incident(env.database_url, env.city.grid_a, staff=None)
    return [
        ("POST", "/api/v1/checkins", "worker_a", {}, {"event_id": str(uuid.uuid4())}),
        ("POST", "/api/v1/incidents", "sup_x", {}, {"category": "environment.garbage"}),
        (
            "PATCH",
            f"/api/v1/incidents/{incident_id}",
            "admin",
            {"If-Match": '"1"'},
            {"action": "cancel", "note": "415"},
        ),
        ("POST", "/api/v1/grids/intersecting", None, {}, GEOMETRY),
    ]


def _send(
    env: Env,
    route: tuple[str, str, str | None, dict[str, str], Any],
    content_type: str | None,
) -> Response:
    method, path, caller, headers, body = route
    sent = headers | (bearer(env.tokens[caller]) if caller else {})
    if content_type is not None:
        sent["Content-Type"] = content_type
    response: Response = env.client.request(
        method, path, content=json.dumps(body).encode(), headers=sent
    )
    return response


def test_a_json_route_refuses_any_other_media_type_with_415(env: Env) -> None:
    routes = _json_routes(env)
    incident_id = routes[2][1].rsplit("/", 1)[1]
    before = snapshot(env.database_url, incident_id)
    for route in routes:
        takes_geojson = route[1].endswith("/intersecting")
        for content_type in NOT_JSON + ([] if takes_geojson else ["application/geo+json"]):
            response = _send(env, route, content_type)
            assert (response.status_code, response.json()["code"]) == (
                415,
                "unsupported_media_type",
            ), (route[1], content_type, response.text)
    assert snapshot(env.database_url, incident_id) == before, "a refused PATCH changed nothing"


def test_a_json_route_takes_json_in_utf_8(env: Env) -> None:
    checkins, incidents, patch, intersecting = _json_routes(env)
    for route, content_type in (
        (checkins, "application/json"),
        (incidents, "application/json; charset=UTF-8"),
        (patch, 'application/json; charset="utf-8"'),
        (intersecting, "application/geo+json"),
        (intersecting, "Application/JSON"),
    ):
        response = _send(env, route, content_type)
        assert response.status_code not in (415, 500), (route[1], content_type, response.text)
    # The check-in and the report are incomplete (422); the cancel and the query succeed.
    assert _send(env, checkins, "application/json").status_code == 422
    assert _send(env, intersecting, "application/json").status_code == 200
    incident_id = patch[1].rsplit("/", 1)[1]
    assert snapshot(env.database_url, incident_id)[0] == "cancelled"


# --------------------------------------------------------------------------- PATCH size


def test_a_patch_body_over_16_kib_is_413_declared_or_streamed(env: Env) -> None:
    incident_id = store_incident(env.database_url, env.city.grid_a, staff=None)
    before = snapshot(env.database_url, incident_id)
    headers = bearer(env.tokens["admin"]) | {
        "If-Match": '"1"',
        "Content-Type": "application/json",
    }
    body = json.dumps({"action": "cancel", "note": "x", "pad": " " * 17_000}).encode()
    url = f"/api/v1/incidents/{incident_id}"
    declared = env.client.patch(url, content=body, headers=headers)
    assert_refused(declared, 413, "payload_too_large")

    def chunks() -> Iterator[bytes]:
        for start in range(0, len(body), 1024):
            yield body[start : start + 1024]

    streamed = env.client.patch(url, content=chunks(), headers=headers)
    assert "content-length" not in streamed.request.headers
    assert_refused(streamed, 413, "payload_too_large")
    assert snapshot(env.database_url, incident_id) == before


# --------------------------------------------------------------------------- tokens

BAD_TOKENS = [f"Bearer {new_token()}", "Bearer not-a-token", "Basic dXNlcjpwYXNz"]


def _public_urls(env: Env) -> list[str]:
    return [
        f"/api/v1/grids/{env.city.grid_a}",
        "/api/v1/grids/locate?lon=107.15&lat=34.37",
        f"/api/v1/grids?code={env.city.district_x}&limit=1",
        "/ogc",
        "/ogc/conformance",
        "/ogc/collections",
        "/ogc/collections/grids/items?limit=1",
        "/tiles/grids.json",
        "/map",
        "/docs",
        "/openapi.json",
    ]


def test_a_bad_token_is_401_on_public_routes_too(env: Env) -> None:
    for url in _public_urls(env):
        anonymous = env.client.get(url)
        assert anonymous.status_code == 200, (url, anonymous.text)
        for authorization in BAD_TOKENS:
            response = env.client.get(url, headers={"Authorization": authorization})
            assert (response.status_code, response.json()["code"]) == (401, "invalid_token"), (
                url,
                authorization,
                response.text,
            )
            assert 'error="invalid_token"' in response.headers["WWW-Authenticate"]
        good = env.client.get(url, headers=bearer(env.tokens["worker_a"]))
        assert good.status_code == 200, (url, good.text)


# --------------------------------------------------------------------------- caching


def test_private_answers_are_no_store_and_public_ones_keep_their_caching(env: Env) -> None:
    city = env.city
    incident_id = store_incident(env.database_url, city.grid_a, staff=None)
    private = [
        ("sup_x", "/api/v1/compliance", {"week": WEEK}),
        ("sup_x", f"/api/v1/workers/{city.worker_a}/patrols", {"week": WEEK}),
        ("admin", "/api/v1/incidents", {}),
        ("admin", f"/api/v1/incidents/{incident_id}", {}),
        ("admin", "/tiles/incidents/0/0/0.pbf", {}),
        ("admin", "/ogc/collections/incidents/items", {}),
        ("worker_a", f"/api/v1/grids/{city.grid_a}", {}),  # public data, asked with a token
        ("worker_a", "/tiles/grids/0/0/0.pbf", {}),
        (None, "/api/v1/compliance", {"week": WEEK}),  # the 401 of a private route
        (None, "/api/v1/incidents/not-a-uuid", {}),
    ]
    for caller, path, params in private:
        response = get(env, caller, path, **params)
        assert response.status_code < 500, response.text
        assert response.headers.get("cache-control") == "no-store", (caller, path)
    tile = get(env, None, "/tiles/grids/0/0/0.pbf")
    assert tile.headers["cache-control"].startswith("public, max-age=")
    assert "etag" in tile.headers
    for path in (f"/api/v1/grids/{city.grid_a}", "/ogc/collections/grids/items", "/ogc"):
        response = get(env, None, path)
        assert response.status_code == 200
        assert "no-store" not in response.headers.get("cache-control", ""), path


# --------------------------------------------------------------------------- docs


def test_docs_load_only_assets_this_server_serves(env: Env) -> None:
    page = env.client.get("/docs")
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    html = page.text
    assert re.search(r"(?:https?:)?//", html) is None, "no absolute URL in the page"
    urls = re.findall(r'(?:href|src)="([^"]+)"', html) + re.findall(r"url: '([^']+)'", html)
    assert len(urls) >= 4, html  # style, icon, script and the API definition
    for url in urls:
        assert url.startswith("/"), url
        assert env.client.get(url).status_code == 200, url
    assert env.client.get("/redoc").status_code == 404
    links = env.client.get("/ogc").json()["links"]
    assert any(link["rel"] == "service-doc" and link["href"].endswith("/docs") for link in links)


# --------------------------------------------------------------------------- boundary uploads

# A FlatGeobuf header with no layer after it: GDAL opens it and finds nothing.
_FGB_WITHOUT_LAYER = b"fgb\x03fgb\x00\x10\x00\x00\x00junkjunkjunk"


@pytest.mark.parametrize(
    ("name", "content", "says"),
    [
        ("宝鸡 边界.fgb", b"garbage", "FlatGeobuf"),
        ("grids.fgb", _FGB_WITHOUT_LAYER, "FlatGeobuf"),
        ("网格.gpkg", b"garbage", "GeoPackage"),
        ("grids.geojson", b'{"type": ', "GeoJSON"),
        ("grids.shp", b"garbage", "Shapefile"),
        ("grids.zip", b"PK\x03\x04junk", "zip"),
        ("../../etc/grids.zip", b"PK\x05\x06" + bytes(18), "zip"),
    ],
)
def test_a_broken_boundary_file_is_named_as_uploaded_with_its_formats_problem(
    env: Env, name: str, content: bytes, says: str
) -> None:
    response = env.client.post(
        "/api/v1/admin/boundaries",
        params={"dry_run": "true"},
        files={"file": (name, content, "application/octet-stream")},
        headers=bearer(env.tokens["admin"]),
    )
    assert_refused(response, 422, "import_refused")
    body = response.json()
    shown = body["detail"] + json.dumps(body["problems"], ensure_ascii=False)
    for server_side in ("/tmp", "wangge-upload", "vsizip"):
        assert server_side not in shown, shown
    assert name.rsplit("/", 1)[-1] in shown, shown
    assert says in shown, shown
    if says != "zip":
        assert "zip" not in shown.lower(), shown
