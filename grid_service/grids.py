"""Spatial queries on grids: locate a point, list, one by code, nearest, within, intersecting.

A thin adapter over `geodata.db.grid_queries` and the input checks of
`geodata.query_limits`. Answers are GeoJSON (`application/geo+json`) with coordinates of
at most 7 decimals; every query reads the grid versions valid at `at` (default: now).
Grid geometry and names are public (INTERFACES.md); staff appear by id and name only,
never with a phone number.
"""

import threading
from datetime import UTC, datetime
from typing import Annotated, Any, Final, Literal

from fastapi import APIRouter, Depends, Path, Query, Request
from fastapi.responses import JSONResponse
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field
from sqlalchemy import Engine
from starlette.concurrency import run_in_threadpool

from geodata.crs import DEFAULT_CRS, SUPPORTED_CRS, to_wgs84
from geodata.dataset.layers import LOCAL_TZ
from geodata.db import grid_queries
from geodata.db.grid_queries import GEOJSON_DECIMALS, GridDetail, GridIndexCache, GridRecord
from geodata.errors import GridNotFound
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
from geodata.spatial_index import DEFAULT_TOLERANCE_M
from grid_service.deps import EngineDep, read_capped_body
from grid_service.errors import ErrorBody

router = APIRouter(prefix="/api/v1/grids", tags=["grids"])

GEOJSON_MEDIA_TYPE: Final = "application/geo+json"

_DISTANCE_DECIMALS: Final = 3  # millimetres: far below what a boundary means on the ground


class GeoJSONResponse(JSONResponse):
    """JSON served as `application/geo+json` (RFC 7946)."""

    media_type = GEOJSON_MEDIA_TYPE


# --------------------------------------------------------------------------- schemas
# Routes build their GeoJSON as plain dicts (validating thousands of coordinates per
# answer costs more than the query); these models are the documented shape, and the
# tests hold every answer to them.


class MultiPolygonGeometry(BaseModel):
    """A grid's boundary: a GeoJSON MultiPolygon in EPSG:4326, 7 decimals at most."""

    type: Literal["MultiPolygon"]
    coordinates: list[list[list[Annotated[list[float], Field(min_length=2, max_length=2)]]]]


class GridProperties(BaseModel):
    """A grid version's attributes."""

    code: str = Field(description="15 digits: community code + 3", examples=["610302001001001"])
    name: str
    community_code: str
    households: int | None
    valid_from: datetime = Field(description="start of this boundary version, local time")
    valid_to: datetime | None = Field(description="end of this version; null while in force")


class NearGridProperties(GridProperties):
    """A grid's attributes and its distance from the query point."""

    distance_m: float = Field(description="metres on the WGS84 spheroid; 0 when inside")


class StaffMemberPublic(BaseModel):
    """A worker assigned to the grid: id and name only."""

    worker_id: str
    name: str


class GridDetailProperties(GridProperties):
    """A grid's attributes with its community, street office, district and staff."""

    community_name: str
    street_code: str
    street_name: str
    district_code: str
    district_name: str
    staff: list[StaffMemberPublic] = Field(description="workers assigned at `at`, by id")


class LocatedGridProperties(GridDetailProperties):
    """The located grid's details and how it was chosen."""

    assignment_rule: Literal["contains", "boundary_tiebreak", "nearest_within_tolerance"] = Field(
        description="as in grid.assignments.v1: covered, covered by several (smallest code "
        f"wins), or the nearest grid within {DEFAULT_TOLERANCE_M:g} m"
    )
    distance_m: float = Field(description="0 when covered, else metres to the grid (EPSG:4545)")
    point: list[float] = Field(
        min_length=2, max_length=2, description="the located point [lon, lat] in WGS84"
    )


class GridFeature(BaseModel):
    """A grid as a GeoJSON Feature; `id` is its code."""

    type: Literal["Feature"]
    id: str
    geometry: MultiPolygonGeometry
    properties: GridProperties


class NearGridFeature(GridFeature):
    """A grid as a GeoJSON Feature with its distance."""

    properties: NearGridProperties


class GridDetailFeature(GridFeature):
    """A grid as a GeoJSON Feature with its hierarchy and staff."""

    properties: GridDetailProperties


class LocatedGridFeature(GridFeature):
    """The grid a point falls in, as a GeoJSON Feature."""

    properties: LocatedGridProperties


class Link(BaseModel):
    """A link to this page or its neighbours."""

    href: str
    rel: Literal["self", "next", "prev"]
    type: str


class _Collection(BaseModel):
    """What every page of grids carries besides its features."""

    model_config = ConfigDict(populate_by_name=True)

    type: Literal["FeatureCollection"]
    number_matched: int = Field(alias="numberMatched", description="matches on all pages")
    number_returned: int = Field(alias="numberReturned")
    links: list[Link] = Field(description="self, and next / prev where there are more")


class GridFeatureCollection(_Collection):
    """A page of grids as a GeoJSON FeatureCollection."""

    features: list[GridFeature]


class NearGridFeatureCollection(_Collection):
    """Grids near a point, nearest first, as a GeoJSON FeatureCollection."""

    features: list[NearGridFeature]


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
    AwareDatetime | None,
    Query(description="RFC 3339 time with an offset: read the boundaries valid then (now)"),
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

_INDEX_LOCK = threading.Lock()


def get_grid_index(request: Request) -> GridIndexCache:
    """Dependency: the app's GridIndexCache, made on first use (`app.state.grid_index`)."""
    state = request.app.state
    cache: GridIndexCache | None = getattr(state, "grid_index", None)
    if cache is None:
        with _INDEX_LOCK:
            cache = getattr(state, "grid_index", None)
            if cache is None:
                cache = GridIndexCache(state.engine)
                state.grid_index = cache
    return cache


GridIndexDep = Annotated[GridIndexCache, Depends(get_grid_index)]


# --------------------------------------------------------------------------- routes


@router.get(
    "/locate",
    response_model=LocatedGridFeature,
    response_class=GeoJSONResponse,
    responses=_NOT_FOUND,
)
def locate_grid(
    engine: EngineDep,
    index: GridIndexDep,
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
    wgs_lon, wgs_lat = to_wgs84(*check_point(lon, lat), crs)
    when = at or datetime.now(UTC)
    code, rule, distance_m = index.locate(wgs_lon, wgs_lat, when)
    try:
        detail = _located_detail(engine, code, when)
    except GridNotFound:
        # The index may be a few seconds behind a boundary import: look again, fresh.
        code, rule, distance_m = index.locate(wgs_lon, wgs_lat, when, refresh=True)
        detail = _located_detail(engine, code, when)
    if detail is None:
        raise PointOutsideArea(
            f"no grid covers ({wgs_lon}, {wgs_lat}) or lies within {index.tolerance_m:g} m"
        )
    properties = _detail_properties(detail)
    properties.update(
        assignment_rule=str(rule),
        distance_m=round(distance_m, _DISTANCE_DECIMALS),
        point=[round(wgs_lon, GEOJSON_DECIMALS), round(wgs_lat, GEOJSON_DECIMALS)],
    )
    return GeoJSONResponse(_feature(detail.grid, properties))


@router.get(
    "/nearest",
    response_model=NearGridFeatureCollection,
    response_class=GeoJSONResponse,
    responses=_ERRORS,
)
def nearest_grids(
    request: Request,
    engine: EngineDep,
    lon: Lon,
    lat: Lat,
    k: Annotated[int, Query(ge=1, le=MAX_NEAREST, description="how many grids")] = 5,
    crs: CrsParam = DEFAULT_CRS,
    at: At = None,
) -> GeoJSONResponse:
    """The k grids nearest a point, nearest first, with their distance in metres.

    Distances are on the WGS84 spheroid, 0 for the grid the point is in; equal distances
    are ordered by code. Errors: 422 `coordinate_out_of_range`, `unsupported_crs`,
    `invalid_request` (k outside 1..50).
    """
    wgs_lon, wgs_lat = to_wgs84(*check_point(lon, lat), crs)
    grids = grid_queries.nearest_grids(engine, wgs_lon, wgs_lat, k, at=at or datetime.now(UTC))
    page = grid_queries.GridPage(grids, len(grids))
    return GeoJSONResponse(_collection(request, page, limit=k, offset=0))


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
    return GeoJSONResponse(_collection(request, page, limit=limit, offset=offset))


@router.post(
    "/intersecting",
    response_model=GridFeatureCollection,
    response_class=GeoJSONResponse,
    responses={
        **_ERRORS,
        413: {"model": ErrorBody, "description": "payload_too_large"},
    },
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {
                media_type: {"schema": GEOMETRY_JSON_SCHEMA}
                for media_type in (GEOJSON_MEDIA_TYPE, "application/json")
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
    EPSG:4326, at most 256 KiB, 10,000 vertices and 100 rings. Errors: 413
    `payload_too_large`; 422 `invalid_json` (NaN or Infinity aside: they are
    `coordinate_out_of_range`), `invalid_geojson`, `geometry_too_complex`,
    `invalid_geometry` (with GEOS's reason, e.g. a self-intersecting polygon).
    """
    body = await read_capped_body(request, MAX_GEOMETRY_BYTES)
    page = await run_in_threadpool(
        _intersecting, engine, body, at or datetime.now(UTC), limit, offset
    )
    return GeoJSONResponse(_collection(request, page, limit=limit, offset=offset, links=False))


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
    return GeoJSONResponse(_collection(request, page, limit=limit, offset=offset))


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
    return GeoJSONResponse(_feature(detail.grid, _detail_properties(detail)))


# --------------------------------------------------------------------------- helpers


def _located_detail(engine: Engine, code: str | None, at: datetime) -> GridDetail | None:
    return None if code is None else grid_queries.grid_detail(engine, code, at)


def _intersecting(
    engine: Engine, body: bytes, at: datetime, limit: int, offset: int
) -> grid_queries.GridPage:
    # Parsing is in the worker thread too: validating 10,000 vertices is CPU work.
    geometry = parse_geometry_body(body)
    return grid_queries.intersecting_grids(engine, geometry, at=at, limit=limit, offset=offset)


def _local(moment: datetime | None) -> str | None:
    return None if moment is None else moment.astimezone(LOCAL_TZ).isoformat()


def _properties(grid: GridRecord) -> dict[str, Any]:
    properties: dict[str, Any] = {
        "code": grid.code,
        "name": grid.name,
        "community_code": grid.community_code,
        "households": grid.households,
        "valid_from": _local(grid.valid_from),
        "valid_to": _local(grid.valid_to),
    }
    if grid.distance_m is not None:
        properties["distance_m"] = round(grid.distance_m, _DISTANCE_DECIMALS)
    return properties


def _detail_properties(detail: GridDetail) -> dict[str, Any]:
    properties = _properties(detail.grid)
    properties.update(
        community_name=detail.community_name,
        street_code=detail.street_code,
        street_name=detail.street_name,
        district_code=detail.district_code,
        district_name=detail.district_name,
        staff=[{"worker_id": s.worker_id, "name": s.name} for s in detail.staff],
    )
    return properties


def _feature(grid: GridRecord, properties: dict[str, Any] | None = None) -> dict[str, Any]:
    return {
        "type": "Feature",
        "id": grid.code,
        "geometry": grid.geometry,
        "properties": _properties(grid) if properties is None else properties,
    }


def _collection(
    request: Request,
    page: grid_queries.GridPage,
    *,
    limit: int,
    offset: int,
    links: bool = True,
) -> dict[str, Any]:
    returned = len(page.grids)
    found: list[dict[str, str]] = []
    # A POST's next page cannot be a link to follow, so `intersecting` has none.
    if links:
        found.append(_link(request, "self", offset))
        if offset + returned < page.number_matched:
            found.append(_link(request, "next", offset + limit))
        if offset > 0:
            found.append(_link(request, "prev", max(0, offset - limit)))
    return {
        "type": "FeatureCollection",
        "features": [_feature(grid) for grid in page.grids],
        "numberMatched": page.number_matched,
        "numberReturned": returned,
        "links": found,
    }


def _link(request: Request, rel: str, offset: int) -> dict[str, str]:
    href = request.url if rel == "self" else request.url.include_query_params(offset=offset)
    return {"href": str(href), "rel": rel, "type": GEOJSON_MEDIA_TYPE}
