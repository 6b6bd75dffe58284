"""Where a simulated phone is: walks along a grid's interior, GPS noise and bad fixes.

Geometry is worked in metres (`layers.METRIC_CRS`). Every fix meant to be in a grid is
checked, after the phone's CRS conversion, rounding and the consumer's conversion back,
to lie at least `EDGE_MARGIN_M` inside it: then the platform's point location cannot
disagree with the plan, and the expected results are exact, not statistical.
"""

from dataclasses import dataclass
from enum import IntEnum
from typing import Final

import numpy as np
import numpy.typing as npt
import shapely
from pyproj import Transformer
from shapely.geometry import LineString, Point
from shapely.geometry.base import BaseGeometry

from geodata.crs import to_wgs84, wgs84_to_gcj02
from geodata.dataset.layers import METRIC_CRS, STORAGE_CRS

FloatArray = npt.NDArray[np.float64]
BoolArray = npt.NDArray[np.bool_]

EDGE_MARGIN_M: Final = 3.0
"""How deep inside its grid every in-grid fix is, after every conversion (metres)."""

COORDINATE_DECIMALS: Final = 7
"""Decimals of lon/lat in a message (about 1 cm), applied before the checks."""

# Teleports land at least this far from any grid of the worker: never in their own grid.
_TELEPORT_CLEARANCE_M: Final = 100.0
_NOISE_CLIP: Final = 2.5  # errors beyond 2.5 sigma are redrawn, as a GPS filter would
_RING_FRACTIONS: Final = ((0.3, 30.0), (0.45, 50.0), (0.6, 70.0))  # of depth, capped (m)
_SAMPLE_STEP_M: Final = 8.0

_TO_METRIC: Final = Transformer.from_crs(STORAGE_CRS, METRIC_CRS, always_xy=True)
_TO_LONLAT: Final = Transformer.from_crs(METRIC_CRS, STORAGE_CRS, always_xy=True)


class FixQuality(IntEnum):
    """What went right or wrong with a fix."""

    GOOD = 0
    POOR_ACCURACY = 1  # accuracy_m above the rule's maximum, position anywhere near
    TELEPORT = 2  # a jump kilometres away, with a confident accuracy


def to_metric(xy: FloatArray) -> FloatArray:
    """(lon, lat) rows to metric (x, y) rows."""
    x, y = _TO_METRIC.transform(xy[:, 0], xy[:, 1])
    return np.column_stack([x, y])


def to_lonlat(xy: FloatArray) -> FloatArray:
    """Metric (x, y) rows to (lon, lat) rows."""
    lon, lat = _TO_LONLAT.transform(xy[:, 0], xy[:, 1])
    return np.column_stack([lon, lat])


def _largest(geometry: BaseGeometry) -> BaseGeometry:
    parts = list(getattr(geometry, "geoms", [geometry]))
    return max(parts, key=lambda part: part.area)


class GridShape:
    """One grid in metres: its safe interior, and rings a walker follows inside it."""

    def __init__(self, code: str, lonlat: BaseGeometry) -> None:
        self.code = code
        self.lonlat = lonlat
        self.metric: BaseGeometry = shapely.transform(lonlat, to_metric)
        self.inner: BaseGeometry = self.metric.buffer(-EDGE_MARGIN_M)
        circle = shapely.maximum_inscribed_circle(_largest(self.metric), 0.5)
        self.centre = np.asarray(circle.coords[0])
        self.depth = float(circle.length)
        self.rings: list[LineString] = []
        for fraction, cap in _RING_FRACTIONS:
            inside = self.metric.buffer(-min(fraction * self.depth, cap))
            if not inside.is_empty:
                self.rings.append(LineString(_largest(inside).exterior.coords))
        shallowest = min(_RING_FRACTIONS[0][0] * self.depth, _RING_FRACTIONS[0][1])
        self.walkable: BaseGeometry = self.metric.buffer(-0.8 * shallowest)
        for geometry in (self.lonlat, self.inner, self.walkable, self.metric):
            shapely.prepare(geometry)

    def interior_point(self, rng: np.random.Generator) -> FloatArray:
        """A uniformly random point of the walkable interior, in metres."""
        (x0, y0, x1, y1) = self.walkable.bounds
        while True:
            xy = rng.uniform((x0, y0), (x1, y1), size=(16, 2))
            inside = xy[shapely.contains_xy(self.walkable, xy[:, 0], xy[:, 1])]
            if len(inside):
                return np.asarray(inside[0], dtype=float)

    def route(self, length_m: float, rng: np.random.Generator) -> FloatArray:
        """A polyline of at least `length_m` along inner rings, with cuts across the block."""
        if not self.rings:  # too thin for a ring: pace around the centre
            return np.vstack([self.centre, self.centre + 1.0, self.centre])
        ring = self.rings[int(rng.integers(len(self.rings)))]
        at = float(rng.uniform(0, ring.length))
        direction = float(rng.choice([-1.0, 1.0]))
        pieces: list[FloatArray] = []
        travelled = 0.0
        while travelled < length_m:
            leg = float(rng.uniform(150.0, 600.0))
            along = (at + direction * np.linspace(0, leg, int(leg / _SAMPLE_STEP_M) + 2)) % (
                ring.length
            )
            points = shapely.get_coordinates(shapely.line_interpolate_point(ring, along))
            pieces.append(points)
            travelled += leg
            at, here = float(along[-1]), points[-1]
            if rng.random() < 0.5:
                # Cut across to another ring through a point inside, when that stays inside.
                through = self.interior_point(rng)
                following = self.rings[int(rng.integers(len(self.rings)))]
                landing_at = float(following.project(Point(through)))
                landing = np.asarray(following.interpolate(landing_at).coords[0])
                cut = LineString([here, through, landing])
                if self.walkable.covers(cut):
                    pieces.append(np.vstack([through, landing]))
                    travelled += cut.length
                    ring, at = following, landing_at
                    direction = float(rng.choice([-1.0, 1.0]))
        return np.vstack(pieces)


def positions_along(path: FloatArray, distances: FloatArray) -> FloatArray:
    """Points at the given distances along a polyline (the end, beyond its length)."""
    steps = np.linalg.norm(np.diff(path, axis=0), axis=1)
    cumulative = np.concatenate([[0.0], np.cumsum(steps)])
    return np.column_stack(
        [np.interp(distances, cumulative, path[:, 0]), np.interp(distances, cumulative, path[:, 1])]
    )


def gps_error(
    shape: GridShape, xy: FloatArray, noise_m: float, rng: np.random.Generator
) -> FloatArray:
    """`xy` plus Gaussian GPS error of RMS `noise_m`, every result inside `shape.inner`.

    An error that would put a fix outside (or beyond 2.5 sigma) is redrawn smaller;
    the path itself runs deeper than the margin, so a last resort of no error is safe.
    """
    sigma = noise_m / np.sqrt(2.0)
    error = rng.normal(0.0, sigma, size=xy.shape)
    redo = np.ones(len(xy), dtype=bool)
    for attempt in range(6):
        too_far = np.linalg.norm(error, axis=1) > _NOISE_CLIP * noise_m
        noisy = xy + error
        redo = too_far | ~shapely.contains_xy(shape.inner, noisy[:, 0], noisy[:, 1])
        if not redo.any():
            return noisy
        error[redo] = rng.normal(0.0, sigma * 0.5 ** (attempt + 1), size=(int(redo.sum()), 2))
    error[redo] = 0.0
    return xy + error


def poor_fixes(xy: FloatArray, accuracy_m: FloatArray, rng: np.random.Generator) -> FloatArray:
    """Positions of fixes with poor accuracy: off by up to their accuracy, anywhere."""
    radius = rng.uniform(50.0, accuracy_m)
    angle = rng.uniform(0, 2 * np.pi, size=len(xy))
    return xy + np.column_stack([radius * np.cos(angle), radius * np.sin(angle)])


def teleports(
    xy: FloatArray,
    avoid: list[BaseGeometry],
    km: tuple[float, float],
    rng: np.random.Generator,
) -> FloatArray:
    """Jumps kilometres away, each at least `_TELEPORT_CLEARANCE_M` from every `avoid`."""
    out = np.empty_like(xy)
    for i, here in enumerate(xy):
        while True:
            angle = rng.uniform(0, 2 * np.pi)
            there = here + rng.uniform(*km) * 1000.0 * np.array([np.cos(angle), np.sin(angle)])
            if all(g.distance(Point(there)) >= _TELEPORT_CLEARANCE_M for g in avoid):
                out[i] = there
                break
    return out


@dataclass(frozen=True)
class Reported:
    """Coordinates as the phone sends them, and as the consumer reads them back (WGS84)."""

    lon: FloatArray
    lat: FloatArray
    wgs_lon: FloatArray
    wgs_lat: FloatArray


def report(xy: FloatArray, crs: str) -> Reported:
    """What a phone reporting in `crs` sends for metric points, rounded as in a message."""
    lonlat = to_lonlat(xy)
    lon, lat = lonlat[:, 0], lonlat[:, 1]
    if crs == "GCJ-02":
        lon, lat = wgs84_to_gcj02(lon, lat)
    lon, lat = np.round(lon, COORDINATE_DECIMALS), np.round(lat, COORDINATE_DECIMALS)
    wgs_lon, wgs_lat = to_wgs84(lon, lat, crs)
    return Reported(lon, lat, wgs_lon, wgs_lat)


def safely_inside(shape: GridShape, reported: Reported) -> BoolArray:
    """Whether the consumer will read each fix at least EDGE_MARGIN_M inside the grid."""
    lon, lat = reported.wgs_lon, reported.wgs_lat
    metric = to_metric(np.column_stack([lon, lat]))
    deep = shapely.contains_xy(shape.inner, metric[:, 0], metric[:, 1])
    return np.asarray(deep & shapely.contains_xy(shape.lonlat, lon, lat), dtype=bool)


def neighbours(grids: dict[str, BaseGeometry], min_shared_m: float = 20.0) -> dict[str, list[str]]:
    """Grids sharing at least `min_shared_m` of boundary with each grid, sorted by code."""
    codes = sorted(grids)
    geometries = [grids[c] for c in codes]
    tree = shapely.STRtree(geometries)
    left, right = tree.query(geometries, predicate="intersects")
    found: dict[str, list[str]] = {code: [] for code in codes}
    for a, b in zip(left.tolist(), right.tolist(), strict=True):
        if a >= b:
            continue
        shared = shapely.transform(
            shapely.intersection(geometries[a].boundary, geometries[b].boundary), to_metric
        )
        if shared.length >= min_shared_m:
            found[codes[a]].append(codes[b])
            found[codes[b]].append(codes[a])
    return {code: sorted(found[code]) for code in codes}
