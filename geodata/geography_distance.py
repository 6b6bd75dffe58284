"""Metres from a point to polygons as PostGIS's geography `ST_Distance` measures them.

PostGIS takes each polygon edge as a great-circle arc on a sphere (longitude and latitude
as spherical angles), finds the boundary point nearest the point on that sphere, and
measures from the point to it on the WGS 84 spheroid (the inverse geodesic problem, by
GeographicLib, as `pyproj.Geod` solves it); a point the polygon covers is at 0. The same
steps here, vectorised over every edge of the polygons asked about, give the same metres
to well under a millimetre (tests/integration/test_grid_cache.py holds them to PostGIS).

Covering is decided in the plane of longitude and latitude (as locate's `ST_Covers`),
not on the sphere: the two differ only in the sliver between an edge and its arc (at most
L²/8R wide: 1.3 cm for an 812 m edge), where the distance PostGIS gives is below that.
"""

import math
from collections.abc import Sequence

import numpy as np
import numpy.typing as npt
import shapely
from pyproj import Geod
from shapely.geometry.base import BaseGeometry

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]

#: The least radius of curvature of the WGS 84 spheroid (the meridian's at the equator):
#: a geodesic is never shorter than this times the angle between its ends on the sphere,
#: which makes `distance_bounds_m`'s lower bound hold.
_MIN_CURVATURE_RADIUS_M = 6_335_439.0
#: The greatest (the normal's at a pole): a geodesic is never longer than this times it.
_MAX_CURVATURE_RADIUS_M = 6_399_594.0
# Dot products at an arc's ends equal to this are taken as inside the arc, as PostGIS does.
_RADIUS_RATIO = _MAX_CURVATURE_RADIUS_M / _MIN_CURVATURE_RADIUS_M
_CONE_SLACK = 2e-16
_WGS84 = Geod(ellps="WGS84")


def _unit_vectors(lon: FloatArray, lat: FloatArray) -> FloatArray:
    """(n, 3) points on the unit sphere of lon/lat in degrees, taken as spherical angles."""
    lam, phi = np.radians(lon), np.radians(lat)
    cos_phi = np.cos(phi)
    return np.column_stack((cos_phi * np.cos(lam), cos_phi * np.sin(lam), np.sin(phi)))


def _unit_vector(lon: float, lat: float) -> FloatArray:
    """`_unit_vectors` of one point."""
    lam, phi = math.radians(lon), math.radians(lat)
    return np.array((math.cos(phi) * math.cos(lam), math.cos(phi) * math.sin(lam), math.sin(phi)))


def _normalized(v: FloatArray) -> FloatArray:
    with np.errstate(invalid="ignore", divide="ignore"):
        unit: FloatArray = v / np.sqrt(np.square(v).sum(axis=-1, keepdims=True))
    return unit


def _cross(a: FloatArray, b: FloatArray) -> FloatArray:
    """Row-wise cross products of (n, 3) arrays (np.cross costs 30 µs a call in overhead)."""
    ax, ay, az = a[:, 0], a[:, 1], a[:, 2]
    bx, by, bz = b[:, 0], b[:, 1], b[:, 2]
    return np.column_stack((ay * bz - az * by, az * bx - ax * bz, ax * by - ay * bx))


def _chord2(a: FloatArray, p: FloatArray) -> FloatArray:
    """Squared chords from unit vectors to the unit vector `p`: in the order of their
    angles, and accurate for tiny ones, unlike a dot product near 1."""
    return _row_sums(np.square(a - p))


def _row_sums(v: FloatArray) -> FloatArray:
    """Sums over the last axis (of length 3): x + y + z in that order, as `sum` adds three;
    numpy's reduction along so short an axis costs several times these two additions."""
    sums: FloatArray = v[..., 0] + v[..., 1] + v[..., 2]
    return sums


def _angle(chord2: FloatArray) -> FloatArray:
    """The angles (radians) of squared chords."""
    angle: FloatArray = 2.0 * np.arcsin(np.minimum(np.sqrt(chord2) / 2.0, 1.0))
    return angle


class PolygonDistances:
    """Every edge of some polygons on the unit sphere, to measure points against them."""

    def __init__(self, geometries: Sequence[BaseGeometry] | npt.NDArray[np.object_]) -> None:
        """Index the rings of `geometries` (Polygons or MultiPolygons, lon/lat degrees)."""
        n = len(geometries)
        parts, part_owner = shapely.get_parts(
            np.asarray(geometries, dtype=object), return_index=True
        )
        rings, ring_part = shapely.get_rings(parts, return_index=True)
        coords, coord_ring = shapely.get_coordinates(rings, return_index=True)
        # Rings are closed, so consecutive coordinates of one ring are its edges.
        same_ring = coord_ring[:-1] == coord_ring[1:]
        start = _unit_vectors(coords[:-1, 0], coords[:-1, 1])[same_ring]
        end = _unit_vectors(coords[1:, 0], coords[1:, 1])[same_ring]
        owner = part_owner[ring_part[coord_ring[:-1][same_ring]]].astype(np.int64)
        bisector = _normalized(start + end)
        # One row per edge, so that a query gathers its edges once: start, end, the unit
        # normal of its great circle (NaN for a zero-length edge), the bisector of the
        # arc, and the start's projection on it (a point of the arc projects further).
        self._edges = np.column_stack(
            (
                start,
                end,
                _normalized(_cross(start, end)),
                bisector,
                (start * bisector).sum(axis=1),
            )
        )
        # Edges of one polygon are contiguous, in polygon order.
        self._first_edge = np.searchsorted(owner, np.arange(n + 1)).astype(np.int64)
        # A cap holding each polygon: the mean of its vertices and the widest angle to one.
        # A cap narrower than a hemisphere holds the great-circle arcs between its points.
        vertices = _unit_vectors(coords[:, 0], coords[:, 1])
        vertex_owner = part_owner[ring_part[coord_ring]]
        sums = np.zeros((n, 3))
        np.add.at(sums, vertex_owner, vertices)
        self._centre = _normalized(sums)
        spread = _angle(np.square(vertices - self._centre[vertex_owner]).sum(axis=1))
        self._radius = np.zeros(n)
        np.maximum.at(self._radius, vertex_owner, spread)
        # The radius with distance_bounds_m's nanoradian for rounding, for `candidates`.
        self._radius_out = self._radius + 1e-9

    def distance_bounds_m(self, lon: float, lat: float) -> tuple[FloatArray, FloatArray]:
        """Bounds (metres) below and above `distances_m` to every polygon, cheap to compute."""
        centre = _angle(_chord2(self._centre, _unit_vector(lon, lat)))
        # A nanoradian each way for the rounding of the angles themselves.
        below = np.maximum(centre - self._radius - 1e-9, 0.0) * _MIN_CURVATURE_RADIUS_M
        above = (centre + self._radius + 1e-9) * _MAX_CURVATURE_RADIUS_M
        return below, above

    def candidates(
        self, lon: float, lat: float, k: int, valid: npt.NDArray[np.bool_] | None = None
    ) -> IntArray:
        """The polygons (of the `valid` ones, at least `k`) that may be the `k` nearest.

        Those whose `distance_bounds_m` lower bound is within the k-th least upper bound,
        in ascending order; the same test in angles, in fewer steps (it runs per request).
        """
        centre = _angle(_chord2(self._centre, _unit_vector(lon, lat)))
        upper = centre + self._radius_out
        if valid is not None:
            upper = np.where(valid, upper, np.inf)
        # below <= reach, both in metres, is: centre - r - 1e-9 <= the k-th upper angle
        # times the ratio of the greatest curvature radius to the least.
        reach = float(np.partition(upper, k - 1)[k - 1]) * _RADIUS_RATIO
        near = centre - self._radius_out <= reach
        return np.flatnonzero(near & valid if valid is not None else near)

    def distances_m(self, lon: float, lat: float, polygons: IntArray) -> FloatArray:
        """Metres from the point to each polygon's boundary, as PostGIS measures outside.

        The caller decides covering (distance 0); this measures to the nearest edge even
        from inside.
        """
        if polygons.size == 0:
            return np.empty(0)
        # Every edge of the asked polygons, polygon by polygon; `starts` where each begins.
        first_edge = self._first_edge[polygons]
        counts = self._first_edge[polygons + 1] - first_edge
        ends = np.cumsum(counts)
        starts = ends - counts
        edges = self._edges[np.arange(ends[-1]) + np.repeat(first_edge - starts, counts)]
        normal = edges[:, 6:9]
        p = _unit_vector(lon, lat)
        # The point's projection on each edge's great circle, kept if within the arc.
        with np.errstate(invalid="ignore", divide="ignore"):
            foot = p - normal * (normal @ p)[:, None]
            foot /= np.sqrt(_row_sums(np.square(foot)))[:, None]
        on_arc = _row_sums(foot * edges[:, 9:12]) >= edges[:, 12] - _CONE_SLACK
        # Each edge's foot, start and end, and their squared chords to the point (an off-arc
        # foot, or a NaN one, at infinity): its nearest is the first of them at the least.
        near = np.concatenate((foot[:, None], edges[:, 0:6].reshape(-1, 2, 3)), axis=1)
        chords = _row_sums(np.square(near - p))
        chords[~on_arc, 0] = np.inf  # NaN compares False: off
        to_nearest = np.minimum(np.minimum(chords[:, 0], chords[:, 1]), chords[:, 2])
        # Per polygon, the first edge at the least angle, and that edge's nearest point.
        least = np.minimum.reduceat(to_nearest, starts)
        at_least = np.flatnonzero(to_nearest == np.repeat(least, counts))
        edge = at_least[np.searchsorted(at_least, starts)]
        q = near[edge, np.argmin(chords[edge], axis=1)]
        q_lon = np.degrees(np.arctan2(q[:, 1], q[:, 0]))
        # np.clip's own checks cost more than the two comparisons it makes here.
        q_lat = np.degrees(np.arcsin(np.minimum(np.maximum(q[:, 2], -1.0), 1.0)))
        size = q_lon.size
        _, _, metres = _WGS84.inv(np.full(size, lon), np.full(size, lat), q_lon, q_lat)
        return np.asarray(metres, dtype=np.float64)
