"""Coordinate reference systems accepted in events: WGS84, CGCS2000 and GCJ-02.

GCJ-02 is the obfuscated datum that Chinese phone map SDKs (AMap, Tencent) report. Its
forward formula is the one widely published since 2013 (Krasovsky ellipsoid constants,
a polynomial-plus-sine offset around (105 E, 35 N)); it has no closed-form inverse, so
`gcj02_to_wgs84` solves it by fixed-point iteration. Outside a rough bounding box of
China the datum is WGS84 itself, as every published implementation assumes.
"""

from typing import Final, Literal, get_args, overload

import numpy as np
from numpy.typing import NDArray

from geodata.errors import WanggeError

Crs = Literal["EPSG:4326", "EPSG:4490", "GCJ-02"]
"""The coordinate reference systems that events and queries may use."""

SUPPORTED_CRS: Final[tuple[str, ...]] = get_args(Crs)
DEFAULT_CRS: Final[Crs] = "EPSG:4326"

FloatArray = NDArray[np.float64]

# Krasovsky 1940 ellipsoid, as fixed by the published GCJ-02 formula.
_A: Final = 6378245.0
_EE: Final = 0.00669342162296594323

# The published "out of China" box; inside it the offset applies, outside it does not.
_MIN_LON, _MAX_LON = 72.004, 137.8347
_MIN_LAT, _MAX_LAT = 0.8293, 55.8271

# 1e-9 degree is about 0.1 mm: far below the 0.01 m the inverse promises. The offset's
# derivative is ~1e-5 per degree, so the iteration converges in 2-3 steps; the cap only
# guards against a point oscillating across the edge of the box.
_INVERSE_TOLERANCE_DEG: Final = 1e-9
_INVERSE_MAX_ITERATIONS: Final = 30


class UnsupportedCrs(WanggeError):
    """A coordinate reference system other than EPSG:4326, EPSG:4490 or GCJ-02."""

    code = "unsupported_crs"


def _in_china(lon: FloatArray, lat: FloatArray) -> NDArray[np.bool_]:
    return (lon >= _MIN_LON) & (lon <= _MAX_LON) & (lat >= _MIN_LAT) & (lat <= _MAX_LAT)


def _offset(lon: FloatArray, lat: FloatArray) -> tuple[FloatArray, FloatArray]:
    """GCJ-02 minus WGS84, in degrees, at WGS84 points (ignoring the China box)."""
    x = lon - 105.0
    y = lat - 35.0
    sqrt_abs_x = np.sqrt(np.abs(x))
    common = (20.0 * np.sin(6.0 * x * np.pi) + 20.0 * np.sin(2.0 * x * np.pi)) * 2.0 / 3.0
    d_lat = -100.0 + 2.0 * x + 3.0 * y + 0.2 * y * y + 0.1 * x * y + 0.2 * sqrt_abs_x
    d_lat += common
    d_lat += (20.0 * np.sin(y * np.pi) + 40.0 * np.sin(y / 3.0 * np.pi)) * 2.0 / 3.0
    d_lat += (160.0 * np.sin(y / 12.0 * np.pi) + 320.0 * np.sin(y * np.pi / 30.0)) * 2.0 / 3.0
    d_lon = 300.0 + x + 2.0 * y + 0.1 * x * x + 0.1 * x * y + 0.1 * sqrt_abs_x
    d_lon += common
    d_lon += (20.0 * np.sin(x * np.pi) + 40.0 * np.sin(x / 3.0 * np.pi)) * 2.0 / 3.0
    d_lon += (150.0 * np.sin(x / 12.0 * np.pi) + 300.0 * np.sin(x / 30.0 * np.pi)) * 2.0 / 3.0

    rad_lat = lat / 180.0 * np.pi
    magic = 1.0 - _EE * np.sin(rad_lat) ** 2
    sqrt_magic = np.sqrt(magic)
    d_lat = (d_lat * 180.0) / ((_A * (1.0 - _EE)) / (magic * sqrt_magic) * np.pi)
    d_lon = (d_lon * 180.0) / (_A / sqrt_magic * np.cos(rad_lat) * np.pi)
    return d_lon, d_lat


def _forward(lon: FloatArray, lat: FloatArray) -> tuple[FloatArray, FloatArray]:
    inside = _in_china(lon, lat)
    out_lon, out_lat = lon.copy(), lat.copy()
    # Only points inside the box are offset: it also keeps the poles (cos = 0) and NaN
    # out of the formula.
    d_lon, d_lat = _offset(lon[inside], lat[inside])
    out_lon[inside] += d_lon
    out_lat[inside] += d_lat
    return out_lon, out_lat


def _inverse(lon: FloatArray, lat: FloatArray) -> tuple[FloatArray, FloatArray]:
    # Fixed-point iteration on w = g - offset(w). The China box is tested on the GCJ-02
    # input, as the published implementations do, so the inverse is the identity exactly
    # where the forward is.
    inside = _in_china(lon, lat)
    gcj_lon, gcj_lat = lon[inside], lat[inside]
    wgs_lon, wgs_lat = gcj_lon.copy(), gcj_lat.copy()
    for _ in range(_INVERSE_MAX_ITERATIONS):
        d_lon, d_lat = _offset(wgs_lon, wgs_lat)
        err_lon = wgs_lon + d_lon - gcj_lon
        err_lat = wgs_lat + d_lat - gcj_lat
        wgs_lon -= err_lon
        wgs_lat -= err_lat
        if max(_abs_max(err_lon), _abs_max(err_lat)) < _INVERSE_TOLERANCE_DEG:
            break
    out_lon, out_lat = lon.copy(), lat.copy()
    out_lon[inside] = wgs_lon
    out_lat[inside] = wgs_lat
    return out_lon, out_lat


def _abs_max(values: FloatArray) -> float:
    return float(np.max(np.abs(values), initial=0.0))


def _as_arrays(lon: float | FloatArray, lat: float | FloatArray) -> tuple[FloatArray, FloatArray]:
    lon_array = np.asarray(lon, dtype=np.float64)
    lat_array = np.asarray(lat, dtype=np.float64)
    if lon_array.shape != lat_array.shape:
        raise ValueError(f"lon and lat shapes differ: {lon_array.shape} vs {lat_array.shape}")
    return np.atleast_1d(lon_array), np.atleast_1d(lat_array)


@overload
def wgs84_to_gcj02(lon: float, lat: float) -> tuple[float, float]: ...
@overload
def wgs84_to_gcj02(lon: FloatArray, lat: FloatArray) -> tuple[FloatArray, FloatArray]: ...
def wgs84_to_gcj02(
    lon: float | FloatArray, lat: float | FloatArray
) -> tuple[float, float] | tuple[FloatArray, FloatArray]:
    """Offset WGS84 degrees to GCJ-02 (identity outside China); floats or arrays."""
    lon_array, lat_array = _as_arrays(lon, lat)
    out_lon, out_lat = _forward(lon_array, lat_array)
    return _like_input(lon, out_lon, out_lat)


@overload
def gcj02_to_wgs84(lon: float, lat: float) -> tuple[float, float]: ...
@overload
def gcj02_to_wgs84(lon: FloatArray, lat: FloatArray) -> tuple[FloatArray, FloatArray]: ...
def gcj02_to_wgs84(
    lon: float | FloatArray, lat: float | FloatArray
) -> tuple[float, float] | tuple[FloatArray, FloatArray]:
    """Remove the GCJ-02 offset (iteratively, to well under 1 cm); floats or arrays."""
    lon_array, lat_array = _as_arrays(lon, lat)
    out_lon, out_lat = _inverse(lon_array, lat_array)
    return _like_input(lon, out_lon, out_lat)


@overload
def to_wgs84(lon: float, lat: float, crs: str) -> tuple[float, float]: ...
@overload
def to_wgs84(lon: FloatArray, lat: FloatArray, crs: str) -> tuple[FloatArray, FloatArray]: ...
def to_wgs84(
    lon: float | FloatArray, lat: float | FloatArray, crs: str
) -> tuple[float, float] | tuple[FloatArray, FloatArray]:
    """Convert from an accepted crs to WGS84; raise UnsupportedCrs for any other."""
    lon_array, lat_array = _as_arrays(lon, lat)
    if crs == "GCJ-02":
        return _like_input(lon, *_inverse(lon_array, lat_array))
    if crs in ("EPSG:4326", "EPSG:4490"):
        # CGCS2000 and WGS84 differ by a few centimetres: below GPS noise, so no shift.
        return _like_input(lon, lon_array.copy(), lat_array.copy())
    raise UnsupportedCrs(f"unsupported crs {crs!r}; use one of {', '.join(SUPPORTED_CRS)}")


def _like_input(
    template: float | FloatArray, lon: FloatArray, lat: FloatArray
) -> tuple[float, float] | tuple[FloatArray, FloatArray]:
    if np.ndim(template) == 0 and not isinstance(template, np.ndarray):
        return float(lon[0]), float(lat[0])
    shape = np.shape(template)
    return lon.reshape(shape), lat.reshape(shape)
