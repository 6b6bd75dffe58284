"""The GCJ-02 offset tabulated over a box: how the map moves GCJ-02 basemap tiles
(AutoNavi/Gaode, Tencent) onto our WGS-84 data.

The conversion is geodata.crs's, the one the intake uses for phones that report GCJ-02
(the published formula, checked there against published reference pairs); this module
only samples it on a grid, for the map's panel to interpolate (docs/BASEMAP.md).
"""

import math
from dataclasses import dataclass

import numpy as np

from geodata.crs import wgs84_to_gcj02


class OutOfRange(ValueError):
    """A box that is not west < east, south < north within ±180°, ±90°, or no step."""


@dataclass(frozen=True)
class OffsetGrid:
    """The GCJ-02 offset at the nodes of a regular grid, row by row from the south-west
    corner: node (i, j) is at (west + i·step, south + j·step)."""

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
    values = (west, south, east, north, step)
    if not all(math.isfinite(v) for v in values):
        raise OutOfRange("the box and the step must be finite numbers")
    if not (-180 <= west < east <= 180 and -90 <= south < north <= 90 and step > 0):
        raise OutOfRange("the box must have west < east, south < north and a positive step")
    columns = math.ceil((east - west) / step - 1e-9) + 1
    rows = math.ceil((north - south) / step - 1e-9) + 1
    lon, lat = np.meshgrid(
        np.minimum(west + np.arange(columns) * step, 180.0),
        np.minimum(south + np.arange(rows) * step, 90.0),
    )
    gcj_lon, gcj_lat = wgs84_to_gcj02(lon, lat)
    return OffsetGrid(
        west, south, step, columns, rows, (gcj_lon - lon).tolist(), (gcj_lat - lat).tolist()
    )
