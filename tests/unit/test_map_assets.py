"""The map's static files go gzipped to a client that takes gzip, and as they are otherwise."""

from fastapi import FastAPI
from fastapi.testclient import TestClient

from grid_service.map import STATIC_DIR, install_map


def _client() -> TestClient:
    app = FastAPI()
    install_map(app)
    return TestClient(app)


def test_an_asset_is_gzipped_for_a_client_that_takes_gzip() -> None:
    answer = _client().get("/map/assets/map.js", headers={"Accept-Encoding": "gzip"})

    assert answer.status_code == 200
    assert answer.headers["content-encoding"] == "gzip"
    assert answer.headers["content-type"].startswith("text/javascript")
    # httpx decodes the body; what travelled was the smaller, gzipped form.
    assert answer.content == (STATIC_DIR / "map.js").read_bytes()
    assert int(answer.headers["content-length"]) < len(answer.content) / 2


def test_an_asset_goes_as_it_is_to_a_client_that_does_not_take_gzip() -> None:
    answer = _client().get("/map/assets/map.js", headers={"Accept-Encoding": "identity"})

    assert answer.status_code == 200
    assert "content-encoding" not in answer.headers
    assert answer.content == (STATIC_DIR / "map.js").read_bytes()
    assert int(answer.headers["content-length"]) == len(answer.content)
