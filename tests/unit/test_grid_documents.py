"""Features encoded once and joined give the very bytes of a GeoJSONResponse (no I/O)."""

from dataclasses import replace
from datetime import UTC, datetime

import pytest
from starlette.requests import Request

from geodata.db.grid_queries import GridPage, GridRecord
from grid_service.grid_documents import EncodedFeatures, GeoJSONResponse, collection


def _grid(code: str, distance_m: float | None, **changes: object) -> GridRecord:
    fields: dict[str, object] = {
        "code": code,
        "name": "西关第一网格",  # not ASCII: written as is, not as \u escapes
        "community_code": code[:12],
        "households": 312,
        "valid_from": datetime(2020, 1, 1, tzinfo=UTC),
        "valid_to": None,
        "geometry": {
            "type": "MultiPolygon",
            "coordinates": [[[[107.1, 34.3], [107.1000001, 34.3], [107.1, 34.31], [107.1, 34.3]]]],
        },
        "distance_m": distance_m,
    }
    return GridRecord(**{**fields, **changes})  # type: ignore[arg-type]


def _request(query: str) -> Request:
    return Request(
        {
            "type": "http",
            "method": "GET",
            "scheme": "http",
            "server": ("127.0.0.1", 8000),
            "path": "/api/v1/grids/nearest",
            "root_path": "",
            "query_string": query.encode(),
            "headers": [(b"host", b"example.org")],
        }
    )


@pytest.mark.parametrize(
    "grids",
    [
        [],
        [_grid("610302001001001", 0.0)],
        [
            _grid("610302001001002", 12.3456789),
            _grid("610302001001003", 1e-7, households=None, name='a "quoted" \\ name'),
            _grid(
                "610302001001004",
                104_999.9995,
                valid_to=datetime(2024, 3, 1, 16, tzinfo=UTC),
            ),
            _grid("610302001001005", None),
        ],
    ],
)
def test_joined_features_are_the_bytes_of_the_json_response(grids: list[GridRecord]) -> None:
    request = _request("lon=107.1&lat=34.3&k=7")
    expected = GeoJSONResponse(
        collection(request, GridPage(tuple(grids), len(grids)), limit=7, offset=0)
    )
    encoded = EncodedFeatures()
    assert encoded.collection(request, grids) == expected.body
    # A version encoded before is joined again with its new distance.
    moved = [replace(grid, distance_m=5.25) for grid in grids]
    page = GridPage(tuple(moved), len(moved))
    again = GeoJSONResponse(collection(request, page, limit=7, offset=0))
    assert encoded.collection(request, moved) == again.body
