"""GCJ-02, the obfuscated datum of Chinese online maps, from and to WGS-84.

China's surveying rules require published maps to shift WGS-84 positions by a nonlinear,
position-dependent offset (GCJ-02, 国测局坐标, "Mars coordinates"); AutoNavi (Gaode) and
Tencent tiles are drawn in it, some 100 to 700 m away from WGS-84. pyproj has no
definition of it. The forward formula below is the one reverse-engineered and published
in many libraries (Krasovsky 1940 axes, offsets from 105°E 35°N); the inverse has no closed
form and is solved here by fixed-point iteration to well under a millimetre.

Outside mainland China's bounding box the maps are not shifted, so neither are we.
Our own data stay in WGS-84 everywhere; the map moves a GCJ-02 basemap onto them
(docs/BASEMAP.md says why) with the offsets that `offset_grid` tabulates.
"""

import math
from dataclasses import dataclass
from typing import Final

_A: Final = 6378245.0  # semi-major axis of the Krasovsky 1940 ellipsoid, metres
_EE: Final = 0.00669342162296594323  # its first eccentricity squared

#: Longitudes and latitudes (degrees) outside which the published maps are not shifted.
CHINA_BOX: Final = (72.004, 0.8293, 137.8347, 55.8271)


class OutOfRange(ValueError):
    """A longitude or latitude outside ±180°, ±90°, or not a number."""


def _check(lon: float, lat: float) -> None:
    if not (math.isfinite(lon) and math.isfinite(lat) and -180 <= lon <= 180 and -90 <= lat <= 90):
        raise OutOfRange(f"({lon}, {lat}) is not a WGS-84 longitude and latitude")


def in_china(lon: float, lat: float) -> bool:
    """True where Chinese maps apply the GCJ-02 shift (a bounding box, as they do)."""
    west, south, east, north = CHINA_BOX
    return west <= lon <= east and south <= lat <= north


def _raw_lat(x: float, y: float) -> float:
    value = -100.0 + 2.0 * x + 3.0 * y + 0.2 * y * y + 0.1 * x * y + 0.2 * math.sqrt(abs(x))
    value += (20.0 * math.sin(6.0 * x * math.pi) + 20.0 * math.sin(2.0 * x * math.pi)) * 2 / 3
    value += (20.0 * math.sin(y * math.pi) + 40.0 * math.sin(y / 3.0 * math.pi)) * 2 / 3
    value += (160.0 * math.sin(y / 12.0 * math.pi) + 320 * math.sin(y * math.pi / 30.0)) * 2 / 3
    return value


def _raw_lon(x: float, y: float) -> float:
    value = 300.0 + x + 2.0 * y + 0.1 * x * x + 0.1 * x * y + 0.1 * math.sqrt(abs(x))
    value += (20.0 * math.sin(6.0 * x * math.pi) + 20.0 * math.sin(2.0 * x * math.pi)) * 2 / 3
    value += (20.0 * math.sin(x * math.pi) + 40.0 * math.sin(x / 3.0 * math.pi)) * 2 / 3
    value += (150.0 * math.sin(x / 12.0 * math.pi) + 300.0 * math.sin(x / 30.0 * math.pi)) * 2 / 3
    return value


def offset(lon: float, lat: float) -> tuple[float, float]:
    """GCJ-02 minus WGS-84 (degrees of longitude, of latitude) at a WGS-84 point."""
    _check(lon, lat)
    if not in_china(lon, lat):
        return 0.0, 0.0
    dlat = _raw_lat(lon - 105.0, lat - 35.0)
    dlon = _raw_lon(lon - 105.0, lat - 35.0)
    radlat = math.radians(lat)
    magic = 1 - _EE * math.sin(radlat) ** 2
    sqrtmagic = math.sqrt(magic)
    dlat = (dlat * 180.0) / ((_A * (1 - _EE)) / (magic * sqrtmagic) * math.pi)
    dlon = (dlon * 180.0) / (_A / sqrtmagic * math.cos(radlat) * math.pi)
    return dlon, dlat


def wgs84_to_gcj02(lon: float, lat: float) -> tuple[float, float]:
    """Where a WGS-84 point is drawn on a GCJ-02 map (AutoNavi, Tencent)."""
    dlon, dlat = offset(lon, lat)
    return lon + dlon, lat + dlat


def gcj02_to_wgs84(lon: float, lat: float, tolerance_deg: float = 1e-10) -> tuple[float, float]:
    """The WGS-84 point a GCJ-02 position stands for (iterated to `tolerance_deg`)."""
    _check(lon, lat)
    wgs_lon, wgs_lat = lon, lat
    # The offset changes by well under 1e-4 of a step's size, so each round gains about
    # four digits: three or four rounds reach 1e-10° (10 µm).
    for _ in range(10):
        there_lon, there_lat = wgs84_to_gcj02(wgs_lon, wgs_lat)
        error_lon, error_lat = there_lon - lon, there_lat - lat
        wgs_lon, wgs_lat = wgs_lon - error_lon, wgs_lat - error_lat
        if abs(error_lon) < tolerance_deg and abs(error_lat) < tolerance_deg:
            break
    return wgs_lon, wgs_lat


@dataclass(frozen=True)
class OffsetGrid:
    """The GCJ-02 offset tabulated at the nodes of a regular grid, row by row from the
    south-west corner: node (i, j) is at (west + i·step, south + j·step)."""

    west: float
    south: float
    step: float
    columns: int
    rows: int
    #: GCJ-02 minus WGS-84, degrees, `rows` lists of `columns` values each.
    dlon: list[list[float]]
    dlat: list[list[float]]


def offset_grid(west: float, south: float, east: float, north: float, step: float) -> OffsetGrid:
    """The offsets over a WGS-84 box at nodes `step` degrees apart, the box's edges inside.

    Bilinear interpolation between nodes 0.03° apart stays within a metre of the formula
    (its shortest wave is a third of a degree long, about 13 m high): half a pixel at
    zoom 17 (tests/unit/test_gcj02.py measures it).
    """
    _check(west, south)
    _check(east, north)
    if not (west < east and south < north and step > 0):
        raise OutOfRange("the box must have west < east, south < north and a positive step")
    columns = math.ceil((east - west) / step - 1e-9) + 1
    rows = math.ceil((north - south) / step - 1e-9) + 1
    dlon: list[list[float]] = []
    dlat: list[list[float]] = []
    for j in range(rows):
        lat = min(90.0, south + j * step)
        pairs = [offset(min(180.0, west + i * step), lat) for i in range(columns)]
        dlon.append([pair[0] for pair in pairs])
        dlat.append([pair[1] for pair in pairs])
    return OffsetGrid(west, south, step, columns, rows, dlon, dlat)
