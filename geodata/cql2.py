"""CQL2 filters (OGC API - Features Part 3): parsed by pygeofilter, checked here.

The parsing is pygeofilter's, text and JSON alike. Its tree is then checked against a
collection's queryables before anything becomes SQL: every property is a queryable, a
comparison compares like with like, a spatial literal is a valid geometry within
longitude and latitude, and only the operators wangge evaluates appear (comparisons,
LIKE, BETWEEN, IN, IS NULL, CASEI, the S_* spatial predicates with the geometry first).
Spatial literals come out as GeoJSON in CRS84 whatever `filter-crs` they were given in,
so that the evaluation (geodata/db/cql2_sql.py) has one kind of literal to handle.
"""

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date
from typing import Any, Final, Literal

from pygeofilter import ast, values
from pygeofilter.parsers.cql2_json import parse as parse_cql2_json
from pygeofilter.parsers.cql2_text import parse as parse_cql2_text
from shapely.geometry import mapping

from geodata.errors import WanggeError
from geodata.query_limits import parse_geometry

QueryableType = Literal["string", "integer", "date-time", "geometry"]
"""What a queryable holds; `geometry` is the feature's geometry."""

FilterLang = Literal["cql2-text", "cql2-json"]

MAX_FILTER_CHARS: Final = 16_384
"""Longest filter taken: room for a polygon of a few hundred vertices."""

MAX_FILTER_DEPTH: Final = 300
"""Deepest nesting of conditions taken: a chain of 300 ORs nests 300 deep (the parser
nests each AND and OR in the next), and evaluating one takes some ten frames a level."""


class InvalidFilter(WanggeError):
    """A filter that does not parse, or asks for what wangge does not evaluate."""

    code = "invalid_filter"


class UnknownProperty(WanggeError):
    """A filter, sort or property selection names a property the collection lacks."""

    code = "unknown_property"


@dataclass(frozen=True)
class CheckedFilter:
    """pygeofilter's tree of a filter that passed the checks, spatial literals in CRS84."""

    node: ast.Node


def parse_filter(
    text: str,
    lang: FilterLang,
    queryables: Mapping[str, QueryableType],
    *,
    lat_lon: bool = False,
) -> CheckedFilter:
    """The filter `text` in `lang`, checked against `queryables`, or a domain error.

    `lat_lon`: the literals' coordinates are latitude first (`filter-crs` EPSG:4326 or
    EPSG:4490).
    """
    if len(text) > MAX_FILTER_CHARS:
        raise InvalidFilter(f"the filter has {len(text)} characters, more than {MAX_FILTER_CHARS}")
    try:
        if lang == "cql2-json":
            node = parse_cql2_json(_bboxes_as_envelopes(json.loads(text), 0))
        else:
            node = parse_cql2_text(text)
    except InvalidFilter:
        raise
    except RecursionError:
        raise InvalidFilter(f"the filter nests more than {MAX_FILTER_DEPTH} deep") from None
    except Exception as exc:  # the parsers raise lark's, json's, KeyError, ValueError...
        raise InvalidFilter(f"{lang}: {_first_lines(exc)}") from None
    if not isinstance(node, ast.Predicate | ast.Condition):
        raise InvalidFilter(f"{lang}: a filter is a condition, such as households > 100")
    return CheckedFilter(_Checker(queryables, lat_lon).condition(node, 0))


def _first_lines(exc: Exception, lines: int = 3) -> str:
    # lark lists every token it expected, dozens of lines; the first say where and what.
    message = str(exc) or type(exc).__name__
    return " ".join(line.strip() for line in message.splitlines()[:lines])


def _bboxes_as_envelopes(node: Any, depth: int) -> Any:
    """The JSON with each `{"bbox": [...]}` given as pygeofilter's Envelope of it.

    pygeofilter 0.4 fills its Envelope (x1, x2, y1, y2) from a JSON bbox (minx, miny,
    maxx, maxy) in that order, so the box it reads is another; it passes an Envelope
    given in the JSON through untouched.
    """
    if depth > MAX_FILTER_DEPTH:
        raise InvalidFilter(f"the filter nests more than {MAX_FILTER_DEPTH} deep")
    if isinstance(node, list):
        return [_bboxes_as_envelopes(item, depth + 1) for item in node]
    if not isinstance(node, dict):
        return node
    if set(node) == {"bbox"}:
        box = node["bbox"]
        if not isinstance(box, list) or len(box) not in (4, 6):
            raise InvalidFilter(f"a bbox has 4 or 6 numbers, got {box!r:.60}")
        x0, y0, x1, y1 = (box[0], box[1], box[3], box[4]) if len(box) == 6 else box
        return values.Envelope(x1=x0, x2=x1, y1=y0, y2=y1)
    return {key: _bboxes_as_envelopes(value, depth + 1) for key, value in node.items()}


def _box_geometry(numbers: object, *, lat_lon: bool) -> values.Geometry:
    """A bbox (4 numbers, or 6 with heights) as a polygon; two across the antimeridian."""
    if not isinstance(numbers, list | tuple) or len(numbers) not in (4, 6):
        raise InvalidFilter(f"a bbox has 4 or 6 numbers, got {numbers!r:.60}")
    if not all(_is_number(number) and math.isfinite(number) for number in numbers):
        raise InvalidFilter(f"a bbox has finite numbers, got {numbers!r:.60}")
    x0, y0, x1, y1 = (
        (numbers[0], numbers[1], numbers[3], numbers[4]) if len(numbers) == 6 else numbers
    )
    if lat_lon:
        x0, y0, x1, y1 = y0, x0, y1, x1
    if not (-180 <= x0 <= 180 and -180 <= x1 <= 180 and -90 <= y0 <= y1 <= 90):
        raise InvalidFilter(f"the bbox {numbers!r:.60} is not within longitude and latitude")

    def ring(a: float, b: float) -> list[list[float]]:
        return [[a, y0], [b, y0], [b, y1], [a, y1], [a, y0]]

    if x0 <= x1:
        return values.Geometry({"type": "Polygon", "coordinates": [ring(x0, x1)]})
    # Across the antimeridian, as the standard's bbox: the boxes either side of it.
    return values.Geometry(
        {"type": "MultiPolygon", "coordinates": [[ring(x0, 180)], [ring(-180, x1)]]}
    )


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _listed(value: Any) -> Any:
    # The text parser gives tuples; the GeoJSON check takes JSON's lists.
    if isinstance(value, list | tuple):
        return [_listed(item) for item in value]
    return value


def _flipped(value: Any) -> Any:
    if isinstance(value, list) and len(value) >= 2 and all(map(_is_number, value[:2])):
        return [value[1], value[0], *value[2:]]
    if isinstance(value, list):
        return [_flipped(item) for item in value]
    return value


Kind = Literal["string", "number", "time", "boolean", "geometry"]

_KIND_OF: Final[Mapping[QueryableType, Kind]] = {
    "string": "string",
    "integer": "number",
    "date-time": "time",
    "geometry": "geometry",
}
_ORDERED: Final = frozenset({"string", "number", "time"})
_LARGEST: Final = 2**63 - 1


class _Checker:
    """One walk of a parsed filter: refuses what is not allowed, normalises literals."""

    def __init__(self, queryables: Mapping[str, QueryableType], lat_lon: bool) -> None:
        self.queryables = queryables
        self.lat_lon = lat_lon

    def condition(self, node: Any, depth: int) -> Any:
        """The condition checked (spatial literals replaced by CRS84 GeoJSON)."""
        if depth > MAX_FILTER_DEPTH:
            raise InvalidFilter(f"the filter nests more than {MAX_FILTER_DEPTH} deep")
        if isinstance(node, ast.Not):
            node.sub_node = self.condition(node.sub_node, depth + 1)
        elif isinstance(node, ast.And | ast.Or):
            node.lhs = self.condition(node.lhs, depth + 1)
            node.rhs = self.condition(node.rhs, depth + 1)
        elif isinstance(node, ast.Comparison):
            if not (self._is_expression(node.lhs) or self._is_expression(node.rhs)):
                raise InvalidFilter(f"{node!r:.80} compares no property")
            self._alike(node, self.kind(node.lhs), self.kind(node.rhs))
        elif isinstance(node, ast.Between):
            self._needs_expression(node, node.lhs)
            self._alike(node, self.kind(node.lhs), self.kind(node.low), self.kind(node.high))
        elif isinstance(node, ast.Like):
            self._needs_expression(node, node.lhs)
            if self.kind(node.lhs) != "string" or self.kind(node.pattern) != "string":
                raise InvalidFilter("LIKE takes a text property and a text pattern")
        elif isinstance(node, ast.In):
            self._needs_expression(node, node.lhs)
            self._alike(node, self.kind(node.lhs), *(self.kind(item) for item in node.sub_nodes))
        elif isinstance(node, ast.IsNull):
            if not isinstance(node.lhs, ast.Attribute):
                raise InvalidFilter("IS NULL takes a property")
            self.kind(node.lhs)
        elif isinstance(node, ast.SpatialComparisonPredicate):
            self._geometry_property(node.lhs)
            node.rhs = self.spatial_literal(node.rhs)
        elif isinstance(node, ast.BBox):
            self._geometry_property(node.lhs)
            box = [node.minx, node.miny, node.maxx, node.maxy]
            return ast.GeometryIntersects(node.lhs, _box_geometry(box, lat_lon=self.lat_lon))
        else:
            raise InvalidFilter(
                f"{type(node).__name__} is not supported: comparisons, LIKE, BETWEEN, IN, "
                "IS NULL, CASEI and S_INTERSECTS, S_WITHIN... with the geometry first are"
            )
        return node

    def kind(self, node: Any) -> Kind:
        """What a value or property of the filter holds."""
        if isinstance(node, ast.Attribute):
            queryable = self.queryables.get(node.name)
            if queryable is None:
                known = ", ".join(self.queryables)
                raise UnknownProperty(f"{node.name!r} is not a queryable here; queryables: {known}")
            return _KIND_OF[queryable]
        if isinstance(node, bool):
            return "boolean"
        if _is_number(node):
            # PostgreSQL's bigint and double bound them.
            if not math.isfinite(node) or abs(node) > _LARGEST:
                raise InvalidFilter(f"numbers must be finite and within ±2^63, got {node!r:.30}")
            return "number"
        if isinstance(node, str):
            return "string"
        if isinstance(node, date):  # a datetime is a date too
            return "time"
        if isinstance(node, ast.Function) and node.name == "lower" and len(node.arguments) == 1:
            # CASEI(x): pygeofilter parses it as lower(x).
            if self.kind(node.arguments[0]) != "string":
                raise InvalidFilter("CASEI takes text")
            return "string"
        if isinstance(node, ast.Function):
            raise InvalidFilter(f"function {node.name!r} is not supported here")
        if isinstance(node, values.Geometry | values.Envelope):
            return "geometry"
        raise InvalidFilter(f"{type(node).__name__} is not supported in a filter")

    def spatial_literal(self, node: Any) -> values.Geometry:
        """A geometry, ENVELOPE or BBOX literal as a checked CRS84 GeoJSON geometry."""
        if isinstance(node, ast.Function) and node.name == "bbox":
            return _box_geometry(node.arguments, lat_lon=self.lat_lon)
        if isinstance(node, values.Envelope):  # x from x1 to x2, y between y1 and y2
            numbers = [node.x1, node.x2, node.y1, node.y2]
            if not all(_is_number(number) for number in numbers):
                raise InvalidFilter(f"a bbox has numbers, got {numbers!r:.60}")
            box = [node.x1, min(node.y1, node.y2), node.x2, max(node.y1, node.y2)]
            return _box_geometry(box, lat_lon=self.lat_lon)
        if not isinstance(node, values.Geometry):
            raise InvalidFilter(
                "a spatial predicate takes the geometry property first, then a geometry or "
                "BBOX literal, such as S_INTERSECTS(geometry, BBOX(107.1,34.3,107.2,34.4))"
            )
        document = dict(node.geometry)
        document["coordinates"] = _listed(document.get("coordinates"))
        if "crs" in document:
            raise InvalidFilter("give a literal's CRS with filter-crs, not in the literal")
        if self.lat_lon:
            document["coordinates"] = _flipped(document.get("coordinates"))
        try:
            geometry = parse_geometry(document)
        except WanggeError as exc:
            raise InvalidFilter(f"geometry literal: {exc}") from None
        return values.Geometry(dict(mapping(geometry)))

    def _geometry_property(self, node: Any) -> None:
        if not isinstance(node, ast.Attribute) or self.kind(node) != "geometry":
            raise InvalidFilter(
                "a spatial predicate takes the geometry property first, such as "
                "S_INTERSECTS(geometry, BBOX(107.1,34.3,107.2,34.4))"
            )

    @staticmethod
    def _is_expression(node: Any) -> bool:
        return isinstance(node, ast.Attribute | ast.Function)

    def _needs_expression(self, predicate: Any, node: Any) -> None:
        if not self._is_expression(node):
            raise InvalidFilter(f"{type(predicate).__name__} takes a property on its left")

    @staticmethod
    def _alike(predicate: Any, *kinds: Kind) -> None:
        first = kinds[0]
        if first not in _ORDERED or any(kind != first for kind in kinds):
            shown = ", ".join(kinds)
            raise InvalidFilter(
                f"{type(predicate).__name__} compares text with text, numbers with numbers or "
                f"times with times, got {shown}"
            )
