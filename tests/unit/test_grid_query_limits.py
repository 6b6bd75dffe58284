"""Limits and validation of spatial query input: each refusal has its stable code."""

import contextlib
import json
import math

import pytest
import shapely
from hypothesis import given, settings
from hypothesis import strategies as st
from pyproj import Geod

from geodata.errors import InvalidGeometry, WanggeError
from geodata.query_limits import (
    GEOMETRY_TYPES,
    MAX_GEOMETRY_BYTES,
    MAX_GEOMETRY_RINGS,
    MAX_GEOMETRY_VERTICES,
    BboxTooLarge,
    CoordinateOutOfRange,
    GeometryTooComplex,
    InvalidBbox,
    InvalidGeoJson,
    InvalidJson,
    InvalidRadius,
    PayloadTooLarge,
    check_point,
    check_radius,
    degree_envelope,
    parse_bbox,
    parse_geometry,
    parse_geometry_body,
)

SQUARE = [[107.1, 34.3], [107.2, 34.3], [107.2, 34.4], [107.1, 34.4], [107.1, 34.3]]
BOW_TIE = [[107.1, 34.3], [107.2, 34.4], [107.2, 34.3], [107.1, 34.4], [107.1, 34.3]]


def _ring(n: int, lon: float = 107.2, lat: float = 34.37, r: float = 0.01) -> list[list[float]]:
    """A closed ring of n + 1 positions (a regular n-gon)."""
    points = [
        [lon + r * math.cos(2 * math.pi * i / n), lat + r * math.sin(2 * math.pi * i / n)]
        for i in range(n)
    ]
    return [*points, points[0]]


# --------------------------------------------------------------------------- points, radii


@pytest.mark.parametrize(
    ("lon", "lat"),
    [(-180.0, -90.0), (180.0, 90.0), (107.15, 34.37), (0.0, 0.0)],
)
def test_points_in_range_pass(lon: float, lat: float) -> None:
    assert check_point(lon, lat) == (lon, lat)


@pytest.mark.parametrize(
    ("lon", "lat"),
    [
        (181.0, 34.0),
        (-180.0000001, 34.0),
        (107.0, 90.5),
        (107.0, -91.0),
        (math.nan, 34.0),
        (107.0, math.nan),
        (math.inf, 34.0),
        (107.0, -math.inf),
    ],
)
def test_points_out_of_range_or_not_finite_are_coordinate_out_of_range(
    lon: float, lat: float
) -> None:
    with pytest.raises(CoordinateOutOfRange) as refused:
        check_point(lon, lat)
    assert refused.value.code == "coordinate_out_of_range"


@pytest.mark.parametrize("radius", [0.0, -1.0, 5000.001, 1e9, math.nan, math.inf, -math.inf])
def test_radius_outside_zero_to_cap_is_invalid_radius(radius: float) -> None:
    with pytest.raises(InvalidRadius) as refused:
        check_radius(radius)
    assert refused.value.code == "invalid_radius"


@pytest.mark.parametrize("radius", [1e-9, 1.0, 5000.0])
def test_radius_in_zero_to_cap_passes(radius: float) -> None:
    assert check_radius(radius) == radius


# --------------------------------------------------------------------------- bbox


def test_bbox_reads_four_numbers_with_spaces_and_exponents() -> None:
    bbox = parse_bbox(" 107.1, 34.3 ,1.072e2,+34.4")
    assert (bbox.min_lon, bbox.min_lat, bbox.max_lon, bbox.max_lat) == (107.1, 34.3, 107.2, 34.4)


@pytest.mark.parametrize(
    "text",
    [
        "",
        "107.1,34.3,107.2",
        "107.1,34.3,107.2,34.4,0,10",
        "107.1,34.3,107.2,abc",
        "nan,34.3,107.2,34.4",
        "107.1,inf,107.2,34.4",
        "107.1,34.3,Infinity,34.4",
        "1_07.1,34.3,107.2,34.4",
        "107.1,34.3,107.2,1e999",
        "107.2,34.3,107.1,34.4",  # inverted longitudes
        "107.1,34.4,107.2,34.3",  # inverted latitudes
        "107.1,34.3,107.1,34.4",  # empty: min == max
        "179.5,34.3,181,34.4",
        "107.1,-90.5,107.2,34.4",
        "0x10,34.3,107.2,34.4",
    ],
)
def test_malformed_inverted_or_out_of_range_bbox_is_invalid_bbox(text: str) -> None:
    with pytest.raises(InvalidBbox) as refused:
        parse_bbox(text)
    assert refused.value.code == "invalid_bbox"


def test_bbox_larger_than_one_square_degree_is_bbox_too_large() -> None:
    assert parse_bbox("107,34,108,35").area_deg2 == 1.0
    with pytest.raises(BboxTooLarge) as refused:
        parse_bbox("107,34,108.01,35")
    assert refused.value.code == "bbox_too_large"


# --------------------------------------------------------------------------- envelope

GEOD = Geod(ellps="WGS84")


@settings(max_examples=300, deadline=None)
@given(
    lon=st.floats(-179.0, 179.0),
    lat=st.floats(-85.0, 85.0),
    radius=st.floats(1.0, 2_000_000.0),
    azimuth=st.floats(0.0, 360.0),
)
def test_degree_envelope_holds_every_point_at_the_radius(
    lon: float, lat: float, radius: float, azimuth: float
) -> None:
    box = degree_envelope(lon, lat, radius)
    end_lon, end_lat, _ = GEOD.fwd(lon, lat, azimuth, radius)
    assert box.min_lat <= end_lat <= box.max_lat
    if box.min_lon > -180.0 or box.max_lon < 180.0:
        assert box.min_lon <= end_lon <= box.max_lon


def test_degree_envelope_is_not_wastefully_wide_in_the_city() -> None:
    box = degree_envelope(107.2, 34.37, 5000.0)
    # 5 km is 0.045 degree of latitude and 0.054 of longitude at 34 N; a few % more.
    assert 0.045 < (box.max_lat - box.min_lat) / 2 < 0.047
    assert 0.054 < (box.max_lon - box.min_lon) / 2 < 0.057


def test_degree_envelope_near_a_pole_or_the_antimeridian_takes_every_longitude() -> None:
    polar = degree_envelope(10.0, 88.9, 50_000)
    assert (polar.min_lon, polar.max_lon) == (-180.0, 180.0)
    wrapped = degree_envelope(179.99, 0.0, 5000.0)
    assert (wrapped.min_lon, wrapped.max_lon) == (-180.0, 180.0)


# --------------------------------------------------------------------------- geometry


@pytest.mark.parametrize(
    "document",
    [
        {"type": "Point", "coordinates": [107.15, 34.37]},
        {"type": "Point", "coordinates": [107.15, 34.37, 512.0]},
        {"type": "MultiPoint", "coordinates": [[107.15, 34.37], [107.16, 34.38]]},
        {"type": "LineString", "coordinates": [[107.15, 34.37], [107.16, 34.38]]},
        {"type": "MultiLineString", "coordinates": [[[107.15, 34.37], [107.16, 34.38]]]},
        {"type": "Polygon", "coordinates": [SQUARE]},
        {"type": "Polygon", "coordinates": [_ring(8, r=0.05), _ring(6, r=0.01)]},
        {"type": "MultiPolygon", "coordinates": [[SQUARE], [_ring(5, lon=108.0)]]},
        {"type": "Point", "coordinates": [107, 34]},  # integers are numbers too
    ],
)
def test_accepted_geometries_become_valid_shapely_geometries(document: dict[str, object]) -> None:
    geometry = parse_geometry(document)
    assert geometry.geom_type == document["type"]
    assert geometry.is_valid
    assert not geometry.has_z


def test_body_is_parsed_as_json_bytes() -> None:
    body = json.dumps({"type": "Polygon", "coordinates": [SQUARE]}).encode()
    assert parse_geometry_body(body).equals(shapely.Polygon(SQUARE))


def test_bow_tie_polygon_is_invalid_geometry_with_geos_reason() -> None:
    with pytest.raises(InvalidGeometry) as refused:
        parse_geometry({"type": "Polygon", "coordinates": [BOW_TIE]})
    assert refused.value.code == "invalid_geometry"
    assert "Self-intersection" in str(refused.value)


@pytest.mark.parametrize(
    "document",
    [
        # a hole outside its shell, and two overlapping parts of a MultiPolygon
        {"type": "Polygon", "coordinates": [SQUARE, _ring(4, lon=110.0)]},
        {"type": "MultiPolygon", "coordinates": [[SQUARE], [_ring(6, lon=107.15, lat=34.35)]]},
        {"type": "LineString", "coordinates": [[107.1, 34.3], [107.1, 34.3]]},
        {"type": "Polygon", "coordinates": [[[107.1, 34.3]] * 4]},
    ],
)
def test_other_invalid_geometries_are_invalid_geometry(document: dict[str, object]) -> None:
    with pytest.raises(InvalidGeometry):
        parse_geometry(document)


@pytest.mark.parametrize(
    "document",
    [
        [],
        "Point",
        None,
        {"coordinates": [1, 2]},
        {"type": "Feature", "geometry": {"type": "Point", "coordinates": [1, 2]}},
        {"type": "GeometryCollection", "geometries": []},
        {"type": "point", "coordinates": [1, 2]},
        {"type": "Point"},
        {"type": "Point", "coordinates": []},
        {"type": "Point", "coordinates": [1]},
        {"type": "Point", "coordinates": [1, 2, 3, 4]},
        {"type": "Point", "coordinates": [[1, 2]]},
        {"type": "Point", "coordinates": ["107", "34"]},
        {"type": "Point", "coordinates": [True, 34]},
        {"type": "Point", "coordinates": [None, 34]},
        {"type": "LineString", "coordinates": [[107.1, 34.3]]},
        {"type": "LineString", "coordinates": [107.1, 34.3]},
        {"type": "MultiPoint", "coordinates": []},
        {"type": "Polygon", "coordinates": [SQUARE[:3]]},
        {"type": "Polygon", "coordinates": [SQUARE[:4]]},  # not closed
        {"type": "Polygon", "coordinates": SQUARE},  # one level too shallow
        {"type": "MultiPolygon", "coordinates": [SQUARE]},
        {"type": "MultiPolygon", "coordinates": [[]]},
    ],
)
def test_anything_but_an_accepted_geojson_geometry_is_invalid_geojson(document: object) -> None:
    with pytest.raises(InvalidGeoJson) as refused:
        parse_geometry(document)
    assert refused.value.code == "invalid_geojson"


@pytest.mark.parametrize(
    "body",
    [
        b'{"type": "Point", "coordinates": [NaN, 34.3]}',
        b'{"type": "Point", "coordinates": [107.1, Infinity]}',
        b'{"type": "Point", "coordinates": [-Infinity, 34.3]}',
        b'{"type": "Point", "coordinates": [1e400, 34.3]}',
        b'{"type": "Point", "coordinates": [1' + b"0" * 400 + b", 34.3]}",
        b'{"type": "Point", "coordinates": [181, 34.3]}',
        b'{"type": "Point", "coordinates": [107.1, 34.3, NaN]}',
        b'{"type": "LineString", "coordinates": [[107.1, 34.3], [107.2, -90.01]]}',
    ],
)
def test_nan_infinity_and_out_of_range_positions_are_coordinate_out_of_range(body: bytes) -> None:
    with pytest.raises(CoordinateOutOfRange) as refused:
        parse_geometry_body(body)
    assert refused.value.code == "coordinate_out_of_range"


@pytest.mark.parametrize(
    "body", [b"", b"nope", b"{", b'{"type": "Point",}', b"\xff\xfe", b"[" * 300 + b"]" * 300]
)
def test_a_body_that_is_not_json_is_invalid_json(body: bytes) -> None:
    with pytest.raises(InvalidJson) as refused:
        parse_geometry_body(body)
    assert refused.value.code == "invalid_json"


def test_a_body_over_256_kib_is_payload_too_large() -> None:
    body = b" " * (MAX_GEOMETRY_BYTES - 40) + b'{"type":"Point","coordinates":[107,34]}'
    assert len(body) <= MAX_GEOMETRY_BYTES
    parse_geometry_body(body)
    with pytest.raises(PayloadTooLarge) as refused:
        parse_geometry_body(b" " + body + b" " * 40)
    assert refused.value.code == "payload_too_large"


def test_ten_thousand_vertices_pass_and_one_more_is_geometry_too_complex() -> None:
    ring = _ring(MAX_GEOMETRY_VERTICES - 1)
    assert len(ring) == MAX_GEOMETRY_VERTICES
    parse_geometry({"type": "Polygon", "coordinates": [ring]})
    with pytest.raises(GeometryTooComplex) as refused:
        parse_geometry({"type": "Polygon", "coordinates": [_ring(MAX_GEOMETRY_VERTICES)]})
    assert refused.value.code == "geometry_too_complex"
    assert "vertices" in str(refused.value)
    points = [[107.0 + i * 1e-5, 34.0] for i in range(MAX_GEOMETRY_VERTICES + 1)]
    with pytest.raises(GeometryTooComplex):
        parse_geometry({"type": "MultiPoint", "coordinates": points})


def test_a_hundred_rings_pass_and_one_more_is_geometry_too_complex() -> None:
    polygons = [[_ring(4, lon=100.0 + i * 0.1, r=0.01)] for i in range(MAX_GEOMETRY_RINGS)]
    parse_geometry({"type": "MultiPolygon", "coordinates": polygons})
    extra = [*polygons, [_ring(4, lon=90.0, r=0.01)]]
    with pytest.raises(GeometryTooComplex) as refused:
        parse_geometry({"type": "MultiPolygon", "coordinates": extra})
    assert "rings" in str(refused.value)


# --------------------------------------------------------------------------- any input

_SCALARS = (
    st.none()
    | st.booleans()
    | st.integers(-(10**30), 10**30)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=8)
)
_JSONISH = st.recursive(
    _SCALARS,
    lambda children: (
        st.lists(children, max_size=5) | st.dictionaries(st.text(max_size=5), children, max_size=4)
    ),
    max_leaves=40,
)


@settings(max_examples=500, deadline=None)
@given(
    kind=st.sampled_from([*GEOMETRY_TYPES, "GeometryCollection", "Feature", ""]),
    coordinates=_JSONISH,
)
def test_any_geometry_like_object_is_accepted_valid_or_refused_with_a_domain_error(
    kind: str, coordinates: object
) -> None:
    try:
        geometry = parse_geometry({"type": kind, "coordinates": coordinates})
    except WanggeError:
        return
    assert geometry.is_valid
    assert geometry.geom_type == kind


@settings(max_examples=300, deadline=None)
@given(body=st.binary(max_size=200) | _JSONISH.map(lambda v: json.dumps(v).encode()))
def test_any_body_is_accepted_or_refused_with_a_domain_error(body: bytes) -> None:
    with contextlib.suppress(WanggeError):
        parse_geometry_body(body)
