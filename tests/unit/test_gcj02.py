"""geodata.gcj02: the GCJ-02 offset against a published value, its inverse, its table."""

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from geodata.gcj02 import (
    OffsetGrid,
    OutOfRange,
    gcj02_to_wgs84,
    offset,
    offset_grid,
    wgs84_to_gcj02,
)


def test_tiananmen_matches_the_published_conversion() -> None:
    # The example the widely used coordtransform library publishes in its README and tests:
    # wgs84togcj02(116.404, 39.915) -> [116.41024449916938, 39.91640428150164].
    lon, lat = wgs84_to_gcj02(116.404, 39.915)
    assert lon == pytest.approx(116.41024449916938, abs=1e-12)
    assert lat == pytest.approx(39.91640428150164, abs=1e-12)


def test_baoji_is_shifted_some_460_m_east_and_south() -> None:
    dlon, dlat = offset(107.15, 34.37)
    east_m = dlon * 111_320 * math.cos(math.radians(34.37))
    north_m = dlat * 110_574
    assert 400 < east_m < 480
    assert -180 < north_m < -100


def test_points_outside_china_are_not_shifted() -> None:
    assert wgs84_to_gcj02(2.35, 48.85) == (2.35, 48.85)
    assert gcj02_to_wgs84(139.69, 35.69) == (139.69, 35.69)


@given(
    st.floats(min_value=73.0, max_value=135.0),
    st.floats(min_value=18.0, max_value=53.0),
)
def test_the_inverse_returns_to_the_point_within_a_millimetre(lon: float, lat: float) -> None:
    back_lon, back_lat = gcj02_to_wgs84(*wgs84_to_gcj02(lon, lat))
    assert abs(back_lon - lon) < 1e-8  # 1e-8° is about 1 mm
    assert abs(back_lat - lat) < 1e-8


@pytest.mark.parametrize("point", [(181.0, 0.0), (0.0, -91.0), (math.nan, 30.0), (100.0, math.inf)])
def test_a_point_off_the_globe_is_refused(point: tuple[float, float]) -> None:
    with pytest.raises(OutOfRange):
        offset(*point)


def _interpolated(table: OffsetGrid, lon: float, lat: float) -> tuple[float, float]:
    """The table's bilinear interpolation at a point, as the map's panel does it."""
    fx, fy = (lon - table.west) / table.step, (lat - table.south) / table.step
    i, j = min(int(fx), table.columns - 2), min(int(fy), table.rows - 2)
    tx, ty = fx - i, fy - j

    def lerp(values: list[list[float]]) -> float:
        bottom = values[j][i] * (1 - tx) + values[j][i + 1] * tx
        top = values[j + 1][i] * (1 - tx) + values[j + 1][i + 1] * tx
        return bottom * (1 - ty) + top * ty

    return lerp(table.dlon), lerp(table.dlat)


def test_the_table_interpolates_within_a_metre_of_the_formula() -> None:
    table = offset_grid(106.2, 33.6, 108.1, 35.2, 0.03)
    assert (table.columns, table.rows) == (65, 55)
    worst = 0.0
    for k in range(200):
        lon = 106.2 + (k * 0.0137) % 1.9
        lat = 33.6 + (k * 0.0291) % 1.6
        table_dlon, table_dlat = _interpolated(table, lon, lat)
        dlon, dlat = offset(lon, lat)
        error_m = math.hypot(
            (table_dlon - dlon) * 111_320 * math.cos(math.radians(lat)),
            (table_dlat - dlat) * 110_574,
        )
        worst = max(worst, error_m)
    assert worst < 1.0


def test_a_table_needs_a_box_and_a_step() -> None:
    with pytest.raises(OutOfRange):
        offset_grid(108.0, 34.0, 107.0, 35.0, 0.05)
    with pytest.raises(OutOfRange):
        offset_grid(107.0, 34.0, 108.0, 35.0, 0.0)
