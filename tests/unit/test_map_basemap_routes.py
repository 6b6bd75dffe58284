"""The map's basemap on the server: the page's CSP follows it; the GCJ-02 offset table."""

from fastapi import FastAPI
from fastapi.testclient import TestClient

from geodata.basemap import parse_basemap
from geodata.crs import wgs84_to_gcj02
from grid_service.errors import install_error_handlers
from grid_service.map import install_map, page_headers


def _policy(value: str) -> dict[str, str]:
    csp = page_headers(parse_basemap(value))["Content-Security-Policy"]
    return dict(part.strip().split(" ", 1) for part in csp.split(";"))


def test_without_a_basemap_the_page_reaches_only_its_own_origin() -> None:
    policy = _policy("none")
    assert policy["connect-src"] == "'self'"
    assert policy["img-src"] == "'self' data: blob:"


def test_a_basemap_opens_its_hosts_to_images_and_fetches_and_nothing_else() -> None:
    policy = _policy("gaode")
    hosts = " ".join(f"https://webrd0{n}.is.autonavi.com" for n in "1234")
    assert policy["connect-src"] == f"'self' {hosts}"
    assert policy["img-src"] == f"'self' data: blob: {hosts}"
    assert policy["script-src"] == "'self'"
    assert policy["default-src"] == "'self'"


def _client() -> TestClient:
    app = FastAPI()
    install_error_handlers(app)
    install_map(app)
    return TestClient(app)


def test_the_offset_table_is_the_core_conversion_at_its_nodes() -> None:
    answer = _client().get("/map/gcj02-offsets.json", params={"bbox": "106.2,33.6,108.1,35.2"})
    assert answer.status_code == 200
    assert "max-age" in answer.headers["cache-control"]
    table = answer.json()
    assert (table["columns"], table["rows"], table["step"]) == (65, 55, 0.03)
    lon, lat = table["west"] + 7 * table["step"], table["south"] + 11 * table["step"]
    gcj_lon, gcj_lat = wgs84_to_gcj02(lon, lat)
    assert abs(table["dlon"][11][7] - (gcj_lon - lon)) < 1e-9
    assert abs(table["dlat"][11][7] - (gcj_lat - lat)) < 1e-9


def test_a_long_thin_box_gets_coarser_nodes_not_a_longer_answer() -> None:
    answer = _client().get("/map/gcj02-offsets.json", params={"bbox": "-180,0,180,0.5"})
    assert answer.status_code == 200
    table = answer.json()
    assert table["columns"] * table["rows"] <= 10_000


def test_a_bad_box_is_a_422_with_its_code() -> None:
    client = _client()
    bad = client.get("/map/gcj02-offsets.json", params={"bbox": "108,34,107,35"})
    assert (bad.status_code, bad.json()["code"]) == (422, "invalid_bbox")
    huge = client.get("/map/gcj02-offsets.json", params={"bbox": "-180,-90,180,90"})
    assert (huge.status_code, huge.json()["code"]) == (422, "bbox_too_large")
