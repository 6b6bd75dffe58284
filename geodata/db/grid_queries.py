"""Grid reads on PostGIS: one grid with its hierarchy and staff, and the spatial searches.

Every query reads the grid versions valid at one instant `at` (the caller's "now" by
default), the same versions the consumers' index assigns events with. Geometry leaves as
GeoJSON written by PostGIS with 7 decimals (about 1 cm); distances are metres on the
WGS84 spheroid (geography), never degrees.
"""

import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final

import shapely
from geoalchemy2 import Geography
from shapely.geometry.base import BaseGeometry
from sqlalchemy import (
    ColumnElement,
    Connection,
    Engine,
    Float,
    Row,
    and_,
    cast,
    func,
    literal,
    or_,
    select,
    text,
)
from sqlalchemy.orm import InstrumentedAttribute

from geodata.compliance.report import check_code
from geodata.db.models import Grid
from geodata.errors import GridNotFound
from geodata.query_limits import Bbox, degree_envelope

GEOJSON_DECIMALS: Final = 7
"""Decimals of every coordinate served: 1e-7 degree is about 1 cm."""

SRID: Final = 4326

# The second phase of `nearest` takes every grid within the k-th candidate's distance,
# widened by a millimetre so that one computed a hair differently is never lost.
_REACH_SLACK_M: Final = 0.001

Column = ColumnElement[Any] | InstrumentedAttribute[Any]

# Both statements of a page (the count and the rows) read one snapshot.
_SNAPSHOT: Final = {"isolation_level": "REPEATABLE READ"}


@dataclass(frozen=True, slots=True)
class GridRecord:
    """One grid version as served: attributes, GeoJSON geometry, distance when asked."""

    code: str
    name: str
    community_code: str
    households: int | None
    valid_from: datetime
    valid_to: datetime | None
    geometry: dict[str, Any]
    distance_m: float | None = None


@dataclass(frozen=True, slots=True)
class StaffMember:
    """A worker assigned to a grid: id and name only (their phone is personal data)."""

    worker_id: str
    name: str


@dataclass(frozen=True, slots=True)
class GridDetail:
    """A grid with the names of its community, street and district, and its staff."""

    grid: GridRecord
    community_name: str
    street_code: str
    street_name: str
    district_code: str
    district_name: str
    staff: tuple[StaffMember, ...]


@dataclass(frozen=True, slots=True)
class GridPage:
    """One page of a search: its grids, and how many matched in all."""

    grids: tuple[GridRecord, ...]
    number_matched: int


# One statement, one round trip. The staff subquery reads the outer grid's code;
# DISTINCT guards against overlapping assignment periods. `grid_cache` answers the same
# from memory for locate; tests hold the two equal.
_DETAIL: Final = text(
    f"""
    SELECT g.code, g.name, g.community_code, g.households, g.valid_from, g.valid_to,
           ST_AsGeoJSON(g.geom, {GEOJSON_DECIMALS}) AS geojson,
           c.name AS community_name, s.code AS street_code, s.name AS street_name,
           d.code AS district_code, d.name AS district_name,
           (SELECT coalesce(json_agg(json_build_object('worker_id', m.worker_id,
                                                       'name', m.name)
                                     ORDER BY m.worker_id), '[]'::json)
            FROM (SELECT DISTINCT w.worker_id, w.name
                  FROM worker_assignments a JOIN workers w ON w.worker_id = a.worker_id
                  WHERE a.grid_code = g.code AND a.valid_from <= :at
                    AND (a.valid_to IS NULL OR :at < a.valid_to)) m) AS staff
    FROM grids g
    JOIN communities c ON c.code = g.community_code
    JOIN streets s ON s.code = c.street_code
    JOIN districts d ON d.code = s.district_code
    WHERE g.code = :code AND g.valid_from <= :at AND (g.valid_to IS NULL OR :at < g.valid_to)
    """
)


def grid_detail(engine: Engine, code: str, at: datetime) -> GridDetail:
    """The grid version valid at `at` with its hierarchy and staff; GridNotFound if none."""
    with engine.connect() as conn:
        row = conn.execute(_DETAIL, {"code": code, "at": at}).one_or_none()
    if row is None:
        raise GridNotFound(f"no grid {code} valid at {at.isoformat()}")
    return detail_of(row, tuple(StaffMember(m["worker_id"], m["name"]) for m in row.staff))


def detail_of(row: Row[*tuple[Any, ...]], staff: tuple[StaffMember, ...]) -> GridDetail:
    """A GridDetail from a row with a grid version's columns (GeoJSON as `geojson`) and the
    names and codes of its community, street and district, as `grid_detail` selects them."""
    return GridDetail(
        grid=_record(row),
        community_name=row.community_name,
        street_code=row.street_code,
        street_name=row.street_name,
        district_code=row.district_code,
        district_name=row.district_name,
        staff=staff,
    )


def list_grids(
    engine: Engine,
    *,
    at: datetime,
    bbox: Bbox | None = None,
    code_prefix: str | None = None,
    limit: int,
    offset: int = 0,
) -> GridPage:
    """Grids intersecting `bbox` (boundary included) under a code prefix, ordered by code."""
    conditions = [_valid_at(at)]
    if bbox is not None:
        envelope = func.ST_MakeEnvelope(
            bbox.min_lon, bbox.min_lat, bbox.max_lon, bbox.max_lat, SRID
        )
        conditions.append(func.ST_Intersects(Grid.geom, envelope))
    prefix = check_code(code_prefix, "grid")
    if prefix:
        conditions.append(Grid.code.startswith(prefix))
    with engine.connect().execution_options(**_SNAPSHOT) as conn:
        return _page(conn, conditions, (Grid.code,), limit=limit, offset=offset)


def grids_within(
    engine: Engine,
    lon: float,
    lat: float,
    radius_m: float,
    *,
    at: datetime,
    limit: int,
    offset: int = 0,
) -> GridPage:
    """Grids within `radius_m` metres of a point, nearest first (ties by code)."""
    with engine.connect().execution_options(**_SNAPSHOT) as conn:
        return _within(conn, lon, lat, radius_m, at, limit=limit, offset=offset)


def nearest_grids(
    engine: Engine, lon: float, lat: float, k: int, *, at: datetime
) -> tuple[GridRecord, ...]:
    """The `k` grids nearest a point in metres, nearest first (ties by code).

    The GiST index orders by planar distance in degrees (`<->`), which is not the order
    in metres (a degree of longitude is shorter than one of latitude). So its k nearest
    only bound the answer: every one of the true k nearest lies within the farthest of
    them, and an exact search within that distance, in metres, gives the answer.
    """
    point = _point(lon, lat)
    knn = (
        select(_distance_m(point).label("distance_m"))
        .where(_valid_at(at))
        .order_by(Grid.geom.op("<->", return_type=Float)(point))
        .limit(k)
        .subquery()
    )
    with engine.connect().execution_options(**_SNAPSHOT) as conn:
        reach = conn.execute(select(func.max(knn.c.distance_m))).scalar_one_or_none()
        if reach is None:
            return ()
        page = _within(conn, lon, lat, reach + _REACH_SLACK_M, at, limit=k, count=False)
    return page.grids


def intersecting_grids(
    engine: Engine, geometry: BaseGeometry, *, at: datetime, limit: int, offset: int = 0
) -> GridPage:
    """Grids whose boundary intersects `geometry` (EPSG:4326), ordered by code."""
    shape = func.ST_GeomFromWKB(shapely.to_wkb(geometry), SRID)
    conditions = [_valid_at(at), func.ST_Intersects(Grid.geom, shape)]
    with engine.connect().execution_options(**_SNAPSHOT) as conn:
        return _page(conn, conditions, (Grid.code,), limit=limit, offset=offset)


def _valid_at(at: datetime) -> ColumnElement[bool]:
    return and_(Grid.valid_from <= at, or_(Grid.valid_to.is_(None), Grid.valid_to > at))


def _point(lon: float, lat: float) -> ColumnElement[Any]:
    return func.ST_SetSRID(func.ST_MakePoint(literal(lon, Float), literal(lat, Float)), SRID)


def _distance_m(point: ColumnElement[Any]) -> ColumnElement[float]:
    """Metres on the spheroid from the grid to the point; 0 inside."""
    return func.ST_Distance(cast(Grid.geom, Geography), cast(point, Geography), type_=Float)


def _record_columns() -> list[Column]:
    return [
        Grid.code,
        Grid.name,
        Grid.community_code,
        Grid.households,
        Grid.valid_from,
        Grid.valid_to,
        func.ST_AsGeoJSON(Grid.geom, GEOJSON_DECIMALS).label("geojson"),
    ]


def _record(row: Row[*tuple[Any, ...]], distance_m: float | None = None) -> GridRecord:
    return GridRecord(
        code=row.code,
        name=row.name,
        community_code=row.community_code,
        households=row.households,
        valid_from=row.valid_from,
        valid_to=row.valid_to,
        geometry=json.loads(row.geojson),
        distance_m=distance_m,
    )


def _within(
    conn: Connection,
    lon: float,
    lat: float,
    radius_m: float,
    at: datetime,
    *,
    limit: int,
    offset: int = 0,
    count: bool = True,
) -> GridPage:
    point = _point(lon, lat)
    box = degree_envelope(lon, lat, radius_m)
    envelope = func.ST_MakeEnvelope(box.min_lon, box.min_lat, box.max_lon, box.max_lat, SRID)
    conditions = [
        _valid_at(at),
        # Only so that the GiST index pre-selects: the box holds the whole circle.
        Grid.geom.op("&&")(envelope),
        func.ST_DWithin(cast(Grid.geom, Geography), cast(point, Geography), radius_m),
    ]
    distance = _distance_m(point).label("distance_m")
    return _page(
        conn,
        conditions,
        (distance, Grid.code),
        limit=limit,
        offset=offset,
        distance=distance,
        count=count,
    )


def _page(
    conn: Connection,
    conditions: Sequence[ColumnElement[bool]],
    order_by: Sequence[Column],
    *,
    limit: int,
    offset: int,
    distance: ColumnElement[float] | None = None,
    count: bool = True,
) -> GridPage:
    """A page of grids in `order_by`, with the number of all matches when `count`."""
    matched: int | None = None
    if count:
        matched = conn.execute(
            select(func.count()).select_from(Grid).where(*conditions)
        ).scalar_one()
        if offset >= matched:
            return GridPage((), matched)
    columns = _record_columns() if distance is None else [*_record_columns(), distance]
    statement = select(*columns).where(*conditions).order_by(*order_by).limit(limit).offset(offset)
    rows = conn.execute(statement).all()
    grids = tuple(_record(row, None if distance is None else float(row.distance_m)) for row in rows)
    return GridPage(grids, len(grids) if matched is None else matched)
