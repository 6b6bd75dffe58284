"""OGC API - Features under /ogc, read by GDAL's OAPIF driver from the real app on uvicorn.

The app runs in a child process: pyogrio holds the GIL while GDAL fetches pages, so a
server thread in the test's own process would never answer it.
"""

import json
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pyogrio
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine, text

from geodata.db.engine import create_db_engine
from grid_service.app import ApiConfig, create_app
from wangge.users_cli import add_user

pytestmark = pytest.mark.integration

OGC = "http://www.opengis.net/spec/ogcapi-features-1/1.0/conf"
CRS84 = "http://www.opengis.net/def/crs/OGC/1.3/CRS84"
EPSG_4490 = "http://www.opengis.net/def/crs/EPSG/0/4490"
GEOJSON = "application/geo+json"
UNUSED_BROKER = "127.0.0.1:9"  # the OGC routes never produce; the producer is lazy
PUBLIC = ["districts", "streets", "communities", "grids", "pois"]
BOX = (107.14, 34.36, 107.16, 34.37)  # central Weibin: a few dozen grids, some cut by it

_SERVER = """
import socket, sys, uvicorn
from grid_service.app import ApiConfig, create_app
app = create_app(ApiConfig(sys.argv[1], sys.argv[2]))
sock = socket.socket()
sock.bind(("127.0.0.1", 0))
print(sock.getsockname()[1], flush=True)
uvicorn.Server(uvicorn.Config(app, log_level="warning")).run(sockets=[sock])
"""


@pytest.fixture(scope="module")
def serve() -> Iterator[Callable[[str], str]]:
    """Factory: the app on uvicorn in a child process over a database; its /ogc URL."""
    children: list[subprocess.Popen[str]] = []

    def start(database_url: str) -> str:
        child = subprocess.Popen(
            [sys.executable, "-c", _SERVER, database_url, UNUSED_BROKER],
            stdout=subprocess.PIPE,
            text=True,
        )
        children.append(child)
        assert child.stdout is not None
        port = int(child.stdout.readline())
        root = f"http://127.0.0.1:{port}/ogc"
        deadline = time.monotonic() + 30
        while True:
            try:
                if httpx.get(root, timeout=2).status_code == 200:
                    return root
            except httpx.TransportError:
                pass
            assert child.poll() is None, "the API process exited"
            assert time.monotonic() < deadline, "the API did not answer within 30 s"
            time.sleep(0.1)

    yield start
    for child in children:
        child.terminate()
    for child in children:
        try:
            child.wait(10)
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait()


@pytest.fixture(scope="module")
def shared_database_url(reference_database_factory: Callable[[], str]) -> str:
    """One reference database for the module's read-only tests."""
    return reference_database_factory()


@pytest.fixture(scope="module")
def shared_engine(shared_database_url: str) -> Iterator[Engine]:
    """An engine on that database, to ask PostGIS what the API should answer."""
    engine = create_db_engine(shared_database_url)
    yield engine
    engine.dispose()


@pytest.fixture(scope="module")
def ogc(serve: Callable[[str], str], shared_database_url: str) -> str:
    """The /ogc URL of the app over the shared reference database."""
    return serve(shared_database_url)


def get(url: str, **params: Any) -> httpx.Response:
    """GET without following redirects: a redirect is a failure here, GDAL is strict."""
    return httpx.get(url, params=params or None, timeout=30)


def link(document: dict[str, Any], rel: str, media_type: str | None = None) -> dict[str, str]:
    """The one link of `document` with this rel (and type)."""
    found: list[dict[str, str]] = [
        item
        for item in document["links"]
        if item["rel"] == rel and (media_type is None or item["type"] == media_type)
    ]
    assert len(found) == 1, f"expected one {rel} link, got {found}"
    return found[0]


def current_codes(engine: Engine, box: tuple[float, float, float, float] | None = None) -> set[str]:
    """Codes of the grids in force, intersecting the box if given, as PostGIS says."""
    where = "valid_to IS NULL"
    if box is not None:
        where += " AND ST_Intersects(geom, ST_MakeEnvelope(:x0, :y0, :x1, :y1, 4326))"
    x0, y0, x1, y1 = box or (0.0, 0.0, 0.0, 0.0)
    with engine.connect() as conn:
        rows = conn.execute(
            text(f"SELECT code FROM grids WHERE {where}"), {"x0": x0, "y0": y0, "x1": x1, "y1": y1}
        )
        return {row.code for row in rows}


# --------------------------------------------------------------------------- GDAL


def test_gdal_reads_all_1138_grids_with_their_codes(ogc: str, shared_engine: Engine) -> None:
    frame = pyogrio.read_dataframe(f"OAPIF:{ogc}", layer="grids")
    expected = current_codes(shared_engine)
    assert len(expected) == 1138
    assert len(frame) == 1138
    assert set(frame["code"]) == expected
    assert (frame["id"] == frame["code"]).all()
    assert frame.geometry.geom_type.eq("MultiPolygon").all()
    # The describedby schema types the fields, even valid_to that is null on every page.
    assert str(frame["valid_from"].dtype).startswith("datetime64")
    assert str(frame["valid_to"].dtype).startswith("datetime64")


def test_gdal_bbox_read_returns_what_postgis_intersects(ogc: str, shared_engine: Engine) -> None:
    frame = pyogrio.read_dataframe(f"OAPIF:{ogc}", layer="grids", bbox=BOX)
    expected = current_codes(shared_engine, BOX)
    assert 10 < len(expected) < 1138
    assert set(frame["code"]) == expected
    # GDAL filters again on its side; the server alone must already be exact.
    page = get(f"{ogc}/collections/grids/items", bbox=",".join(map(str, BOX)), limit=1000)
    codes = {feature["id"] for feature in page.json()["features"]}
    assert codes == expected
    assert page.json()["numberMatched"] == len(expected)


def test_gdal_opens_the_root_with_a_trailing_slash_and_a_collection_url(ogc: str) -> None:
    for url, layer in ((f"{ogc}/", "grids"), (f"{ogc}/collections/districts", None)):
        frame = pyogrio.read_dataframe(f"OAPIF:{url}", layer=layer)
        assert len(frame) == (1138 if layer else 4)


def test_gdal_bin_copies_the_grids_layer(ogc: str, shared_engine: Engine, tmp_path: Path) -> None:
    out = tmp_path / "grids.geojson"
    subprocess.run(
        ["ogr2ogr", "-f", "GeoJSON", str(out), f"OAPIF:{ogc}", "grids"],
        check=True,
        capture_output=True,
        timeout=120,
    )
    features = json.loads(out.read_text())["features"]
    assert {feature["properties"]["code"] for feature in features} == current_codes(shared_engine)


# --------------------------------------------------------------------------- documents


def test_landing_page_links_to_the_api_definition_conformance_and_data(ogc: str) -> None:
    response = get(ogc)
    assert response.headers["content-type"] == "application/json"
    page = response.json()
    assert link(page, "self")["href"] == ogc
    service_desc = link(page, "service-desc")
    assert service_desc["type"] == "application/vnd.oai.openapi+json;version=3.0"
    assert service_desc["href"].endswith("/openapi.json")
    api = get(service_desc["href"]).json()
    assert "/ogc/collections/{collectionId}/items" in api["paths"]
    assert link(page, "service-doc")["href"].endswith("/docs")
    assert get(link(page, "service-doc")["href"]).status_code == 200
    conformance = link(page, "conformance", "application/json")
    assert conformance["href"] == f"{ogc}/conformance"
    data = link(page, "data", "application/json")
    assert data["href"] == f"{ogc}/collections"
    slashed = get(f"{ogc}/")  # GDAL asks for the root exactly as it was given
    assert slashed.status_code == 200
    assert slashed.headers["content-type"] == "application/json"


def test_conformance_declares_core_oas30_geojson_and_crs(ogc: str) -> None:
    classes = get(f"{ogc}/conformance").json()["conformsTo"]
    assert {f"{OGC}/core", f"{OGC}/oas30", f"{OGC}/geojson"} <= set(classes)
    assert "http://www.opengis.net/spec/ogcapi-features-2/1.0/conf/crs" in classes


def test_collections_list_the_public_ones_with_extents_and_items_links(
    ogc: str, shared_engine: Engine
) -> None:
    listing = get(f"{ogc}/collections").json()
    assert link(listing, "self")["href"] == f"{ogc}/collections"
    assert [c["id"] for c in listing["collections"]] == PUBLIC  # incidents need a token
    for collection in listing["collections"]:
        assert collection["itemType"] == "feature"
        assert collection["extent"]["spatial"]["crs"] == CRS84
        x0, y0, x1, y1 = collection["extent"]["spatial"]["bbox"][0]
        assert 107.0 < x0 < x1 < 107.4
        assert 34.3 < y0 < y1 < 34.5
        assert collection["storageCrs"] == CRS84
        assert EPSG_4490 in collection["crs"]
        self_link = link(collection, "self", "application/json")
        assert get(self_link["href"]).json() == collection
        items = get(link(collection, "items", GEOJSON)["href"])
        assert items.status_code == 200
        assert items.headers["content-type"] == GEOJSON
        assert items.json()["type"] == "FeatureCollection"
        schema = get(link(collection, "describedby")["href"])
        assert schema.headers["content-type"] == "application/schema+json"
    grids = get(f"{ogc}/collections/grids").json()
    assert grids["extent"]["temporal"]["interval"] == [["2019-12-31T16:00:00Z", None]]
    assert "temporal" not in get(f"{ogc}/collections/pois").json()["extent"]


def test_a_feature_has_its_code_as_id_and_self_alternate_collection_links(ogc: str) -> None:
    url = f"{ogc}/collections/grids/items/610302001001001"
    response = get(url)
    assert response.headers["content-type"] == GEOJSON
    feature = response.json()
    assert feature["id"] == feature["properties"]["code"] == "610302001001001"
    assert link(feature, "self", GEOJSON)["href"] == url
    alternate = link(feature, "alternate", "application/json")["href"]
    assert get(alternate).headers["content-type"] == "application/json"
    assert link(feature, "collection")["href"] == f"{ogc}/collections/grids"
    assert get(f"{ogc}/collections/pois/items/P00001").json()["properties"]["poi_id"] == "P00001"
    missing = get(f"{ogc}/collections/grids/items/999999999999999")
    assert missing.status_code == 404
    assert missing.json()["code"] == "feature_not_found"
    assert get(f"{ogc}/collections/parks/items").json()["code"] == "collection_not_found"


# --------------------------------------------------------------------------- items


def test_paging_follows_next_links_through_every_grid(ogc: str, shared_engine: Engine) -> None:
    url: str | None = f"{ogc}/collections/grids/items?limit=400"
    codes: list[str] = []
    pages = 0
    while url is not None:
        response = get(url)
        assert response.headers["content-type"] == GEOJSON
        page = response.json()
        assert page["numberMatched"] == 1138
        assert page["numberReturned"] == len(page["features"])
        assert page["timeStamp"].endswith("Z")
        assert link(page, "self", GEOJSON)["href"] == url
        codes += [feature["id"] for feature in page["features"]]
        pages += 1
        nexts = [item for item in page["links"] if item["rel"] == "next"]
        url = nexts[0]["href"] if nexts else None
        if url is not None:
            assert nexts[0]["type"] == GEOJSON
            assert "limit=400" in url
    assert pages == 3
    assert len(codes) == len(set(codes)) == 1138
    assert set(codes) == current_codes(shared_engine)


def test_next_link_keeps_the_query_and_default_and_maximum_limits(ogc: str) -> None:
    box = ",".join(map(str, BOX))
    page = get(f"{ogc}/collections/grids/items", bbox=box, limit=5, offset=5).json()
    following = httpx.URL(link(page, "next")["href"])
    assert following.params["bbox"] == box
    assert following.params["offset"] == "10"
    assert following.params["limit"] == "5"
    assert httpx.URL(link(page, "prev")["href"]).params["offset"] == "0"
    assert get(f"{ogc}/collections/grids/items").json()["numberReturned"] == 10
    assert get(f"{ogc}/collections/grids/items", limit=5000).json()["numberReturned"] == 1000
    last = get(f"{ogc}/collections/grids/items", offset=1130).json()
    assert last["numberReturned"] == 8
    assert not [item for item in last["links"] if item["rel"] == "next"]


def test_f_json_serves_the_same_features_as_application_json(ogc: str) -> None:
    plain = get(f"{ogc}/collections/districts/items", f="json")
    assert plain.headers["content-type"] == "application/json"
    page = plain.json()
    assert link(page, "alternate", GEOJSON)["href"].endswith("f=geojson")
    assert [f["id"] for f in page["features"]] == ["610302", "610303", "610304", "610371"]


def test_crs_4490_answers_lat_lon_and_says_so(ogc: str) -> None:
    url = f"{ogc}/collections/pois/items/P00001"
    lon_lat = get(url)
    lat_lon = get(url, crs=EPSG_4490)
    assert lon_lat.headers["content-crs"] == f"<{CRS84}>"
    assert lat_lon.headers["content-crs"] == f"<{EPSG_4490}>"
    x, y = lon_lat.json()["geometry"]["coordinates"]
    assert lat_lon.json()["geometry"]["coordinates"] == [y, x]
    # bbox-crs EPSG:4490 takes latitude first too.
    box = f"{BOX[1]},{BOX[0]},{BOX[3]},{BOX[2]}"
    swapped = get(f"{ogc}/collections/grids/items", bbox=box, **{"bbox-crs": EPSG_4490})
    plain = get(f"{ogc}/collections/grids/items", bbox=",".join(map(str, BOX)))
    assert swapped.json()["numberMatched"] == plain.json()["numberMatched"]


@pytest.mark.parametrize(
    ("path", "query"),
    [
        ("", "foo=1"),
        ("/conformance", "limit=1"),
        ("/collections", "bbox=1,2,3,4"),
        ("/collections/grids", "page=2"),
        ("/collections/grids/items", "code=610302001001001"),
        ("/collections/grids/items", "resultType=hits"),
        ("/collections/grids/items/610302001001001", "limit=1"),
    ],
)
def test_unknown_query_parameter_is_400(ogc: str, path: str, query: str) -> None:
    response = get(f"{ogc}{path}?{query}")
    assert response.status_code == 400
    assert response.json()["code"] == "unknown_parameter"


@pytest.mark.parametrize(
    "query",
    [
        "bbox=107.1,34.3,107.2",
        "bbox=a,b,c,d",
        "bbox=107.1,34.4,107.2,34.3",
        "bbox=107.1,34.3,107.2,95",
        "limit=0",
        "limit=ten",
        "offset=-1",
        "datetime=yesterday",
        "datetime=2020-09-07",
        "datetime=2020-09-07T10:00:00",
        "datetime=2021-01-01T00:00:00Z/2020-01-01T00:00:00Z",
        "crs=EPSG:3857",
        "bbox-crs=EPSG:3857&bbox=1,2,3,4",
        "f=html",
        "limit=5&limit=6",
    ],
)
def test_invalid_values_are_400(ogc: str, query: str) -> None:
    response = get(f"{ogc}/collections/grids/items?{query}")
    assert response.status_code == 400, response.text
    assert response.json()["code"] == "invalid_parameter"


def test_datetime_on_a_collection_without_time_is_400(ogc: str) -> None:
    response = get(f"{ogc}/collections/pois/items", datetime="2020-09-07T10:00:00Z")
    assert response.status_code == 400
    assert response.json()["code"] == "invalid_parameter"


# --------------------------------------------------------------------------- time


def test_datetime_selects_the_grid_version_valid_at_the_instant(
    serve: Callable[[str], str], reference_database_factory: Callable[[], str]
) -> None:
    database_url = reference_database_factory()
    code = "610302001001001"
    change = datetime(2021, 1, 1, tzinfo=UTC)
    engine = create_db_engine(database_url)
    try:
        with engine.begin() as conn:
            # A boundary change as the importer records it: close the old, add the new.
            conn.execute(
                text("UPDATE grids SET valid_to = :t WHERE code = :code AND valid_to IS NULL"),
                {"t": change, "code": code},
            )
            conn.execute(
                text(
                    "INSERT INTO grids (code, community_code, name, households, geom, valid_from)"
                    " SELECT code, community_code, name || '（调整）', households + 10,"
                    " ST_Multi(ST_Translate(geom, 0.0005, 0)), :t FROM grids WHERE code = :code"
                ),
                {"t": change, "code": code},
            )
    finally:
        engine.dispose()
    ogc = serve(database_url)
    items = f"{ogc}/collections/grids/items"

    def version_at(when: str) -> dict[str, Any]:
        page = get(items, datetime=when, limit=1000).json()
        assert page["numberMatched"] == 1138
        (feature,) = [f for f in page["features"] if f["id"] == code]
        return dict(feature["properties"])

    before = version_at("2020-09-07T10:00:00+08:00")
    assert before["valid_to"] == "2021-01-01T00:00:00Z"
    assert before["households"] == 396
    after = version_at("2021-06-01T00:00:00Z")
    assert after["valid_from"] == "2021-01-01T00:00:00Z"
    assert after["valid_to"] is None
    assert version_at("2021-01-01T00:00:00Z") == after  # validity is [valid_from, valid_to)
    assert version_at("2020-06-01T00:00:00Z/2021-06-01T00:00:00Z") == after  # the latest
    assert version_at("../2020-12-31T00:00:00Z") == before
    assert version_at("2019-01-01T00:00:00Z/..") == after
    nothing = get(items, datetime="2019-01-01T00:00:00Z").json()
    assert nothing["numberMatched"] == 0
    assert nothing["features"] == []
    current = get(f"{items}/{code}").json()["properties"]
    assert current == after
    undated = get(items, limit=1000).json()
    assert undated["numberMatched"] == 1138
    assert next(f for f in undated["features"] if f["id"] == code)["properties"] == after


# --------------------------------------------------------------------------- incidents


def insert_incident(conn: Any, grid_code: str, reported_at: datetime) -> str:
    """An assigned incident at the centroid of a grid in force; returns its id."""
    incident_id = str(uuid.uuid4())
    conn.execute(
        text(
            "INSERT INTO incidents (incident_id, event_id, category, description, source,"
            " reporter_id, reported_at, lon, lat, geom, grid_code, community_code,"
            " assignment_rule, payload)"
            " SELECT :id, :id, 'environment.garbage', '垃圾堆放', 'resident', '13800000000',"
            " :t, ST_X(c), ST_Y(c), c, code, community_code, 'contains',"
            ' \'{"phone": "13800000000"}\'::jsonb'
            " FROM (SELECT code, community_code, ST_PointOnSurface(geom) AS c FROM grids"
            " WHERE code = :code AND valid_to IS NULL) AS g"
        ),
        {"id": incident_id, "t": reported_at, "code": grid_code},
    )
    return incident_id


@pytest.fixture
def incidents_database(reference_database_factory: Callable[[], str]) -> dict[str, Any]:
    """A reference database with one incident in 渭滨区 (610302) and one in 金台区 (610303)."""
    database_url = reference_database_factory()
    engine = create_db_engine(database_url)
    try:
        with engine.begin() as conn:
            weibin = insert_incident(conn, "610302001001001", datetime(2020, 9, 7, 2, tzinfo=UTC))
            jintai = conn.execute(
                text("SELECT min(code) FROM grids WHERE code LIKE '610303%'")
            ).scalar_one()
            other = insert_incident(conn, jintai, datetime(2020, 9, 8, 2, tzinfo=UTC))
    finally:
        engine.dispose()
    return {"url": database_url, "weibin": weibin, "jintai": other}


def test_incidents_need_a_supervisor_token_and_show_only_their_area(
    incidents_database: dict[str, Any],
) -> None:
    url = incidents_database["url"]
    supervisor = add_user(url, f"sup-{uuid.uuid4().hex[:6]}", "supervisor", "610302", None)
    admin = add_user(url, f"adm-{uuid.uuid4().hex[:6]}", "admin", None, None)
    worker = add_user(url, f"wrk-{uuid.uuid4().hex[:6]}", "worker", None, "W00001")
    app = create_app(ApiConfig(url, UNUSED_BROKER))
    with TestClient(app) as client:
        items = "/ogc/collections/incidents/items"
        anonymous = client.get(items)
        assert anonymous.status_code == 401
        assert anonymous.headers["www-authenticate"].startswith("Bearer")
        assert client.get("/ogc/collections/incidents").status_code == 401
        listed = [c["id"] for c in client.get("/ogc/collections").json()["collections"]]
        assert "incidents" not in listed
        as_worker = client.get(items, headers={"Authorization": f"Bearer {worker}"})
        assert as_worker.status_code == 403

        headers = {"Authorization": f"Bearer {supervisor}"}
        listed = [
            c["id"] for c in client.get("/ogc/collections", headers=headers).json()["collections"]
        ]
        assert listed == [*PUBLIC, "incidents"]
        page = client.get(items, headers=headers).json()
        assert [f["id"] for f in page["features"]] == [incidents_database["weibin"]]
        properties = page["features"][0]["properties"]
        assert properties["reported_at"] == "2020-09-07T02:00:00Z"
        assert "13800000000" not in json.dumps(page)  # no reporter, no raw payload
        other = f"{items}/{incidents_database['jintai']}"
        assert client.get(other, headers=headers).status_code == 404  # outside the area
        in_time = client.get(items, headers=headers, params={"datetime": "2020-09-07T02:00:00Z"})
        assert in_time.json()["numberMatched"] == 1
        too_late = client.get(
            items, headers=headers, params={"datetime": "2020-09-08T00:00:00Z/.."}
        )
        assert too_late.json()["numberMatched"] == 0

        everything = client.get(items, headers={"Authorization": f"Bearer {admin}"}).json()
        assert everything["numberMatched"] == 2
