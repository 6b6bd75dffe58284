"""geodata.gcj02: the GCJ-02 offset table the map moves basemap tiles with.

The conversion itself is geodata.crs's, tested in tests/unit/test_crs.py.
"""

import math

import pytest

from geodata.crs import wgs84_to_gcj02
from geodata.gcj02 import OffsetGrid, OutOfRange, offset_grid


def test_a_node_at_tiananmen_holds_the_published_offset() -> None:
    # The example the widely used coordtransform library publishes in its README and tests:
    # wgs84togcj02(116.404, 39.915) -> [116.41024449916938, 39.91640428150164].
    table = offset_grid(116.404, 39.915, 116.5, 40.0, 0.03)
    assert table.dlon[0][0] == pytest.approx(116.41024449916938 - 116.404, abs=1e-12)
    assert table.dlat[0][0] == pytest.approx(39.91640428150164 - 39.915, abs=1e-12)


def test_baoji_is_shifted_some_460_m_east_and_south() -> None:
    table = offset_grid(107.15, 34.37, 107.2, 34.4, 0.03)
    east_m = table.dlon[0][0] * 111_320 * math.cos(math.radians(34.37))
    north_m = table.dlat[0][0] * 110_574
    assert 400 < east_m < 480
    assert -180 < north_m < -100


def test_outside_china_the_offset_is_zero() -> None:
    table = offset_grid(2.0, 48.0, 3.0, 49.0, 0.5)
    assert {v for row in table.dlon + table.dlat for v in row} == {0.0}


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
        gcj_lon, gcj_lat = wgs84_to_gcj02(lon, lat)
        error_m = math.hypot(
            (table_dlon - (gcj_lon - lon)) * 111_320 * math.cos(math.radians(lat)),
            (table_dlat - (gcj_lat - lat)) * 110_574,
        )
        worst = max(worst, error_m)
    assert worst < 1.0


@pytest.mark.parametrize(
    "box",
    [
        (108.0, 34.0, 107.0, 35.0, 0.05),
        (107.0, 34.0, 108.0, 35.0, 0.0),
        (107.0, 34.0, 181.0, 35.0, 0.05),
        (math.nan, 34.0, 108.0, 35.0, 0.05),
    ],
)
def test_a_table_needs_a_box_and_a_step(box: tuple[float, float, float, float, float]) -> None:
    with pytest.raises(OutOfRange):
        offset_grid(*box)
