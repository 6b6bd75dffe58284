"""Feature collections read from PostGIS: pages of GeoJSON features, counts and extents.

The OGC API - Features adapter serves these; nothing here knows about HTTP. Each
collection is a fixed table with fixed public properties (no personal data: no phone
numbers, no reporter ids, no raw event payloads), so the SQL below is assembled only from
the constants in `COLLECTIONS`, never from user input; values are always bound. A CQL2
filter, a sort and a choice of properties name only a collection's queryables, checked
against these constants before any SQL is built.
"""

import uuid
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Final, Literal

from sqlalchemy import (
    ColumnElement,
    Connection,
    Engine,
    RowMapping,
    Select,
    TextClause,
    func,
    select,
    text,
)

from geodata.cql2 import CheckedFilter, QueryableType, UnknownProperty
from geodata.db.cql2_sql import filter_columns, filter_condition

Bind = Engine | Connection

GEOJSON_DECIMALS: Final = 7
"""Decimal places of coordinates: 1e-7 degree is about 1 cm, finer than any boundary here."""

TemporalKind = Literal["validity", "instant"]
"""How a collection has time: a validity period per version, or one instant per feature."""

PropertyType = Literal["string", "integer", "date-time", "string-list"]
"""The JSON type of a property, for the collection's schema."""

GeometryType = Literal["MultiPolygon", "Point"]

GEOMETRY_QUERYABLE: Final = "geometry"
"""The name a filter gives the feature's geometry, as OGC API - Features Part 3 suggests."""


@dataclass(frozen=True)
class Collection:
    """One table served as a feature collection, and what of it is public."""

    id: str
    title: str
    description: str
    table: str
    id_column: str
    properties: Mapping[str, PropertyType]
    """Public properties: each a column of the table, by name, with its JSON type."""
    geometry_type: GeometryType
    id_is_uuid: bool = False
    temporal: TemporalKind | None = None
    time_columns: tuple[str, ...] = ()
    """`(valid_from, valid_to)` for validity, `(reported_at,)` for an instant."""
    area_column: str | None = None
    """SQL over the row (alias `f`) giving the area code that an area prefix filters on."""
    restricted: bool = False
    """Readable only by supervisors (within their area) and admins."""


@dataclass(frozen=True)
class BBox:
    """A lon/lat box; `min_lon > max_lon` means it crosses the antimeridian."""

    min_lon: float
    min_lat: float
    max_lon: float
    max_lat: float


@dataclass(frozen=True)
class TimeInterval:
    """A closed time interval; None on a side leaves it open; start == end is an instant."""

    start: datetime | None
    end: datetime | None


@dataclass(frozen=True)
class SortKey:
    """One property to order features by."""

    name: str
    descending: bool = False


@dataclass(frozen=True)
class FeatureQuery:
    """What to select from a collection and which page of it."""

    bbox: BBox | None = None
    interval: TimeInterval | None = None
    limit: int = 10
    offset: int = 0
    area_prefix: str | None = None
    """Only features whose area code starts with this (restricted collections)."""
    lat_lon: bool = False
    """Write coordinates latitude first, as EPSG:4326 and EPSG:4490 define their axes."""
    filter: CheckedFilter | None = None
    """A CQL2 filter checked against the collection's queryables."""
    sortby: tuple[SortKey, ...] = ()
    """Order by these queryables first; the id always ends the order."""
    properties: tuple[str, ...] | None = None
    """Only these properties in each feature; None: all of them."""


@dataclass(frozen=True)
class Feature:
    """One feature: its id, GeoJSON geometry and public properties."""

    id: str
    geometry: dict[str, Any]
    properties: dict[str, Any]


@dataclass(frozen=True)
class FeaturePage:
    """A page of features and how many match the query in all."""

    features: list[Feature]
    number_matched: int


@dataclass(frozen=True)
class Extent:
    """Where and when a collection's features are; None where it has none."""

    bbox: BBox | None
    interval: TimeInterval | None = None


def _area_collection(collection_id: str, title: str, description: str, *extra: str) -> Collection:
    return Collection(
        id=collection_id,
        title=title,
        description=description,
        table=collection_id,
        id_column="code",
        properties={"code": "string", "name": "string", **dict.fromkeys(extra, "string")},
        geometry_type="MultiPolygon",
    )


COLLECTIONS: Final[Mapping[str, Collection]] = {
    "districts": _area_collection(
        "districts", "Districts (区)", "Baoji's urban districts.", "name_en"
    ),
    "streets": _area_collection(
        "streets", "Street offices (街道)", "Street offices of the districts.", "district_code"
    ),
    "communities": _area_collection(
        "communities",
        "Communities (社区)",
        "Residents' committee areas, each cut into grids.",
        "street_code",
    ),
    "grids": Collection(
        id="grids",
        title="Grids (网格)",
        description=(
            "Grid boundaries. Without `datetime`, the versions in force; with it, each "
            "grid's version valid at the instant, or its latest version overlapping the "
            "interval."
        ),
        table="grids",
        id_column="code",
        properties={
            "code": "string",
            "name": "string",
            "community_code": "string",
            "households": "integer",
            "valid_from": "date-time",
            "valid_to": "date-time",
        },
        geometry_type="MultiPolygon",
        temporal="validity",
        time_columns=("valid_from", "valid_to"),
    ),
    "pois": Collection(
        id="pois",
        title="Points of interest (一网统管)",
        description="Residential compounds, organisations, shops and lockers put on the grid.",
        table="pois",
        id_column="poi_id",
        properties={"poi_id": "string", "name": "string", "kind": "string", "grid_code": "string"},
        geometry_type="Point",
    ),
    "incidents": Collection(
        id="incidents",
        title="Incidents (事件)",
        description=(
            "Reported incidents and where they stand; supervisors see their area only. "
            "`datetime` filters on reported_at."
        ),
        table="incidents",
        id_column="incident_id",
        id_is_uuid=True,
        # Not reporter_id nor the raw payload: a resident's report may carry a phone number.
        properties={
            "incident_id": "string",
            "category": "string",
            "description": "string",
            "source": "string",
            "reported_at": "date-time",
            "status": "string",
            "grid_code": "string",
            "community_code": "string",
            "staff_id": "string",
            "escalated_to": "string",
            "flags": "string-list",
        },
        geometry_type="Point",
        temporal="instant",
        time_columns=("reported_at",),
        area_column="coalesce(f.grid_code, f.community_code)",
        restricted=True,
    ),
}
"""Every served collection by id, in the order the API lists them."""

_QUERYABLE_TYPES: Final[Mapping[PropertyType, QueryableType]] = {
    "string": "string",
    "integer": "integer",
    "date-time": "date-time",
}


def queryables(collection: Collection) -> dict[str, QueryableType]:
    """What a filter may name: every scalar property, and the geometry.

    A list (an incident's flags) is no queryable: it has no order, and CQL2's array
    operators are not evaluated here.
    """
    named: dict[str, QueryableType] = {
        name: _QUERYABLE_TYPES[kind]
        for name, kind in collection.properties.items()
        if kind in _QUERYABLE_TYPES
    }
    named[GEOMETRY_QUERYABLE] = "geometry"
    return named


def check_sortable(collection: Collection, keys: tuple[SortKey, ...]) -> tuple[SortKey, ...]:
    """The keys, if each names a queryable other than the geometry; else UnknownProperty."""
    sortable = [name for name in queryables(collection) if name != GEOMETRY_QUERYABLE]
    for key in keys:
        if key.name not in sortable:
            raise UnknownProperty(
                f"cannot sort {collection.id} by {key.name!r}; sortable: {', '.join(sortable)}"
            )
    return keys


def check_properties(collection: Collection, names: tuple[str, ...]) -> tuple[str, ...]:
    """The names, if each is a property of the collection; else UnknownProperty."""
    for name in names:
        if name not in collection.properties:
            raise UnknownProperty(
                f"{collection.id} has no property {name!r}; "
                f"properties: {', '.join(collection.properties)}"
            )
    return names


@dataclass
class _Sql:
    """A FROM-and-WHERE fragment over alias `f`, with its bound values."""

    source: str
    conditions: list[str] = field(default_factory=list)
    values: dict[str, Any] = field(default_factory=dict)

    def where(self) -> str:
        return " AND ".join(self.conditions) if self.conditions else "TRUE"


def _versions_source(collection: Collection, interval: TimeInterval | None) -> _Sql:
    """The versions a validity query sees: in force, or the latest per id in the interval."""
    valid_from, valid_to = collection.time_columns
    if interval is None:
        # Without a time, the versions in force now, as locate reads them: not the open
        # versions, since a redrawing dated by the city may be loaded before it takes effect.
        sql = _Sql(f"(SELECT * FROM {collection.table} WHERE {in_force(collection)}) AS f")
        sql.values["t_now"] = datetime.now(UTC)
        return sql
    sql = _Sql("")
    inner: list[str] = []
    # A version is valid on [valid_from, valid_to); it meets the closed [start, end] when
    # it begins by the end and ends after the start.
    if interval.end is not None:
        inner.append(f"{valid_from} <= :t_end")
        sql.values["t_end"] = interval.end
    if interval.start is not None:
        inner.append(f"({valid_to} IS NULL OR {valid_to} > :t_start)")
        sql.values["t_start"] = interval.start
    where = " AND ".join(inner) if inner else "TRUE"
    # One version per id, the latest, so that ids stay unique within a response.
    sql.source = (
        f"(SELECT DISTINCT ON ({collection.id_column}) * FROM {collection.table} "
        f"WHERE {where} ORDER BY {collection.id_column}, {valid_from} DESC) AS f"
    )
    return sql


def in_force(collection: Collection, alias: str = "") -> str:
    """SQL true for a version valid at the bound `:t_now`: `valid_from <= t < valid_to`."""
    valid_from, valid_to = (f"{alias}{column}" for column in collection.time_columns)
    return f"{valid_from} <= :t_now AND ({valid_to} IS NULL OR :t_now < {valid_to})"


def _selection(collection: Collection, query: FeatureQuery) -> _Sql:
    if query.interval is not None and collection.temporal is None:
        raise ValueError(f"collection {collection.id} has no time to filter on")
    if collection.temporal == "validity":
        sql = _versions_source(collection, query.interval)
    else:
        sql = _Sql(f"{collection.table} AS f")
    if collection.temporal == "instant" and query.interval is not None:
        (column,) = collection.time_columns
        if query.interval.start is not None:
            sql.conditions.append(f"f.{column} >= :t_start")
            sql.values["t_start"] = query.interval.start
        if query.interval.end is not None:
            sql.conditions.append(f"f.{column} <= :t_end")
            sql.values["t_end"] = query.interval.end
    if query.bbox is not None:
        box = query.bbox
        sql.values.update(
            min_lon=box.min_lon, min_lat=box.min_lat, max_lon=box.max_lon, max_lat=box.max_lat
        )
        if box.min_lon <= box.max_lon:
            sql.conditions.append(
                "ST_Intersects(f.geom, ST_MakeEnvelope(:min_lon, :min_lat, :max_lon, :max_lat,"
                " 4326))"
            )
        else:
            # Across the antimeridian: the two boxes either side of it.
            sql.conditions.append(
                "(ST_Intersects(f.geom, ST_MakeEnvelope(:min_lon, :min_lat, 180, :max_lat, 4326))"
                " OR ST_Intersects(f.geom, ST_MakeEnvelope(-180, :min_lat, :max_lon, :max_lat,"
                " 4326)))"
            )
    _within_area(sql, collection, query.area_prefix)
    return sql


def _within_area(sql: _Sql, collection: Collection, prefix: str | None) -> None:
    if prefix is None:
        return
    if collection.area_column is None:
        raise ValueError(f"collection {collection.id} has no area to filter on")
    # left() rather than LIKE: a prefix needs no escaping and reads as what it is.
    sql.conditions.append(f"left({collection.area_column}, :prefix_len) = :prefix")
    sql.values.update(prefix=prefix, prefix_len=len(prefix))


def _chosen(collection: Collection, properties: tuple[str, ...] | None) -> tuple[str, ...]:
    # In the collection's order, whatever order they were asked in.
    if properties is None:
        return tuple(collection.properties)
    return tuple(name for name in collection.properties if name in properties)


def _columns(collection: Collection, lat_lon: bool, properties: tuple[str, ...]) -> str:
    geometry = "ST_FlipCoordinates(f.geom)" if lat_lon else "f.geom"
    selected = "".join(f', f.{name} AS "p_{name}"' for name in properties)
    return (
        f"f.{collection.id_column}::text AS feature_id, "
        f"ST_AsGeoJSON({geometry}, {GEOJSON_DECIMALS})::json AS geometry{selected}"
    )


def json_value(value: object) -> object:
    """A column's value as a GeoJSON property holds it."""
    # JSON has no time type: RFC 3339 in UTC, as GeoJSON readers such as GDAL expect.
    if isinstance(value, datetime):
        return value.astimezone(UTC).isoformat().replace("+00:00", "Z")
    if isinstance(value, uuid.UUID):
        return str(value)
    return value


def _feature(row: RowMapping, properties: tuple[str, ...]) -> Feature:
    return Feature(
        id=str(row["feature_id"]),
        geometry=row["geometry"],
        properties={name: json_value(row[f"p_{name}"]) for name in properties},
    )


def _order(collection: Collection, sortby: tuple[SortKey, ...]) -> list[TextClause]:
    # The names were checked against the collection's constants (check_sortable). The id
    # ends every order, so that offset paging never repeats or skips a feature.
    keys = [
        text(f"f.{key.name} {'DESC' if key.descending else 'ASC'}")
        for key in check_sortable(collection, sortby)
    ]
    return [*keys, text(f"f.{collection.id_column}")]


def _conditions(
    collection: Collection, query: FeatureQuery, sql: _Sql
) -> list[ColumnElement[bool] | TextClause]:
    conditions: list[ColumnElement[bool] | TextClause] = [text(sql.where())]
    if query.filter is not None:
        columns = filter_columns(queryables(collection))
        conditions.append(filter_condition(query.filter, columns))
    return conditions


def query_features(bind: Bind, collection: Collection, query: FeatureQuery) -> FeaturePage:
    """One page of the collection's features matching `query`, and how many match in all."""
    sql = _selection(collection, query)
    if query.properties is not None:
        check_properties(collection, query.properties)
    properties = _chosen(collection, query.properties)
    conditions = _conditions(collection, query, sql)
    page: Select[Any] = (
        select(text(_columns(collection, query.lat_lon, properties)))
        .select_from(text(sql.source))
        .where(*conditions)
        .order_by(*_order(collection, query.sortby))
        .limit(query.limit)
        .offset(query.offset)
    )
    count = select(func.count()).select_from(text(sql.source)).where(*conditions)
    with _connection(bind) as connection:
        matched = int(connection.execute(count, sql.values).scalar_one())
        rows = connection.execute(page, sql.values).mappings()
        features = [_feature(row, properties) for row in rows]
    return FeaturePage(features=features, number_matched=matched)


def get_feature(
    bind: Bind,
    collection: Collection,
    feature_id: str,
    *,
    area_prefix: str | None = None,
    lat_lon: bool = False,
    properties: tuple[str, ...] | None = None,
) -> Feature | None:
    """The feature with this id (a grid's version in force, else its latest), or None."""
    chosen = _chosen(collection, properties)
    if properties is not None:
        check_properties(collection, properties)
    key: object = feature_id
    if collection.id_is_uuid:
        try:
            key = uuid.UUID(feature_id)
        except ValueError:
            return None
    sql = _Sql(f"{collection.table} AS f", [f"f.{collection.id_column} = :feature_id"])
    sql.values["feature_id"] = key
    _within_area(sql, collection, area_prefix)
    order = "1"
    if collection.temporal == "validity":
        # The version in force now first, then the latest (a closed grid's last one, or a
        # redrawing not yet in force when the grid did not exist before it).
        order = f"({in_force(collection, 'f.')}) DESC, f.{collection.time_columns[0]} DESC"
        sql.values["t_now"] = datetime.now(UTC)
    statement = text(
        f"SELECT {_columns(collection, lat_lon, chosen)} FROM {sql.source} "
        f"WHERE {sql.where()} ORDER BY {order} LIMIT 1"
    )
    with _connection(bind) as connection:
        row = connection.execute(statement, sql.values).mappings().first()
    return None if row is None else _feature(row, chosen)


def collection_extent(
    bind: Bind, collection: Collection, *, area_prefix: str | None = None
) -> Extent:
    """The lon/lat box of every feature (all versions) and, with time, the time they span."""
    sql = _Sql(f"{collection.table} AS f")
    _within_area(sql, collection, area_prefix)
    time_columns = "NULL::timestamptz, NULL::timestamptz"
    if collection.temporal == "validity":
        valid_from, valid_to = collection.time_columns
        # An open version leaves the end open.
        time_columns = (
            f"min(f.{valid_from}), "
            f"CASE WHEN bool_or(f.{valid_to} IS NULL) THEN NULL ELSE max(f.{valid_to}) END"
        )
    elif collection.temporal == "instant":
        (column,) = collection.time_columns
        time_columns = f"min(f.{column}), max(f.{column})"
    statement = text(
        "SELECT ST_XMin(e.box), ST_YMin(e.box), ST_XMax(e.box), ST_YMax(e.box), e.t0, e.t1 "
        f"FROM (SELECT ST_Extent(f.geom) AS box, {time_columns} FROM {sql.source} "
        f"WHERE {sql.where()}) AS e(box, t0, t1)"
    )
    with _connection(bind) as connection:
        row = connection.execute(statement, sql.values).one()
    bbox = None if row[0] is None else BBox(row[0], row[1], row[2], row[3])
    interval = None
    if collection.temporal is not None and row[4] is not None:
        interval = TimeInterval(row[4], row[5])
    return Extent(bbox=bbox, interval=interval)


@contextmanager
def _connection(bind: Bind) -> Iterator[Connection]:
    """The caller's connection, or one from the engine, closed afterwards."""
    if isinstance(bind, Connection):
        yield bind
        return
    # One snapshot for the count and the page, so numberMatched agrees with the features
    # even while an import commits; a read-only transaction never fails to serialize.
    with bind.connect().execution_options(isolation_level="REPEATABLE READ") as connection:
        yield connection
