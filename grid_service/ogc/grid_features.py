"""Grids as OGC features from the grid snapshot in memory, without a query.

The grid snapshot that locate and nearest answer from (`geodata.db.grid_cache`) holds
every grid version with its GeoJSON as PostGIS wrote it, `ST_AsGeoJSON(geom, 7)`, the
very expression `geodata.db.features.get_feature` selects. So a grid with a version in
force is answered here as `get_feature` would answer it, byte for byte once encoded
(tests/integration/test_ogc_grid_memory.py holds the two equal for every grid); only a
grid with no version in force (closed, or not yet in force: its latest version) or an
unknown code needs the database. Pages of the grids in force, whole or within a bbox, are
answered here as `query_features` answers them (tests/integration/test_ogc_grid_memory.py
holds every page and a sample of boxes to it); a filter, an order, a time or a bbox
across the antimeridian still go to the database.
"""

from datetime import datetime
from itertools import pairwise
from typing import Any, Final

from geodata.db.features import (
    COLLECTIONS,
    Feature,
    FeaturePage,
    FeatureQuery,
    check_properties,
    json_value,
)
from geodata.db.grid_cache import GridSnapshot
from geodata.db.grid_queries import GridRecord
from geodata.errors import GridNotFound

GRIDS: Final = COLLECTIONS["grids"]


def grid_in_force(
    snapshot: GridSnapshot,
    code: str,
    at: datetime,
    *,
    lat_lon: bool = False,
    properties: tuple[str, ...] | None = None,
) -> Feature | None:
    """`get_feature` on the grids collection, from memory, for a grid in force at `at`.

    None when the snapshot has no version of `code` in force then: only the database
    knows which answer that is (the latest version, or none). Unknown `properties` raise
    UnknownProperty, as `get_feature` does.
    """
    if properties is not None:
        check_properties(GRIDS, properties)
    try:
        grid = snapshot.detail(code, at).grid
    except GridNotFound:
        return None
    return _feature(grid, lat_lon, properties)


def grids_in_force_page(
    snapshot: GridSnapshot, at: datetime, query: FeatureQuery
) -> FeaturePage | None:
    """`query_features` on the grids collection, from memory, when the query asks only for
    grids in force at `at`: no filter, order or time, and a bbox, if any, with width and
    height (the database draws the others). None when it asks for more, or when two
    versions of one code are in force (a data error whose order only the database knows).
    Unknown `properties` raise UnknownProperty, as `query_features` does.
    """
    if query.filter is not None or query.sortby or query.interval is not None:
        return None
    if query.area_prefix is not None:
        return None
    box = None
    if query.bbox is not None:
        bbox = query.bbox
        if not (bbox.min_lon < bbox.max_lon and bbox.min_lat < bbox.max_lat):
            return None
        box = (bbox.min_lon, bbox.min_lat, bbox.max_lon, bbox.max_lat)
    if query.properties is not None:
        check_properties(GRIDS, query.properties)
    grids = snapshot.in_force(at, box)
    if any(one.code == other.code for one, other in pairwise(grids)):
        return None
    page = grids[query.offset : query.offset + query.limit]
    return FeaturePage(
        features=[_feature(grid, query.lat_lon, query.properties) for grid in page],
        number_matched=len(grids),
    )


def _feature(grid: GridRecord, lat_lon: bool, properties: tuple[str, ...] | None) -> Feature:
    return Feature(
        id=grid.code,
        geometry=_flipped(grid.geometry) if lat_lon else grid.geometry,
        # In the collection's order, whatever order they were asked in, as get_feature.
        # A grid record's fields are named as the collection's columns.
        properties={
            name: json_value(getattr(grid, name))
            for name in GRIDS.properties
            if properties is None or name in properties
        },
    )


def _flipped(geometry: dict[str, Any]) -> dict[str, Any]:
    # What ST_FlipCoordinates does before ST_AsGeoJSON: each ordinate keeps its digits.
    return {**geometry, "coordinates": _flip(geometry["coordinates"])}


def _flip(coordinates: list[Any]) -> list[Any]:
    if coordinates and isinstance(coordinates[0], int | float):
        return [coordinates[1], coordinates[0], *coordinates[2:]]
    return [_flip(part) for part in coordinates]
