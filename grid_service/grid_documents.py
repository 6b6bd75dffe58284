"""The GeoJSON documents of the grid routes: their documented schemas, and how they are built.

Routes build their GeoJSON as plain dicts (validating thousands of coordinates per answer
costs more than the query), or, for nearest, join features encoded once per snapshot
(`EncodedFeatures`); the models here are the documented shape, and the tests hold every
answer to them. Times are local (Asia/Shanghai) with their offset; distances are
rounded to the millimetre; coordinates come with at most 7 decimals from the queries.
"""

import json
import math
from collections.abc import Sequence
from dataclasses import replace
from datetime import datetime
from typing import Annotated, Any, Final, Literal

from fastapi import Request
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, ConfigDict, Field

from geodata.dataset.layers import LOCAL_TZ
from geodata.db.grid_queries import GridDetail, GridPage, GridRecord
from geodata.snapshot_policy import DEFAULT_TOLERANCE_M

GEOJSON_MEDIA_TYPE: Final = "application/geo+json"

DISTANCE_DECIMALS: Final = 3  # millimetres: far below what a boundary means on the ground


class GeoJSONResponse(JSONResponse):
    """JSON served as `application/geo+json` (RFC 7946)."""

    media_type = GEOJSON_MEDIA_TYPE


class EncodedGeoJSONResponse(Response):
    """GeoJSON already encoded, served as `application/geo+json`."""

    media_type = GEOJSON_MEDIA_TYPE


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


# --------------------------------------------------------------------------- builders


def _local(moment: datetime | None) -> str | None:
    return None if moment is None else moment.astimezone(LOCAL_TZ).isoformat()


def grid_properties(grid: GridRecord) -> dict[str, Any]:
    """A grid version's properties (GridProperties, NearGridProperties with a distance)."""
    properties: dict[str, Any] = {
        "code": grid.code,
        "name": grid.name,
        "community_code": grid.community_code,
        "households": grid.households,
        "valid_from": _local(grid.valid_from),
        "valid_to": _local(grid.valid_to),
    }
    if grid.distance_m is not None:
        properties["distance_m"] = round(grid.distance_m, DISTANCE_DECIMALS)
    return properties


def detail_properties(detail: GridDetail) -> dict[str, Any]:
    """A grid's properties with its hierarchy and staff (GridDetailProperties)."""
    properties = grid_properties(detail.grid)
    properties.update(
        community_name=detail.community_name,
        street_code=detail.street_code,
        street_name=detail.street_name,
        district_code=detail.district_code,
        district_name=detail.district_name,
        staff=[{"worker_id": s.worker_id, "name": s.name} for s in detail.staff],
    )
    return properties


def feature(grid: GridRecord, properties: dict[str, Any] | None = None) -> dict[str, Any]:
    """A grid as a GeoJSON Feature whose id is its code; its own properties by default."""
    return {
        "type": "Feature",
        "id": grid.code,
        "geometry": grid.geometry,
        "properties": grid_properties(grid) if properties is None else properties,
    }


def collection(
    request: Request,
    page: GridPage,
    *,
    limit: int,
    offset: int,
    links: bool = True,
) -> dict[str, Any]:
    """A page of grids as a FeatureCollection, with self / next / prev links when `links`."""
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
        "features": [feature(grid) for grid in page.grids],
        "numberMatched": page.number_matched,
        "numberReturned": returned,
        "links": found,
    }


class EncodedFeatures:
    """Grid versions' Features encoded once, to answer many pages of them by joining text.

    Encoding a grid's boundary is most of the cost of an answer from memory, yet the
    Feature of a version never changes within one grid snapshot; only its distance does.
    Each version is encoded at its first use, as `GeoJSONResponse` would encode it, so an
    answer joined from these is byte for byte the one `collection` would give. Hold one
    per snapshot: the versions are told apart by code and start.
    """

    def __init__(self) -> None:
        """An empty store; versions are encoded as they are asked for."""
        self._heads: dict[tuple[str, datetime], str] = {}

    def feature(self, grid: GridRecord) -> str:
        """`feature(grid)` as JSON text."""
        key = (grid.code, grid.valid_from)
        head = self._heads.get(key)
        if head is None:
            # Without its distance, less the `}}` that close its properties and itself:
            # `distance_m` is the last property, and properties the Feature's last member.
            whole = _dumps(feature(replace(grid, distance_m=None)))
            head = self._heads[key] = whole[:-2]
        if grid.distance_m is None:
            return head + "}}"
        distance = round(grid.distance_m, DISTANCE_DECIMALS)
        # json writes a finite float as its repr (and refuses NaN and infinities).
        text = repr(distance) if math.isfinite(distance) else _dumps(distance)
        return f'{head},"distance_m":{text}}}}}'

    def collection(self, request: Request, grids: Sequence[GridRecord]) -> bytes:
        """A whole result (no paging) as `collection` would encode it: a self link alone."""
        features = ",".join([self.feature(grid) for grid in grids])
        links = _dumps([_link(request, "self", 0)])
        return (
            f'{{"type":"FeatureCollection","features":[{features}],'
            f'"numberMatched":{len(grids)},"numberReturned":{len(grids)},"links":{links}}}'
        ).encode()


def _dumps(value: Any) -> str:
    """JSON text as `JSONResponse.render` writes it, so that joined text equals its bytes."""
    return json.dumps(
        value, ensure_ascii=False, allow_nan=False, indent=None, separators=(",", ":")
    )


def _link(request: Request, rel: str, offset: int) -> dict[str, str]:
    href = request.url if rel == "self" else request.url.include_query_params(offset=offset)
    return {"href": str(href), "rel": rel, "type": GEOJSON_MEDIA_TYPE}
