"""GCJ-02 conversion against published reference pairs, and its inverse to the centimetre."""

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from geodata.crs import UnsupportedCrs, gcj02_to_wgs84, to_wgs84, wgs84_to_gcj02

# Baoji prefecture-level city: about 106.3-108.1 E, 33.6-35.1 N.
BAOJI_LON = (106.3, 108.1)
BAOJI_LAT = (33.6, 35.1)

# (wgs_lon, wgs_lat, gcj_lon, gcj_lat) published by other implementations of the formula.
REFERENCE_PAIRS = [
    # googollee/eviltransform, python/test.py and go/transform_test.go: Shanghai, Shenzhen,
    # Beijing (given there as lat, lng; checked to 6 decimals forward, < 0.5 m inverse).
    (121.5272106, 31.1774276, 121.531541859215, 31.17530398364597),
    (113.912316, 22.543847, 113.9171764808363, 22.540796131694766),
    (116.377817, 39.911954, 116.38404722455657, 39.91334545536069),
    # wandergis/coordtransform, test/app.js: wgs84togcj02(116.404, 39.915).
    (116.404, 39.915, 116.41024449916938, 39.91640428150164),
]


def metres_between(lon1: float, lat1: float, lon2: float, lat2: float) -> float:
    """Haversine distance on a 6,371 km sphere: ample for centimetres over metres."""
    phi1, phi2 = math.radians(lat1), math.radians(lat2)
    d_phi = phi2 - phi1
    d_lambda = math.radians(lon2 - lon1)
    h = math.sin(d_phi / 2) ** 2 + math.cos(phi1) * math.cos(phi2) * math.sin(d_lambda / 2) ** 2
    return 2 * 6_371_000 * math.asin(math.sqrt(h))


@pytest.mark.parametrize(("wgs_lon", "wgs_lat", "gcj_lon", "gcj_lat"), REFERENCE_PAIRS)
def test_forward_matches_published_reference_pairs(
    wgs_lon: float, wgs_lat: float, gcj_lon: float, gcj_lat: float
) -> None:
    lon, lat = wgs84_to_gcj02(wgs_lon, wgs_lat)
    # 1e-9 degree is 0.1 mm: the same formula gives the same digits.
    assert lon == pytest.approx(gcj_lon, abs=1e-9)
    assert lat == pytest.approx(gcj_lat, abs=1e-9)


@pytest.mark.parametrize(("wgs_lon", "wgs_lat", "gcj_lon", "gcj_lat"), REFERENCE_PAIRS)
def test_inverse_recovers_the_published_wgs84_point_within_a_centimetre(
    wgs_lon: float, wgs_lat: float, gcj_lon: float, gcj_lat: float
) -> None:
    lon, lat = gcj02_to_wgs84(gcj_lon, gcj_lat)
    assert metres_between(lon, lat, wgs_lon, wgs_lat) < 0.01


def test_inverse_agrees_with_gcoord_reference() -> None:
    # hujiulong/gcoord, test/unit/crs/GCJ02.spec.js: GCJ02 -> WGS84 of [123, 45], checked
    # there to 5 decimals (gcoord stops iterating at 1e-6 degree).
    lon, lat = gcj02_to_wgs84(123.0, 45.0)
    assert lon == pytest.approx(122.99395597, abs=5e-6)
    assert lat == pytest.approx(44.99804071, abs=5e-6)


@pytest.mark.parametrize(("lon", "lat"), [(2.3522, 48.8566), (-122.4194, 37.7749), (151.2, -33.9)])
def test_outside_china_gcj02_is_wgs84(lon: float, lat: float) -> None:
    assert wgs84_to_gcj02(lon, lat) == (lon, lat)
    assert gcj02_to_wgs84(lon, lat) == (lon, lat)


def test_offset_in_baoji_is_a_few_hundred_metres() -> None:
    lon, lat = wgs84_to_gcj02(107.1523, 34.3671)
    assert 300 < metres_between(lon, lat, 107.1523, 34.3671) < 600  # 463 m


def test_floats_in_give_floats_out() -> None:
    lon, lat = gcj02_to_wgs84(107.1568, 34.3658)
    assert type(lon) is float
    assert type(lat) is float


def test_arrays_are_converted_elementwise_keeping_their_shape() -> None:
    lon = np.array([[107.1523, 2.3522], [121.5272106, 116.404]])
    lat = np.array([[34.3671, 48.8566], [31.1774276, 39.915]])
    gcj_lon, gcj_lat = wgs84_to_gcj02(lon, lat)
    assert gcj_lon.shape == lat.shape
    for index in np.ndindex(lon.shape):
        assert (float(gcj_lon[index]), float(gcj_lat[index])) == wgs84_to_gcj02(
            float(lon[index]), float(lat[index])
        )
    back_lon, back_lat = gcj02_to_wgs84(gcj_lon, gcj_lat)
    assert np.allclose(back_lon, lon, rtol=0, atol=1e-7)
    assert np.allclose(back_lat, lat, rtol=0, atol=1e-7)


def test_arrays_of_mismatched_shapes_are_refused() -> None:
    with pytest.raises(ValueError, match="shapes differ"):
        gcj02_to_wgs84(np.zeros(3), np.zeros(2))


def test_round_trip_over_all_china_stays_within_a_centimetre() -> None:
    rng = np.random.default_rng(2020)
    lon = rng.uniform(73.0, 135.0, 100_000)
    lat = rng.uniform(18.0, 53.0, 100_000)
    back_lon, back_lat = gcj02_to_wgs84(*wgs84_to_gcj02(lon, lat))
    # 1e-7 degree < 1.2 cm in latitude, and less in longitude.
    assert np.max(np.abs(back_lon - lon)) < 1e-7
    assert np.max(np.abs(back_lat - lat)) < 1e-7


@settings(max_examples=500)
@given(
    st.floats(*BAOJI_LON, allow_nan=False),
    st.floats(*BAOJI_LAT, allow_nan=False),
)
def test_round_trip_in_baoji_stays_within_a_centimetre(lon: float, lat: float) -> None:
    gcj_lon, gcj_lat = wgs84_to_gcj02(lon, lat)
    back_lon, back_lat = gcj02_to_wgs84(gcj_lon, gcj_lat)
    assert metres_between(back_lon, back_lat, lon, lat) < 0.01


@pytest.mark.parametrize("crs", ["EPSG:4326", "EPSG:4490"])
def test_wgs84_and_cgcs2000_are_taken_as_they_are(crs: str) -> None:
    assert to_wgs84(107.1523, 34.3671, crs) == (107.1523, 34.3671)


def test_gcj02_is_converted_to_wgs84() -> None:
    assert to_wgs84(107.1568, 34.3658, "GCJ-02") == gcj02_to_wgs84(107.1568, 34.3658)
    lon, lat = to_wgs84(np.array([107.1568]), np.array([34.3658]), "GCJ-02")
    assert (float(lon[0]), float(lat[0])) == gcj02_to_wgs84(107.1568, 34.3658)


@pytest.mark.parametrize("crs", ["EPSG:3857", "BD-09", "gcj02", ""])
def test_other_crs_raise_unsupported_crs(crs: str) -> None:
    with pytest.raises(UnsupportedCrs) as raised:
        to_wgs84(107.0, 34.0, crs)
    assert raised.value.code == "unsupported_crs"
