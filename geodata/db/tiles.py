"""Mapbox Vector Tiles of the grid hierarchy, points of interest and incidents, by PostGIS.

Each layer is one table: PostGIS selects the rows under the tile with the GiST index,
snaps polygons to a zoom-dependent grid, projects them to EPSG:3857, clips them to the
tile plus a buffer and rounds them to its resolution (`ST_AsMVTGeom`), then encodes the
layer (`ST_AsMVT`). Grids show the versions in force at the instant drawn (a redrawing
dated in the future is loaded beforehand), by the same predicate as OGC's; so a grids
stamp also names the next instant a version starts or ends, and changes then. The SQL is
built from the constants below, never from a request.
"""

import hashlib
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Final, Literal

from sqlalchemy import Connection, text
from sqlalchemy.sql.elements import TextClause

from geodata.db.features import COLLECTIONS, in_force
from geodata.db.stamps import TABLE_STAMP, stamp_sql
from geodata.errors import WanggeError
from geodata.spatial_index import to_epoch_us

#: Tile coordinates per side (the MVT default) and the clip buffer in those units.
TILE_EXTENT: Final = 4096
TILE_BUFFER: Final = 64
MAX_ZOOM: Final = 22
#: Polygon vertices are snapped, in degrees, to a grid of this fraction of a tile unit
#: (of longitude) before projection: at most 1/16 of a screen pixel of a 512-pixel tile.
SNAP_UNITS: Final = 0.5
#: Part of every tile's version: bump it when the SQL changes what a tile holds, so that
#: caches holding tiles of the old shape revalidate to new ETags.
TILES_FORMAT: Final = "1"

#: Latitude where the square Web Mercator world ends.
WEB_MERCATOR_MAX_LAT: Final = 85.0511287798066

FieldType = Literal["String", "Number"]
Bounds = tuple[float, float, float, float]
"""(west, south, east, north) in degrees."""


class UnknownLayer(WanggeError):
    """No tile layer has the requested name."""

    code = "layer_not_found"


class InvalidTile(WanggeError):
    """A tile address outside the pyramid: z not in 0..22, or x or y not in 0..2^z-1."""

    code = "invalid_tile"


@dataclass(frozen=True)
class TileField:
    """One attribute of a layer's features: its name, SQL expression and TileJSON type."""

    name: str
    sql: str
    type: FieldType


@dataclass(frozen=True)
class TileLayer:
    """A table served as a vector tile layer, and what its TileJSON says about it."""

    name: str
    table: str
    geometry: Literal["polygon", "point"]
    fields: tuple[TileField, ...]
    description: str
    minzoom: int
    maxzoom: int
    where: str = "true"
    # A bigint feature id lets map clients use feature-state (e.g. colour by compliance).
    feature_id_sql: str | None = None
    # Readable by supervisors (rows whose area code starts with theirs) and admins only.
    restricted: bool = False
    area_sql: str | None = None
    # (valid_from, valid_to) of a table of dated versions: the layer draws those in force
    # at the bound `:t_now`, and its stamp names the next instant one starts or ends.
    validity: tuple[str, str] | None = None

    def field_types(self) -> dict[str, str]:
        """TileJSON `fields`: attribute name to type."""
        return {field.name: field.type for field in self.fields}


def _code_of(level: str, digits: int) -> TileField:
    return TileField(f"{level}_code", f"left(t.code, {digits})", "String")


def _column(name: str, kind: FieldType = "String") -> TileField:
    return TileField(name, f"t.{name}", kind)


_CODE = _column("code")
_NAME = _column("name")
_CODE_AS_ID = "t.code::bigint"  # 6 to 15 digits: always fits a bigint
_GRID_VERSIONS = COLLECTIONS["grids"]

LAYERS: Final[Mapping[str, TileLayer]] = {
    layer.name: layer
    for layer in (
        TileLayer(
            name="districts",
            table="districts",
            geometry="polygon",
            fields=(_CODE, _NAME, _column("name_en")),
            description="Districts (区) of Baoji",
            minzoom=5,
            maxzoom=16,
            feature_id_sql=_CODE_AS_ID,
        ),
        TileLayer(
            name="streets",
            table="streets",
            geometry="polygon",
            fields=(_CODE, _NAME, _code_of("district", 6)),
            description="Street offices (街道)",
            minzoom=9,
            maxzoom=16,
            feature_id_sql=_CODE_AS_ID,
        ),
        TileLayer(
            name="communities",
            table="communities",
            geometry="polygon",
            fields=(_CODE, _NAME, _code_of("street", 9), _code_of("district", 6)),
            description="Communities (社区)",
            minzoom=10,
            maxzoom=16,
            feature_id_sql=_CODE_AS_ID,
        ),
        TileLayer(
            name="grids",
            table="grids",
            geometry="polygon",
            fields=(
                _CODE,
                _NAME,
                _code_of("community", 12),
                _code_of("street", 9),
                _code_of("district", 6),
                _column("households", "Number"),
            ),
            description="Grids (网格), the boundary versions in force",
            minzoom=11,
            maxzoom=16,
            where=in_force(_GRID_VERSIONS, "t."),
            feature_id_sql=_CODE_AS_ID,
            validity=(_GRID_VERSIONS.time_columns[0], _GRID_VERSIONS.time_columns[1]),
        ),
        TileLayer(
            name="pois",
            table="pois",
            geometry="point",
            fields=(_column("poi_id"), _column("kind"), _NAME, _column("grid_code")),
            description="Points of interest put on the grid (一网统管)",
            minzoom=13,
            maxzoom=16,
        ),
        TileLayer(
            name="incidents",
            table="incidents",
            geometry="point",
            fields=(
                TileField("incident_id", "t.incident_id::text", "String"),
                _column("category"),
                _column("status"),
                _column("source"),
                # ISO 8601 with offset; to_json avoids a format string full of colons.
                TileField("reported_at", "to_json(t.reported_at) #>> '{}'", "String"),
                _column("grid_code"),
                _column("community_code"),
                _column("escalated_to"),
            ),
            description="Incidents (事件); supervisors see their area only",
            minzoom=12,
            maxzoom=16,
            restricted=True,
            area_sql="coalesce(t.grid_code, t.community_code)",
        ),
    )
}
"""The layers served, by name."""


def get_layer(name: str) -> TileLayer:
    """The layer called `name`, or UnknownLayer."""
    layer = LAYERS.get(name)
    if layer is None:
        raise UnknownLayer(f"no tile layer {name!r}; layers: {', '.join(sorted(LAYERS))}")
    return layer


def check_tile(z: int, x: int, y: int) -> None:
    """Raise InvalidTile unless (z, x, y) addresses a tile of the XYZ pyramid."""
    if not 0 <= z <= MAX_ZOOM:
        raise InvalidTile(f"zoom {z} is not in 0..{MAX_ZOOM}")
    side = 1 << z
    if not (0 <= x < side and 0 <= y < side):
        raise InvalidTile(f"tile {z}/{x}/{y}: x and y must be in 0..{side - 1} at zoom {z}")


def tile_lonlat_bounds(z: int, x: int, y: int, margin: float = 0.0) -> Bounds:
    """(west, south, east, north) of a tile grown by `margin` tiles, clamped to the world."""
    side = 1 << z
    # Clamp in tile space: the EPSG:4326 box of a tile that overhangs the world's edge
    # would wrap across the antimeridian and miss every row.
    x0, x1 = max(x - margin, 0.0), min(x + 1 + margin, float(side))
    y0, y1 = max(y - margin, 0.0), min(y + 1 + margin, float(side))
    return (_lon(x0, side), _lat(y1, side), _lon(x1, side), _lat(y0, side))


def _lon(x: float, side: int) -> float:
    return x / side * 360.0 - 180.0


def _lat(y: float, side: int) -> float:
    return math.degrees(math.atan(math.sinh(math.pi * (1.0 - 2.0 * y / side))))


def _world_fraction(lon: float, lat: float) -> tuple[float, float]:
    """Where a WGS 84 point is on the Web Mercator square, both axes in 0..1 from north-west."""
    lat = max(-WEB_MERCATOR_MAX_LAT, min(WEB_MERCATOR_MAX_LAT, lat))
    y = (1.0 - math.asinh(math.tan(math.radians(lat))) / math.pi) / 2.0
    return (lon + 180.0) / 360.0, y


def tile_containing(lon: float, lat: float, z: int) -> tuple[int, int, int]:
    """The (z, x, y) of the tile holding a WGS 84 point."""
    side = 1 << z
    fx, fy = _world_fraction(lon, lat)
    return z, min(max(int(fx * side), 0), side - 1), min(max(int(fy * side), 0), side - 1)


def tiles_covering(bounds: Bounds, z: int) -> list[tuple[int, int, int]]:
    """Every tile at zoom `z` that a (west, south, east, north) box touches."""
    _, x0, y0 = tile_containing(bounds[0], bounds[3], z)
    _, x1, y1 = tile_containing(bounds[2], bounds[1], z)
    return [(z, x, y) for x in range(x0, x1 + 1) for y in range(y0, y1 + 1)]


def fitting_zoom(bounds: Bounds, layer: TileLayer) -> int:
    """The deepest zoom, within the layer's range, at which the bounds fit in one tile."""
    west_x, north_y = _world_fraction(bounds[0], bounds[3])
    east_x, south_y = _world_fraction(bounds[2], bounds[1])
    span = max(east_x - west_x, south_y - north_y, 1.0 / (1 << MAX_ZOOM))
    return min(max(math.floor(math.log2(1.0 / span)), layer.minzoom), layer.maxzoom)


def _where(layer: TileLayer) -> str:
    """The layer's row filter, with the area prefix of restricted layers (None: all)."""
    if not layer.restricted:
        return layer.where
    # left() rather than LIKE: a prefix needs no escaping and reads as what it is.
    return (
        f"{layer.where} AND (CAST(:prefix AS text) IS NULL"
        f" OR left({layer.area_sql}, length(CAST(:prefix AS text))) = CAST(:prefix AS text))"
    )


def _mvt_sql(layer: TileLayer) -> str:
    attributes = ", ".join(f'{field.sql} AS "{field.name}"' for field in layer.fields)
    feature_id = f"{layer.feature_id_sql} AS fid, " if layer.feature_id_sql else ""
    projected = "ST_Transform(t.geom, 3857)"
    if layer.geometry == "polygon":
        # The simplification for the zoom. Snapping moves each vertex by itself, so every
        # copy of a vertex that neighbours share lands on the same point and shared edges
        # stay shared; Douglas-Peucker (ST_Simplify*) picks vertices per polygon and opens
        # slivers between adjacent grids (measured: up to 157 square units at z10 with a
        # two-unit tolerance). Snapping in degrees, before the projection, drops densely
        # sampled vertices before their costly transform, and its lattice is not the
        # tile's: snapped to the tile's own lattice, the clip points of a shared edge fall
        # on exact half units and round apart, leaving one-unit slivers along tile edges.
        projected = "ST_Transform(ST_SnapToGrid(t.geom, b.snap), 3857)"
    id_argument = ", 'fid'" if layer.feature_id_sql else ""
    return f"""
        WITH b AS (
            SELECT ST_TileEnvelope(:z, :x, :y) AS envelope,
                   ST_MakeEnvelope(:west, :south, :east, :north, 4326) AS lookup,
                   360.0 / (1 << :z) / {TILE_EXTENT} * {SNAP_UNITS} AS snap
        ), features AS (
            SELECT {feature_id}{attributes},
                   ST_AsMVTGeom({projected}, b.envelope, {TILE_EXTENT}, {TILE_BUFFER}, true)
                       AS geom
            FROM {layer.table} t, b
            WHERE t.geom && b.lookup AND {_where(layer)}
        )
        -- ST_AsMVT skips the NULL geometries of features outside the tile; a WHERE on
        -- them would make the planner compute ST_AsMVTGeom twice.
        SELECT ST_AsMVT(features, '{layer.name}', {TILE_EXTENT}, 'geom'{id_argument})
        FROM features
    """


def _changes_sql(layer: TileLayer) -> str:
    """The instants after `:t_now` at which a version of the layer starts or ends."""
    assert layer.validity is not None
    valid_from, valid_to = layer.validity
    return (
        f"SELECT {valid_from} AS at FROM {layer.table} WHERE {valid_from} > :t_now"
        f" UNION SELECT {valid_to} FROM {layer.table} WHERE {valid_to} > :t_now"
    )


def _epoch_us(column: str) -> str:
    # extract(epoch) is numeric since PostgreSQL 14: exact to the microsecond.
    return f"(extract(epoch FROM {column}) * 1000000)::bigint"


def _stamp_sql(layer: TileLayer) -> str:
    """The layer's data stamp as SQL: its table's stamp, and for dated versions `@` and the
    next change (`stamp_at` writes the same from memory)."""
    if layer.validity is None:
        return stamp_sql((layer.table,))
    valid_from, valid_to = layer.validity
    # The same pass over the rows as the table's stamp: a drawn tile pays one scan for both.
    upcoming = _epoch_us(
        f"least(min({valid_from}) FILTER (WHERE {valid_from} > :t_now),"
        f" min({valid_to}) FILTER (WHERE {valid_to} > :t_now))"
    )
    return f"(SELECT {TABLE_STAMP} || '@' || coalesce({upcoming}::text, '') FROM {layer.table})"


_TILE_SQL: Final[Mapping[str, TextClause]] = {
    name: text(_mvt_sql(lay)) for name, lay in LAYERS.items()
}
# The stamp and the tile in one statement: one round trip, and one snapshot, so the stamp
# names exactly the rows the tile was drawn from.
_STAMPED_TILE_SQL: Final[Mapping[str, TextClause]] = {
    name: text(f"SELECT {_stamp_sql(lay)} AS stamp, ({_mvt_sql(lay)}) AS tile")
    for name, lay in LAYERS.items()
}
_STAMP_SQL: Final[Mapping[str, TextClause]] = {
    name: text(f"SELECT {_stamp_sql(lay)}") for name, lay in LAYERS.items()
}


def render_tile(
    connection: Connection,
    layer: TileLayer,
    z: int,
    x: int,
    y: int,
    *,
    area_prefix: str | None = None,
    now: datetime | None = None,
) -> bytes:
    """The layer's MVT tile at z/x/y; empty bytes (a valid tile of no layers) if nothing.

    `area_prefix` limits a restricted layer to rows under that area code (None: all);
    dated versions are those in force at `now` (None: the wall clock's).
    Raises InvalidTile for an address outside the pyramid.
    """
    params = _tile_params(layer, z, x, y, now)
    if layer.restricted:
        params["prefix"] = area_prefix
    tile = connection.execute(_TILE_SQL[layer.name], params).scalar_one()
    return bytes(tile) if tile is not None else b""


def render_stamped_tile(
    connection: Connection,
    layer: TileLayer,
    z: int,
    x: int,
    y: int,
    *,
    now: datetime | None = None,
) -> tuple[str, bytes]:
    """`data_stamp` and `render_tile` of a public layer in one statement, so one round trip.

    The stamp describes exactly the rows the tile was drawn from (one snapshot, one `now`).
    """
    if layer.restricted:
        raise ValueError(f"layer {layer.name} is cut per caller; use render_tile")
    params = _tile_params(layer, z, x, y, now)
    row = connection.execute(_STAMPED_TILE_SQL[layer.name], params).one()
    return str(row.stamp), bytes(row.tile) if row.tile is not None else b""


def _tile_params(
    layer: TileLayer, z: int, x: int, y: int, now: datetime | None
) -> dict[str, object]:
    """The bind parameters of a tile statement; InvalidTile for an address off the pyramid."""
    check_tile(z, x, y)
    # The row lookup covers the clip buffer too: features there are drawn at the edge.
    west, south, east, north = tile_lonlat_bounds(z, x, y, margin=TILE_BUFFER / TILE_EXTENT)
    params: dict[str, object] = {"z": z, "x": x, "y": y, "west": west, "south": south}
    params.update(east=east, north=north, **_now_params(layer, now))
    return params


def _now_params(layer: TileLayer, now: datetime | None) -> dict[str, object]:
    return {} if layer.validity is None else {"t_now": now or datetime.now(UTC)}


def data_stamp(connection: Connection, layer: TileLayer, now: datetime | None = None) -> str:
    """A value that changes whenever the layer's rows or, for dated versions, the ones in
    force change: when a row is added, changed or removed, and at each instant a version
    starts or ends.

    The layer's table's `stamps.read_stamp` (it reads no geometry and also sees changes to
    names and households, which the tiles carry), then for dated versions `@` and the next
    such instant after `now` (None: the wall clock's) in microseconds since the epoch.
    """
    return str(connection.execute(_STAMP_SQL[layer.name], _now_params(layer, now)).scalar_one())


def version_changes(connection: Connection, layer: TileLayer, now: datetime) -> tuple[int, ...]:
    """The instants after `now` at which a version of the layer starts or ends, as
    microseconds since the epoch, in order (none for a layer without dated versions)."""
    if layer.validity is None:
        return ()
    rows = connection.execute(
        text(f"SELECT {_epoch_us('c.at')} FROM ({_changes_sql(layer)}) c ORDER BY 1"),
        {"t_now": now},
    )
    return tuple(int(at) for at in rows.scalars())


def stamp_at(layer: TileLayer, table_stamp: str, changes: Sequence[int], now: datetime) -> str:
    """`data_stamp` at `now` from the table's stamp and the layer's `version_changes` read
    earlier: what the database would answer at `now` if the table has not changed since."""
    if layer.validity is None:
        return table_stamp
    now_us = to_epoch_us(now)
    upcoming = next((at for at in changes if at > now_us), None)
    return f"{table_stamp}@{'' if upcoming is None else upcoming}"


def tile_version(layer: TileLayer, z: int, x: int, y: int, stamp: str) -> str:
    """A short digest naming one tile's content at a data stamp: that tile's ETag."""
    return _digest(TILES_FORMAT, layer.name, str(z), str(x), str(y), stamp)


def tilejson_version(layer: TileLayer, stamp: str, tiles_url: str) -> str:
    """A short digest naming a layer's TileJSON at a data stamp and tile URL: its ETag."""
    return _digest(TILES_FORMAT, layer.name, "tilejson", stamp, tiles_url)


def content_version(tile: bytes) -> str:
    """A short digest of a tile's bytes: the ETag of a tile that is rendered every time."""
    return hashlib.blake2b(tile, digest_size=16).hexdigest()


def _digest(*parts: str) -> str:
    return hashlib.blake2b("|".join(parts).encode(), digest_size=16).hexdigest()


def layer_bounds(
    connection: Connection,
    layer: TileLayer,
    area_prefix: str | None = None,
    now: datetime | None = None,
) -> Bounds:
    """(west, south, east, north) of the layer's features (dated versions: those in force
    at `now`, None: the wall clock's); the whole map if it has none."""
    params = _now_params(layer, now)
    if layer.restricted:
        params["prefix"] = area_prefix
    row = connection.execute(
        text(
            "SELECT ST_XMin(e), ST_YMin(e), ST_XMax(e), ST_YMax(e) FROM"
            f" (SELECT ST_Extent(t.geom) AS e FROM {layer.table} t WHERE {_where(layer)}) s"
        ),
        params,
    ).one()
    if row[0] is None:
        return (-180.0, -WEB_MERCATOR_MAX_LAT, 180.0, WEB_MERCATOR_MAX_LAT)
    return (float(row[0]), float(row[1]), float(row[2]), float(row[3]))
