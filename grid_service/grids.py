"""Spatial queries on grids: locate a point, list, one by code, nearest, within, intersecting.

A thin adapter over `geodata.db.grid_queries`, the in-memory grid snapshot of
`geodata.db.grid_cache` (the consumers assign events from the same snapshot) and the input
checks of `geodata.query_limits`. Answers are GeoJSON (`application/geo+json`, shaped in
grid_service.grid_documents) with coordinates of at most 7 decimals; every query reads the
grid versions valid at `at` (default: now). Grid geometry and names are public
(docs/INTERFACES.md); staff appear by id and name only, never with a phone number.
"""

from datetime import UTC, datetime
from typing import Annotated, Any, Final
from weakref import WeakKeyDictionary

from fastapi import APIRouter, Depends, Path, Query, Request
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, ValidationError
from sqlalchemy import Engine
from starlette.concurrency import run_in_threadpool

from geodata.crs import DEFAULT_CRS, SUPPORTED_CRS, to_wgs84
from geodata.db import grid_queries
from geodata.db.grid_cache import GridSnapshot, GridSnapshotCache
from geodata.db.grid_queries import GEOJSON_DECIMALS
from geodata.query_limits import (
    DEFAULT_PAGE,
    GEOMETRY_JSON_SCHEMA,
    MAX_BBOX_AREA_DEG2,
    MAX_GEOMETRY_BYTES,
    MAX_NEAREST,
    MAX_OFFSET,
    MAX_PAGE,
    MAX_RADIUS_M,
    PointOutsideArea,
    check_point,
    check_radius,
    parse_bbox,
    parse_geometry_body,
)
from grid_service.deps import GEOJSON_MEDIA_TYPES, EngineDep, SupportedTime, read_capped_body
from grid_service.errors import ErrorBody
from grid_service.grid_documents import (
    DISTANCE_DECIMALS,
    EncodedFeatures,
    EncodedGeoJSONResponse,
    GeoJSONResponse,
    GridDetailFeature,
    GridFeatureCollection,
    LocatedGridFeature,
    NearGridFeatureCollection,
    collection,
    detail_properties,
    feature,
)

router = APIRouter(prefix="/api/v1/grids", tags=["grids"])


# --------------------------------------------------------------------------- parameters


Lon = Annotated[
    float,
    Query(
        description="longitude, decimal degrees",
        examples=[107.1523],
        json_schema_extra={"minimum": -180, "maximum": 180},
    ),
]
Lat = Annotated[
    float,
    Query(
        description="latitude, decimal degrees",
        examples=[34.3671],
        json_schema_extra={"minimum": -90, "maximum": 90},
    ),
]
CrsParam = Annotated[
    str,
    Query(
        description="crs of lon/lat: EPSG:4326, EPSG:4490 (same as WGS84 here) or GCJ-02 "
        "(Chinese phone maps), converted to WGS84 first",
        json_schema_extra={"enum": list(SUPPORTED_CRS)},
    ),
]
At = Annotated[
    SupportedTime | None,
    Query(
        description="RFC 3339 time with an offset, from 1970 to before 9000: read the "
        "boundaries valid then (now)"
    ),
]
Limit = Annotated[int, Query(ge=1, le=MAX_PAGE, description="page size")]
Offset = Annotated[int, Query(ge=0, le=MAX_OFFSET, description="grids to skip")]

_ERRORS: Final[dict[int | str, dict[str, Any]]] = {
    422: {"model": ErrorBody, "description": "bad input; `code` says which rule it breaks"},
}
_NOT_FOUND: Final[dict[int | str, dict[str, Any]]] = {
    **_ERRORS,
    404: {"model": ErrorBody, "description": "no such grid (see `code`)"},
}


async def current_grids(request: Request) -> GridSnapshot:
    """Dependency: the grids in memory, checked for changes in the background.

    Async, so that it runs on the event loop without a thread-pool hop; only the first
    load, before any snapshot exists, waits for the database (in the pool).
    """
    cache: GridSnapshotCache = request.app.state.grid_snapshots
    snapshot = cache.current()
    if snapshot is None:
        snapshot = await run_in_threadpool(cache.snapshot)
    return snapshot


GridsDep = Annotated[GridSnapshot, Depends(current_grids)]


class _NearestQuery(BaseModel):
    """The parameters of nearest, read by the route itself (see `nearest_grids`)."""

    lon: Lon
    lat: Lat
    k: Annotated[int, Query(ge=1, le=MAX_NEAREST, description="how many grids")] = 5
    crs: CrsParam = DEFAULT_CRS
    at: At = None


def _query_parameters(model: type[BaseModel]) -> list[dict[str, Any]]:
    """A model's fields as OpenAPI query parameters, as FastAPI documents a route's own."""
    schema = model.model_json_schema()
    required = set(schema.get("required", ()))
    parameters = []
    for name, field in schema["properties"].items():
        if field.get("default", 0) is None:
            del field["default"]  # FastAPI leaves an optional parameter's null default out
        parameters.append(
            {"name": name, "in": "query", "required": name in required,
             "description": field["description"], "schema": field}
        )  # fmt: skip
    return parameters


def _nearest_query(request: Request) -> _NearestQuery:
    """The query of nearest, checked by pydantic as FastAPI would (422 `invalid_request`)."""
    params = request.query_params
    try:
        return _NearestQuery.model_validate(
            {name: params[name] for name in _NearestQuery.model_fields if name in params}
        )
    except ValidationError as exc:
        errors = exc.errors(include_url=False)
        raise RequestValidationError(
            [{**error, "loc": ("query", *error["loc"])} for error in errors]
        ) from None


# Each snapshot's grid Features, encoded once; dropped with the snapshot.
_ENCODED: WeakKeyDictionary[GridSnapshot, EncodedFeatures] = WeakKeyDictionary()


# --------------------------------------------------------------------------- routes


@router.get(
    "/locate",
    response_model=LocatedGridFeature,
    response_class=GeoJSONResponse,
    responses=_NOT_FOUND,
)
async def locate_grid(
    grids: GridsDep,
    lon: Lon,
    lat: Lat,
    crs: CrsParam = DEFAULT_CRS,
    at: At = None,
) -> GeoJSONResponse:
    """The grid a point falls in, with its community, street, district and staff.

    The consumers' rule, by the very same index: the grid covering the point (edge
    included; on a shared edge the smallest code), else the nearest grid within
    30 m (GPS error). Errors: 404 `point_outside_area` when neither; 422
    `coordinate_out_of_range`, `unsupported_crs`.
    """
    # Pure in-memory work, microseconds: on the event loop, no thread-pool hop.
    wgs_lon, wgs_lat = to_wgs84(*check_point(lon, lat), crs)
    located = grids.locate(wgs_lon, wgs_lat, at or datetime.now(UTC))
    if located is None:
        raise PointOutsideArea(
            f"no grid covers ({wgs_lon}, {wgs_lat}) or lies within {grids.tolerance_m:g} m"
        )
    properties = detail_properties(located.detail)
    properties.update(
        assignment_rule=str(located.rule),
        distance_m=round(located.distance_m, DISTANCE_DECIMALS),
        point=[round(wgs_lon, GEOJSON_DECIMALS), round(wgs_lat, GEOJSON_DECIMALS)],
    )
    return GeoJSONResponse(feature(located.detail.grid, properties))


@router.get(
    "/nearest",
    response_model=NearGridFeatureCollection,
    response_class=GeoJSONResponse,
    responses=_ERRORS,
    openapi_extra={"parameters": _query_parameters(_NearestQuery)},
)
async def nearest_grids(request: Request) -> EncodedGeoJSONResponse:
    """The k grids nearest a point, nearest first, with their distance in metres.

    Distances are on the WGS84 spheroid, 0 for the grid the point is in; equal distances
    are ordered by code. Errors: 422 `coordinate_out_of_range`, `unsupported_crs`,
    `invalid_request` (k outside 1..50).
    """
    # From the grid snapshot, as locate; the same answer as `grid_queries.nearest_grids`,
    # PostGIS's, which the tests hold it to. Under a millisecond: on the event loop.
    # FastAPI's solving of six parameters and a dependency cost as much as the answer:
    # the route reads its query itself (documented from `_NearestQuery`, refused as
    # FastAPI would) and joins Features encoded once per snapshot.
    query = _nearest_query(request)
    grids = await current_grids(request)
    wgs_lon, wgs_lat = to_wgs84(*check_point(query.lon, query.lat), query.crs)
    found = grids.nearest(wgs_lon, wgs_lat, query.k, query.at or datetime.now(UTC))
    encoded = _ENCODED.get(grids)
    if encoded is None:
        encoded = _ENCODED[grids] = EncodedFeatures()
    return EncodedGeoJSONResponse(encoded.collection(request, found))


@router.get(
    "/within",
    response_model=NearGridFeatureCollection,
    response_class=GeoJSONResponse,
    responses=_ERRORS,
)
def grids_within(
    request: Request,
    engine: EngineDep,
    lon: Lon,
    lat: Lat,
    radius_m: Annotated[
        float,
        Query(
            description=f"metres, more than 0 and at most {MAX_RADIUS_M:g}",
            json_schema_extra={"exclusiveMinimum": 0, "maximum": MAX_RADIUS_M},
        ),
    ],
    crs: CrsParam = DEFAULT_CRS,
    limit: Limit = DEFAULT_PAGE,
    offset: Offset = 0,
    at: At = None,
) -> GeoJSONResponse:
    """Grids within a radius of a point, nearest first, with their distance in metres.

    A grid is within when any part of it is (distance on the WGS84 spheroid <= radius).
    Paged like the listing. Errors: 422 `invalid_radius`, `coordinate_out_of_range`,
    `unsupported_crs`.
    """
    wgs_lon, wgs_lat = to_wgs84(*check_point(lon, lat), crs)
    page = grid_queries.grids_within(
        engine,
        wgs_lon,
        wgs_lat,
        check_radius(radius_m),
        at=at or datetime.now(UTC),
        limit=limit,
        offset=offset,
    )
    return GeoJSONResponse(collection(request, page, limit=limit, offset=offset))


@router.post(
    "/intersecting",
    response_model=GridFeatureCollection,
    response_class=GeoJSONResponse,
    responses={
        **_ERRORS,
        413: {"model": ErrorBody, "description": "payload_too_large"},
        415: {
            "model": ErrorBody,
            "description": "unsupported_media_type: not application/geo+json or "
            "application/json, or a charset other than UTF-8",
        },
    },
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {
                media_type: {"schema": GEOMETRY_JSON_SCHEMA} for media_type in GEOJSON_MEDIA_TYPES
            },
        }
    },
)
async def intersecting_grids(
    request: Request,
    engine: EngineDep,
    limit: Limit = DEFAULT_PAGE,
    offset: Offset = 0,
    at: At = None,
) -> GeoJSONResponse:
    """Grids intersecting a posted GeoJSON geometry (edge contact included), by code.

    The body is one geometry (Point, LineString, Polygon or their Multi types) in
    EPSG:4326, at most 256 KiB, 10,000 vertices and 100 rings, sent as
    application/geo+json or application/json (UTF-8). Errors: 413 `payload_too_large`;
    415 `unsupported_media_type`; 422 `invalid_json` (NaN or Infinity aside: they are
    `coordinate_out_of_range`), `invalid_geojson`, `geometry_too_complex`,
    `invalid_geometry` (with GEOS's reason, e.g. a self-intersecting polygon).
    """
    body = await read_capped_body(request, MAX_GEOMETRY_BYTES, GEOJSON_MEDIA_TYPES)
    page = await run_in_threadpool(
        _intersecting, engine, body, at or datetime.now(UTC), limit, offset
    )
    return GeoJSONResponse(collection(request, page, limit=limit, offset=offset, links=False))


@router.get(
    "",
    response_model=GridFeatureCollection,
    response_class=GeoJSONResponse,
    responses=_ERRORS,
)
def list_grids(
    request: Request,
    engine: EngineDep,
    bbox: Annotated[
        str | None,
        Query(
            description="minlon,minlat,maxlon,maxlat in EPSG:4326; grids touching it count; "
            f"at most {MAX_BBOX_AREA_DEG2:g} square degree",
            examples=["107.10,34.33,107.20,34.40"],
        ),
    ] = None,
    code: Annotated[
        str | None,
        Query(
            description="code prefix: a district (6 digits), street (9), community (12) "
            "or grid (15)",
            examples=["610302001"],
        ),
    ] = None,
    limit: Limit = DEFAULT_PAGE,
    offset: Offset = 0,
    at: At = None,
) -> GeoJSONResponse:
    """Grids as a GeoJSON FeatureCollection, ordered by code, paged.

    Filters combine: `bbox` (grids intersecting it) and `code` (a prefix). The answer
    has numberMatched, numberReturned and self / next / prev links. Errors: 422
    `invalid_bbox`, `bbox_too_large`, `invalid_code`.
    """
    page = grid_queries.list_grids(
        engine,
        at=at or datetime.now(UTC),
        bbox=None if bbox is None else parse_bbox(bbox),
        code_prefix=code,
        limit=limit,
        offset=offset,
    )
    return GeoJSONResponse(collection(request, page, limit=limit, offset=offset))


@router.get(
    "/{code}",
    response_model=GridDetailFeature,
    response_class=GeoJSONResponse,
    responses=_NOT_FOUND,
)
def get_grid(
    engine: EngineDep,
    code: Annotated[str, Path(pattern=r"^[0-9]{15}$", examples=["610302001001001"])],
    at: At = None,
) -> GeoJSONResponse:
    """One grid by its 15-digit code, with its community, street, district and staff.

    Errors: 404 `grid_not_found` (no version of that code valid at `at`); 422
    `invalid_request` for a code that is not 15 digits.
    """
    detail = grid_queries.grid_detail(engine, code, at or datetime.now(UTC))
    return GeoJSONResponse(feature(detail.grid, detail_properties(detail)))


# --------------------------------------------------------------------------- helpers


def _intersecting(
    engine: Engine, body: bytes, at: datetime, limit: int, offset: int
) -> grid_queries.GridPage:
    # Parsing is in the worker thread too: validating 10,000 vertices is CPU work.
    geometry = parse_geometry_body(body)
    return grid_queries.intersecting_grids(engine, geometry, at=at, limit=limit, offset=offset)
