"""CQL2 filters: what the checks refuse, and the spatial literals they hand on in CRS84."""

import json
from typing import Any

import pytest
from pygeofilter import ast, values
from shapely.geometry import shape

from geodata.cql2 import (
    MAX_FILTER_CHARS,
    InvalidFilter,
    QueryableType,
    UnknownProperty,
    parse_filter,
)
from wangge.settings import CorsSettings

QUERYABLES: dict[str, QueryableType] = {
    "code": "string",
    "name": "string",
    "households": "integer",
    "valid_from": "date-time",
    "geometry": "geometry",
}


def literal(text: str, lang: Any = "cql2-text", lat_lon: bool = False) -> Any:
    """The geometry literal of a one-predicate spatial filter, as the checks left it."""
    node = parse_filter(text, lang, QUERYABLES, lat_lon=lat_lon).node
    assert isinstance(node, ast.GeometryIntersects)
    assert isinstance(node.rhs, values.Geometry)
    return shape(node.rhs.geometry)


def test_a_json_bbox_is_the_box_it_says_not_pygeofilters_reading() -> None:
    as_json = {"op": "s_intersects", "args": [{"property": "geometry"}, {"bbox": [1, 2, 3, 4]}]}
    assert literal(json.dumps(as_json), "cql2-json").bounds == (1, 2, 3, 4)
    assert literal("S_INTERSECTS(geometry, BBOX(1, 2, 3, 4))").bounds == (1, 2, 3, 4)


def test_lat_lon_literals_are_turned_to_lon_lat() -> None:
    assert literal("S_INTERSECTS(geometry, POINT(34 107))", lat_lon=True).coords[0] == (107, 34)
    bounds = literal("S_INTERSECTS(geometry, BBOX(34, 107, 35, 108))", lat_lon=True).bounds
    assert bounds == (107, 34, 108, 35)


def test_a_bbox_across_the_antimeridian_is_the_two_boxes_either_side() -> None:
    geometry = literal("BBOX(geometry, 179, 1, -179, 2)")
    assert geometry.geom_type == "MultiPolygon"
    assert sorted(part.bounds for part in geometry.geoms) == [(-180, 1, -179, 2), (179, 1, 180, 2)]


@pytest.mark.parametrize(
    "text",
    [
        "households >",
        "households = 'many'",
        "name LIKE 3",
        "'a' LIKE 'b'",
        "households > 1e400",
        "households = 99999999999999999999",
        "S_INTERSECTS(POINT(1 1), geometry)",
        "S_INTERSECTS(geometry, POINT(500 1))",
        "S_INTERSECTS(geometry, BBOX(1, 3, 2, 1))",
        "S_INTERSECTS(geometry, POLYGON((1 1, 2 2, 1 2, 2 1, 1 1)))",
        "households + 1 > 2",
        "FOO(name) = 'x'",
        "INCLUDE",
    ],
)
def test_what_the_checks_refuse_is_an_invalid_filter(text: str) -> None:
    with pytest.raises(InvalidFilter):
        parse_filter(text, "cql2-text", QUERYABLES)


@pytest.mark.parametrize("text", ["[1", "3", "[]", '{"op": "="}', '{"op": "zzz", "args": []}'])
def test_json_that_is_no_condition_is_an_invalid_filter(text: str) -> None:
    with pytest.raises(InvalidFilter, match="cql2-json"):
        parse_filter(text, "cql2-json", QUERYABLES)


def test_a_property_that_is_no_queryable_is_named_in_the_refusal() -> None:
    with pytest.raises(UnknownProperty, match="'phone'"):
        parse_filter("phone = '1' OR households > 3", "cql2-text", QUERYABLES)


def test_too_long_or_too_deep_a_filter_is_refused() -> None:
    with pytest.raises(InvalidFilter, match="characters"):
        parse_filter("households > 1 OR " * (MAX_FILTER_CHARS // 10), "cql2-text", QUERYABLES)
    with pytest.raises(InvalidFilter, match="nests"):
        parse_filter(" OR ".join(["households > 1"] * 400), "cql2-text", QUERYABLES)
    # A long chain of ORs, as a list of values written out, is taken.
    parse_filter(" OR ".join(["households > 1"] * 250), "cql2-text", QUERYABLES)


def test_cors_origins_are_read_comma_separated_and_checked(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("WANGGE_CORS_ALLOW_ORIGINS", "https://gis.example.cn/, http://10.0.0.5:8080")
    assert CorsSettings().origins() == ("https://gis.example.cn", "http://10.0.0.5:8080")
    monkeypatch.delenv("WANGGE_CORS_ALLOW_ORIGINS")
    assert CorsSettings(_env_file=None).origins() == ()
    monkeypatch.setenv("WANGGE_CORS_ALLOW_ORIGINS", "gis.example.cn")
    with pytest.raises(ValueError, match="not an origin"):
        CorsSettings()
