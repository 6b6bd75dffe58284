"""Limits on spatial query input and its validation: points, bboxes, radii, posted GeoJSON.

Pure functions: each returns the checked value or raises a domain error whose `code` is a
stable public reason, so that no input, however malformed, gets further than here.
"""

import math
import re
from dataclasses import dataclass
from typing import Any, Final

import shapely
from pydantic_core import from_json
from shapely.geometry import shape
from shapely.geometry.base import BaseGeometry

from geodata.errors import InvalidGeometry, WanggeError

MAX_BBOX_AREA_DEG2: Final = 1.0
"""Largest bbox, in square degrees: about 100 km x 110 km here, several times Baoji."""

MAX_RADIUS_M: Final = 5000.0
"""Largest `within` radius: a few hundred grids at most in the densest part of the city."""

MAX_NEAREST: Final = 50
"""Most grids `nearest` answers with."""

MAX_PAGE: Final = 1000
DEFAULT_PAGE: Final = 100

MAX_OFFSET: Final = 1_000_000
"""Largest page offset; keeps the value within what PostgreSQL's OFFSET takes (bigint)."""

MAX_GEOMETRY_BYTES: Final = 256 * 1024
"""Largest posted geometry body."""

MAX_GEOMETRY_VERTICES: Final = 10_000
MAX_GEOMETRY_RINGS: Final = 100

GEOMETRY_TYPES: Final = (
    "Point",
    "MultiPoint",
    "LineString",
    "MultiLineString",
    "Polygon",
    "MultiPolygon",
)
"""Posted geometry types; `GeometryCollection` and Features are not accepted."""

# How deep each type nests arrays above its positions: 0 for a Point's one position.
_POSITION_DEPTH: Final = {
    "Point": 0,
    "MultiPoint": 1,
    "LineString": 1,
    "MultiLineString": 2,
    "Polygon": 2,
    "MultiPolygon": 3,
}

_LEAST_POSITIONS: Final = {"LineString": 2, "MultiLineString": 2, "Polygon": 4, "MultiPolygon": 4}

# A plain decimal number: float() alone would also take "nan", "inf" and "1_000".
_NUMBER = re.compile(r"[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?")

# The smallest radius of curvature of the WGS84 ellipsoid (meridional, at the equator):
# an angle computed with it over-estimates, never under-estimates, how far `r` reaches.
_MIN_EARTH_RADIUS_M: Final = 6_335_439.0
# Widens the degree box a further 1 % against the sphere-for-ellipsoid approximation.
_ENVELOPE_PAD: Final = 1.01
# Beyond this latitude a circle may wrap the pole: the box is every longitude.
_POLAR_LAT: Final = 89.0


def _geometry_schema(kind: str) -> dict[str, Any]:
    """JSON Schema of one accepted geometry type, with GeoJSON's minimum counts."""
    schema: dict[str, Any] = {
        "type": "array",
        "items": {"type": "number"},
        "minItems": 2,
        "maxItems": 3,
    }
    for level in range(_POSITION_DEPTH[kind]):
        # The innermost array of a line holds 2+ positions, of a ring 4+; others 1+.
        least = _LEAST_POSITIONS.get(kind, 1) if level == 0 else 1
        schema = {"type": "array", "items": schema, "minItems": least}
    return {
        "type": "object",
        "required": ["type", "coordinates"],
        "properties": {"type": {"type": "string", "enum": [kind]}, "coordinates": schema},
    }


GEOMETRY_JSON_SCHEMA: Final[dict[str, Any]] = {
    "title": "GeoJSON geometry",
    "description": (
        f"A GeoJSON geometry in EPSG:4326 (lon, lat); at most {MAX_GEOMETRY_BYTES} bytes, "
        f"{MAX_GEOMETRY_VERTICES} vertices and {MAX_GEOMETRY_RINGS} rings; rings closed; "
        "polygons valid (no self-intersection)."
    ),
    "oneOf": [_geometry_schema(kind) for kind in GEOMETRY_TYPES],
}
"""What `parse_geometry` accepts, as JSON Schema (its limits beyond counts in prose)."""


class CoordinateOutOfRange(WanggeError):
    """A coordinate that is not a finite lon in [-180, 180] or lat in [-90, 90]."""

    code = "coordinate_out_of_range"


class InvalidBbox(WanggeError):
    """A bbox that is not `minlon,minlat,maxlon,maxlat` with min < max, in range."""

    code = "invalid_bbox"


class BboxTooLarge(WanggeError):
    """A bbox larger than MAX_BBOX_AREA_DEG2."""

    code = "bbox_too_large"


class InvalidRadius(WanggeError):
    """A radius that is not a finite number of metres in (0, MAX_RADIUS_M]."""

    code = "invalid_radius"


class InvalidGeoJson(WanggeError):
    """A posted body that is not a GeoJSON geometry of an accepted type."""

    code = "invalid_geojson"


class InvalidJson(WanggeError):
    """A posted body that is not JSON at all."""

    code = "invalid_json"


class GeometryTooComplex(WanggeError):
    """A posted geometry with more vertices or rings than the limits allow."""

    code = "geometry_too_complex"


class PayloadTooLarge(WanggeError):
    """A posted body larger than its limit."""

    code = "payload_too_large"


class PointOutsideArea(WanggeError):
    """No grid covers a point, nor lies within the assignment tolerance of it."""

    code = "point_outside_area"


@dataclass(frozen=True, slots=True)
class Bbox:
    """A lon/lat box in EPSG:4326 degrees."""

    min_lon: float
    min_lat: float
    max_lon: float
    max_lat: float

    @property
    def area_deg2(self) -> float:
        """Area in square degrees (a size limit, not a measure of ground area)."""
        return (self.max_lon - self.min_lon) * (self.max_lat - self.min_lat)


def check_point(lon: float, lat: float) -> tuple[float, float]:
    """The point, if lon and lat are finite and in range; else CoordinateOutOfRange."""
    if not (math.isfinite(lon) and -180.0 <= lon <= 180.0):
        raise CoordinateOutOfRange(f"lon must be a finite number in [-180, 180], got {lon!r}")
    if not (math.isfinite(lat) and -90.0 <= lat <= 90.0):
        raise CoordinateOutOfRange(f"lat must be a finite number in [-90, 90], got {lat!r}")
    return lon, lat


def parse_bbox(text: str, max_area_deg2: float = MAX_BBOX_AREA_DEG2) -> Bbox:
    """Read `minlon,minlat,maxlon,maxlat`; InvalidBbox or BboxTooLarge when it is not fit."""
    parts = text.split(",")
    if len(parts) != 4 or not all(_NUMBER.fullmatch(part.strip()) for part in parts):
        raise InvalidBbox(f"bbox must be four numbers minlon,minlat,maxlon,maxlat, got {text!r}")
    min_lon, min_lat, max_lon, max_lat = (float(part) for part in parts)
    # A bbox across the antimeridian (minlon > maxlon) is refused too: no grid is near it.
    if not all(math.isfinite(v) for v in (min_lon, min_lat, max_lon, max_lat)):
        raise InvalidBbox(f"bbox values must be finite, got {text!r}")
    if not (-180.0 <= min_lon < max_lon <= 180.0):
        raise InvalidBbox(f"bbox needs -180 <= minlon < maxlon <= 180, got {text!r}")
    if not (-90.0 <= min_lat < max_lat <= 90.0):
        raise InvalidBbox(f"bbox needs -90 <= minlat < maxlat <= 90, got {text!r}")
    bbox = Bbox(min_lon, min_lat, max_lon, max_lat)
    if bbox.area_deg2 > max_area_deg2:
        raise BboxTooLarge(
            f"bbox covers {bbox.area_deg2:.3g} square degrees, more than {max_area_deg2:g}"
        )
    return bbox


def check_radius(radius_m: float, max_radius_m: float = MAX_RADIUS_M) -> float:
    """The radius, if finite and in (0, max_radius_m] metres; else InvalidRadius."""
    if not (math.isfinite(radius_m) and 0.0 < radius_m <= max_radius_m):
        raise InvalidRadius(
            f"radius_m must be a number of metres in (0, {max_radius_m:g}], got {radius_m!r}"
        )
    return radius_m


def degree_envelope(lon: float, lat: float, radius_m: float) -> Bbox:
    """A lon/lat box holding every point within `radius_m` metres of (lon, lat).

    Conservative, never tight: it only lets a spatial index pre-select candidates for
    an exact distance test in metres. From the haversine formula, a point `d` away has
    sin(dlon / 2) <= sin(d / 2R) / cos(max |lat|), with the smallest radius R.
    """
    angle = radius_m / _MIN_EARTH_RADIUS_M * _ENVELOPE_PAD
    dlat = math.degrees(angle)
    min_lat, max_lat = max(-90.0, lat - dlat), min(90.0, lat + dlat)
    top = abs(lat) + dlat
    if top >= _POLAR_LAT:
        return Bbox(-180.0, min_lat, 180.0, max_lat)
    reach = math.sin(min(angle, math.pi) / 2.0) / math.cos(math.radians(top))
    if reach >= 1.0:
        return Bbox(-180.0, min_lat, 180.0, max_lat)
    dlon = math.degrees(2.0 * math.asin(reach)) * _ENVELOPE_PAD
    if lon - dlon < -180.0 or lon + dlon > 180.0:
        # Across the antimeridian: every longitude rather than two boxes.
        return Bbox(-180.0, min_lat, 180.0, max_lat)
    return Bbox(lon - dlon, min_lat, lon + dlon, max_lat)


def parse_geometry_body(body: bytes, max_bytes: int = MAX_GEOMETRY_BYTES) -> BaseGeometry:
    """A posted GeoJSON geometry as a valid shapely geometry (EPSG:4326), or a domain error."""
    if len(body) > max_bytes:
        raise PayloadTooLarge(f"{len(body)} bytes, more than {max_bytes}")
    try:
        # NaN and Infinity tokens are read here so that they are refused, like NaN in a
        # query, as coordinate_out_of_range (Python's json would pass them on silently).
        document = from_json(body, allow_inf_nan=True)
    except ValueError as exc:
        raise InvalidJson(f"the body is not JSON: {exc}") from None
    return parse_geometry(document)


def parse_geometry(document: object) -> BaseGeometry:
    """A GeoJSON geometry object as a valid shapely geometry, or a domain error.

    Checked in order: the shape of the object and its type, the nesting of its
    coordinates, the vertex and ring limits (before anything is built), each position's
    range, GeoJSON's ring rules, then validity (a bow-tie is `invalid_geometry` with
    GEOS's reason).
    """
    if not isinstance(document, dict):
        raise InvalidGeoJson("the body must be a GeoJSON geometry object")
    kind = document.get("type")
    if kind not in GEOMETRY_TYPES:
        raise InvalidGeoJson(f"type must be one of {', '.join(GEOMETRY_TYPES)}, got {_short(kind)}")
    if "coordinates" not in document:
        raise InvalidGeoJson(f"a {kind} needs `coordinates`")
    counter = _Counter()
    coordinates = _positions(document["coordinates"], _POSITION_DEPTH[kind], counter)
    _check_parts(kind, coordinates, counter)
    try:
        geometry = shape({"type": kind, "coordinates": coordinates})
    except (ValueError, shapely.errors.GEOSException) as exc:
        # Not expected after the checks above; still a 422, never a 500.
        raise InvalidGeometry(f"invalid {kind}: {exc}") from None
    if not geometry.is_valid:
        raise InvalidGeometry(f"invalid {kind}: {shapely.is_valid_reason(geometry)}")
    return geometry


class _Counter:
    """Vertices and rings seen so far; stops the walk as soon as a limit is passed."""

    def __init__(self) -> None:
        self.vertices = 0
        self.rings = 0

    def add_vertex(self) -> None:
        self.vertices += 1
        if self.vertices > MAX_GEOMETRY_VERTICES:
            raise GeometryTooComplex(f"more than {MAX_GEOMETRY_VERTICES} vertices")

    def add_ring(self) -> None:
        self.rings += 1
        if self.rings > MAX_GEOMETRY_RINGS:
            raise GeometryTooComplex(f"more than {MAX_GEOMETRY_RINGS} rings")


def _positions(value: object, depth: int, counter: _Counter) -> Any:
    """The coordinates with every position checked and cut to (lon, lat)."""
    if depth == 0:
        return _position(value, counter)
    if not isinstance(value, list):
        raise InvalidGeoJson(f"coordinates nest wrongly: expected an array, got {_short(value)}")
    if not value:
        raise InvalidGeoJson("coordinates hold an empty array: empty geometries are refused")
    return [_positions(item, depth - 1, counter) for item in value]


def _position(value: object, counter: _Counter) -> tuple[float, float]:
    if not isinstance(value, list) or not 2 <= len(value) <= 3:
        raise InvalidGeoJson(f"a position is [lon, lat] or [lon, lat, z], got {_short(value)}")
    counter.add_vertex()
    lon, lat = (_number(v) for v in value[:2])
    # An altitude is allowed and dropped, but it must be a number all the same.
    if len(value) == 3 and not math.isfinite(_number(value[2])):
        raise CoordinateOutOfRange(f"position {_short(value)}: altitude must be finite")
    try:
        return check_point(lon, lat)
    except CoordinateOutOfRange as exc:
        raise CoordinateOutOfRange(f"position {_short(value)}: {exc}") from None


def _number(value: object) -> float:
    # bool is an int in Python, but `true` is no coordinate.
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise InvalidGeoJson(f"a coordinate must be a number, got {_short(value)}")
    try:
        return float(value)
    except OverflowError:  # an integer too large for a double
        return math.inf


def _check_parts(kind: str, coordinates: Any, counter: _Counter) -> None:
    """GeoJSON's own rules: lines of 2+ positions, closed rings of 4+; count rings."""
    if kind == "LineString":
        _check_line(coordinates)
    elif kind == "MultiLineString":
        for line in coordinates:
            _check_line(line)
    elif kind == "Polygon":
        _check_rings(coordinates, counter)
    elif kind == "MultiPolygon":
        for polygon in coordinates:
            _check_rings(polygon, counter)


def _check_line(line: list[tuple[float, float]]) -> None:
    if len(line) < 2:
        raise InvalidGeoJson(f"a line needs at least 2 positions, got {len(line)}")


def _check_rings(rings: list[list[tuple[float, float]]], counter: _Counter) -> None:
    for ring in rings:
        counter.add_ring()
        if len(ring) < 4:
            raise InvalidGeoJson(f"a ring needs at least 4 positions, got {len(ring)}")
        if ring[0] != ring[-1]:
            raise InvalidGeoJson("a ring must be closed: its first and last positions differ")


def _short(value: object, limit: int = 60) -> str:
    """A value for an error message, cut so that a huge input stays out of the answer."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."
