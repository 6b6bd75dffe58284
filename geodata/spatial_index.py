"""Point-to-grid assignment: the in-memory index the event consumers locate events with.

The rules (docs/EVENTS.md, `assignment_rule`) are answered exactly as PostGIS would answer
them on the same rows, only vectorised over a whole batch of events:

1. the grid versions valid at the event's time whose polygon covers the point
   (interior or boundary, `ST_Covers`): one grid → `contains`, several (a shared edge or
   vertex) → the smallest code, `boundary_tiebreak`;
2. none, but grids within `tolerance_m` (GPS error) → the nearest, ties to the smallest
   code, `nearest_within_tolerance`; distances in metres in the metric CRS
   (`layers.METRIC_CRS`), never in degrees;
3. otherwise `outside_area`.
"""

import bisect
import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum

import numpy as np
import numpy.typing as npt
import shapely
from pyproj import Transformer
from shapely.geometry.base import BaseGeometry

from geodata.dataset.layers import METRIC_CRS, STORAGE_CRS
from geodata.geography_distance import PolygonDistances
from geodata.snapshot_policy import DEFAULT_TOLERANCE_M

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_ONE_US = timedelta(microseconds=1)
# An open validity period (valid_to NULL) ends after every representable event time.
_OPEN_END_US = np.iinfo(np.int64).max
# The tree's `dwithin` only pre-selects candidates; the exact `<= tolerance` test is done
# on the computed distance, so a candidate search a hair wider can never lose a grid that
# sits exactly at the tolerance because GEOS's two distance code paths round differently.
_CANDIDATE_SLACK_M = 1e-6

Int64Array = npt.NDArray[np.int64]
FloatArray = npt.NDArray[np.float64]
ObjectArray = npt.NDArray[np.object_]


class AssignmentRule(StrEnum):
    """How an event's grid was chosen; the `assignment_rule` of grid.assignments.v1."""

    CONTAINS = "contains"
    BOUNDARY_TIEBREAK = "boundary_tiebreak"
    NEAREST_WITHIN_TOLERANCE = "nearest_within_tolerance"
    OUTSIDE_AREA = "outside_area"


@dataclass(frozen=True)
class GridVersion:
    """One version of a grid's boundary, in EPSG:4326 (lon, lat), valid in [from, to)."""

    code: str
    community_code: str
    geometry: BaseGeometry
    valid_from: datetime
    valid_to: datetime | None


@dataclass(frozen=True)
class Located:
    """Where a batch of points fell: one entry per input point, in input order."""

    #: Grid codes (str), None where the rule is `outside_area`.
    codes: ObjectArray
    #: The `AssignmentRule` of each point.
    rules: ObjectArray
    #: 0 when covered, metres to the chosen grid when nearest, NaN when outside.
    distances_m: FloatArray

    def __len__(self) -> int:
        """Number of located points."""
        return len(self.codes)


# Indexed by "covered by more than one grid"; an object array keeps the enum members
# (np.where would turn these str subclasses into a numpy unicode array).
_COVER_RULES: ObjectArray = np.array(
    [AssignmentRule.CONTAINS, AssignmentRule.BOUNDARY_TIEBREAK], dtype=object
)


def to_epoch_us(moment: datetime) -> int:
    """Microseconds since the Unix epoch of an aware datetime, exactly (no float rounding)."""
    if moment.tzinfo is None or moment.utcoffset() is None:
        # A naive time is ambiguous by up to 8 hours here (UTC vs Asia/Shanghai).
        raise ValueError(f"datetime must be timezone-aware: {moment!r}")
    return (moment - _EPOCH) // _ONE_US


class GridIndex:
    """Immutable point-to-grid index over grid versions; build once, locate many batches."""

    def __init__(self, versions: Sequence[GridVersion], tolerance_m: float) -> None:
        """Use `GridIndex.build`."""
        if not np.isfinite(tolerance_m) or tolerance_m < 0:
            raise ValueError(f"tolerance_m must be a finite number >= 0, got {tolerance_m}")
        self._versions = tuple(versions)
        self._tolerance_m = float(tolerance_m)
        n = len(self._versions)

        geometries = np.empty(n, dtype=object)
        valid_from = np.empty(n, dtype=np.int64)
        valid_to = np.empty(n, dtype=np.int64)
        for i, version in enumerate(self._versions):
            _check_geometry(version)
            geometries[i] = version.geometry
            valid_from[i] = to_epoch_us(version.valid_from)
            valid_to[i] = (
                _OPEN_END_US if version.valid_to is None else to_epoch_us(version.valid_to)
            )
            if valid_to[i] <= valid_from[i]:
                raise ValueError(f"grid {version.code}: valid_to must be after valid_from")
        self._valid_from: Int64Array = valid_from
        self._valid_to: Int64Array = valid_to
        # Which versions are valid changes only at these instants: nearest keeps the mask
        # of the last span it was asked about (the API asks "now", time after time).
        self._changes: list[int] = sorted(
            {*valid_from.tolist(), *valid_to[valid_to != _OPEN_END_US].tolist()}
        )
        self._valid_span: tuple[int, npt.NDArray[np.bool_], int] | None = None

        # Ties are broken on a code's rank instead of the string: fixed-width digit codes
        # sort the same either way, and integer min/max reduce in numpy's fast paths.
        codes = np.array([v.code for v in self._versions], dtype=object)
        unique_codes, rank = np.unique(codes.astype(str), return_inverse=True)
        self._code_by_rank: ObjectArray = unique_codes.astype(object)
        self._rank: Int64Array = rank.astype(np.int64)

        self._to_metric = Transformer.from_crs(STORAGE_CRS, METRIC_CRS, always_xy=True)
        # Distances are measured between projected geometries, exactly as PostGIS measures
        # ST_Distance(ST_Transform(geom, srid), ST_Transform(point, srid)): the projected
        # copy is made once here, vertex by vertex, which gives the very same doubles as
        # ST_Transform (checked against PostGIS in the integration tests).
        metric = shapely.transform(geometries, self._project_xy) if n else geometries
        shapely.prepare(geometries)
        shapely.prepare(metric)
        self._metric: ObjectArray = metric
        self._geometries: ObjectArray = geometries
        self._tree = shapely.STRtree(geometries)
        self._metric_tree = shapely.STRtree(metric)
        self._geography = PolygonDistances(geometries)

    @classmethod
    def build(
        cls, versions: Sequence[GridVersion], tolerance_m: float = DEFAULT_TOLERANCE_M
    ) -> "GridIndex":
        """Index every grid version (current and closed) for time-aware assignment."""
        return cls(versions, tolerance_m)

    @property
    def size(self) -> int:
        """Number of grid versions indexed."""
        return len(self._versions)

    @property
    def versions(self) -> tuple[GridVersion, ...]:
        """The indexed grid versions, in the order given to `build`."""
        return self._versions

    @property
    def tolerance_m(self) -> float:
        """How far outside every grid (metres) a point is still given to the nearest."""
        return self._tolerance_m

    def locate(
        self,
        lon: npt.ArrayLike,
        lat: npt.ArrayLike,
        at: npt.ArrayLike | None = None,
    ) -> Located:
        """Assign each point to a grid with the versions valid at its time (`at`, UTC)."""
        lon_arr = np.asarray(lon, dtype=np.float64)
        lat_arr = np.asarray(lat, dtype=np.float64)
        if lon_arr.ndim != 1 or lon_arr.shape != lat_arr.shape:
            raise ValueError("lon and lat must be 1-D arrays of the same length")
        n = lon_arr.shape[0]
        when = _event_times_us(at, n)

        codes = np.full(n, None, dtype=object)
        rules = np.empty(n, dtype=object)
        # Not np.full: it would coerce the str-enum member to a plain str.
        rules.fill(AssignmentRule.OUTSIDE_AREA)
        distances = np.full(n, np.nan, dtype=np.float64)
        if n == 0 or not self._versions:
            return Located(codes, rules, distances)

        candidates = np.flatnonzero(np.isfinite(lon_arr) & np.isfinite(lat_arr))
        covered = self._assign_covering(lon_arr, lat_arr, when, candidates, codes, rules)
        distances[covered] = 0.0

        unresolved = np.zeros(n, dtype=bool)
        unresolved[candidates] = True
        unresolved[covered] = False
        missed = np.flatnonzero(unresolved)
        if missed.size:
            self._assign_nearest(lon_arr, lat_arr, when, missed, codes, rules, distances)
        return Located(codes, rules, distances)

    def locate_one(
        self, lon: float, lat: float, at: datetime | None = None
    ) -> tuple[str | None, AssignmentRule, float]:
        """Assign one point; `at` must be timezone-aware (None = now)."""
        when = to_epoch_us(datetime.now(UTC) if at is None else at)
        if self._versions and math.isfinite(lon) and math.isfinite(lat):
            # Rule 1 for one point without the batch's arrays (the API's locate): the
            # same tree and predicate, the same validity and the same tie-break as
            # `_assign_covering`, in a third of the time.
            hits = self._tree.query(shapely.Point(lon, lat), predicate="intersects")
            ranks = [
                int(self._rank[version])
                for version in hits
                if self._valid_from[version] <= when < self._valid_to[version]
            ]
            if ranks:
                lowest, highest = min(ranks), max(ranks)
                rule = _COVER_RULES[int(lowest != highest)]
                return self._code_by_rank[lowest], rule, 0.0
        # Not covered (rare): the batch path answers rules 2 and 3.
        located = self.locate(
            np.array([lon]), np.array([lat]), np.array([when], dtype="datetime64[us]")
        )
        return located.codes[0], located.rules[0], float(located.distances_m[0])

    def nearest(self, lon: float, lat: float, k: int, at: datetime) -> list[tuple[int, float]]:
        """The `k` versions valid at `at` nearest a WGS84 point, nearest first, ties by code.

        Metres as PostGIS's geography `ST_Distance` gives them (0 for a covering version),
        as (position in `versions`, metres) pairs. Only the versions whose cheap lower
        bound is within the k-th least upper bound are measured exactly.
        """
        when = to_epoch_us(at)
        if k <= 0 or not self._versions or not (math.isfinite(lon) and math.isfinite(lat)):
            return []
        valid, count = self._valid_at(when)
        k = min(k, count)
        if k == 0:
            return []
        # No version further than the k-th least upper bound can be among the k nearest.
        candidates = self._geography.candidates(lon, lat, k, valid if count < valid.size else None)
        distances = self._geography.distances_m(lon, lat, candidates)
        # A candidate covering the point is at 0: the tree's `intersects` of locate, asked
        # of the candidates alone, from the coordinates (no Point to build).
        distances[shapely.intersects_xy(self._geometries[candidates], lon, lat)] = 0.0
        order = np.lexsort((self._rank[candidates], distances))[:k]
        return list(zip(candidates[order].tolist(), distances[order].tolist(), strict=True))

    def valid_intersecting(
        self, at: datetime, box: tuple[float, float, float, float] | None = None
    ) -> Int64Array:
        """Positions of the versions valid at `at`, ascending; with `box` (min lon, min lat,
        max lon, max lat), only those meeting it, as PostGIS's `ST_Intersects(geom,
        ST_MakeEnvelope(...))` on the same doubles (GEOS decides both)."""
        valid, _ = self._valid_at(to_epoch_us(at))
        if box is None:
            return np.flatnonzero(valid).astype(np.int64)
        hits = self._tree.query(shapely.box(*box), predicate="intersects")
        return np.sort(hits[valid[hits]]).astype(np.int64)

    def _valid_at(self, when: int) -> tuple[npt.NDArray[np.bool_], int]:
        """Which versions are valid at `when` (µs since the epoch), and how many."""
        span = bisect.bisect_right(self._changes, when)
        kept = self._valid_span
        if kept is not None and kept[0] == span:
            return kept[1], kept[2]
        valid = (self._valid_from <= when) & (when < self._valid_to)
        count = int(np.count_nonzero(valid))
        # One tuple, replaced whole: a reader in another thread sees an old or a new one.
        self._valid_span = (span, valid, count)
        return valid, count

    def _assign_covering(
        self,
        lon: FloatArray,
        lat: FloatArray,
        when: Int64Array,
        candidates: Int64Array,
        codes: ObjectArray,
        rules: ObjectArray,
    ) -> Int64Array:
        """Rule 1 (covered by valid versions), in place; returns the covered point indices."""
        points = shapely.points(lon[candidates], lat[candidates])
        # For a point, `intersects` is `ST_Covers(polygon, point)`: boundary included.
        hit, version = self._tree.query(points, predicate="intersects")
        hit = candidates[hit]
        hit, version = self._valid_pairs(hit, version, when)
        if not hit.size:
            return hit
        if np.any(hit[1:] < hit[:-1]):
            # GEOS returns pairs grouped by input point today; do not depend on it.
            order = np.argsort(hit, kind="stable")
            hit, version = hit[order], version[order]
        starts, owners = _group_starts(hit)
        rank = self._rank[version]
        lowest = np.minimum.reduceat(rank, starts)
        highest = np.maximum.reduceat(rank, starts)
        codes[owners] = self._code_by_rank[lowest]
        # Several versions of one code valid at once would be a data error, not a tie:
        # a tie is between different grids.
        rules[owners] = _COVER_RULES[(lowest != highest).astype(np.intp)]
        return owners

    def _assign_nearest(
        self,
        lon: FloatArray,
        lat: FloatArray,
        when: Int64Array,
        missed: Int64Array,
        codes: ObjectArray,
        rules: ObjectArray,
        distances: FloatArray,
    ) -> None:
        """Rule 2 (nearest valid version within the tolerance), in place, for missed points."""
        x, y = self._to_metric.transform(lon[missed], lat[missed])
        points = shapely.points(x, y)
        # Not `query_nearest`: the nearest version overall may be closed at the event's
        # time while a valid one is also within the tolerance, so every version within
        # reach is a candidate and validity is checked before choosing.
        near, version = self._metric_tree.query(
            points, predicate="dwithin", distance=self._tolerance_m + _CANDIDATE_SLACK_M
        )
        near_global = missed[near]
        keep = self._valid_mask(near_global, version, when)
        near, near_global, version = near[keep], near_global[keep], version[keep]
        if not near.size:
            return
        gap = shapely.distance(points[near], self._metric[version])
        within = gap <= self._tolerance_m
        near_global, version, gap = near_global[within], version[within], gap[within]
        if not near_global.size:
            return
        # Nearest first, then the smallest code among exact ties, per point.
        order = np.lexsort((self._rank[version], gap, near_global))
        near_global, version, gap = near_global[order], version[order], gap[order]
        starts, owners = _group_starts(near_global)
        codes[owners] = self._code_by_rank[self._rank[version[starts]]]
        rules[owners] = AssignmentRule.NEAREST_WITHIN_TOLERANCE
        distances[owners] = gap[starts]

    def _valid_mask(
        self, point: Int64Array, version: Int64Array, when: Int64Array
    ) -> npt.NDArray[np.bool_]:
        """Which (point, version) pairs have the version valid at the point's time."""
        t = when[point]
        return (self._valid_from[version] <= t) & (t < self._valid_to[version])

    def _valid_pairs(
        self, point: Int64Array, version: Int64Array, when: Int64Array
    ) -> tuple[Int64Array, Int64Array]:
        """The (point, version) pairs whose version is valid at the point's time."""
        keep = self._valid_mask(point, version, when)
        return point[keep], version[keep]

    def _project_xy(self, coords: FloatArray) -> FloatArray:
        """Project an (n, 2) lon/lat array to EPSG:4547 metres in one pyproj call."""
        x, y = self._to_metric.transform(coords[:, 0], coords[:, 1])
        return np.column_stack((x, y))


def _check_geometry(version: GridVersion) -> None:
    """Refuse a version whose geometry the rules cannot be answered with."""
    geometry = version.geometry
    if (
        geometry is None
        or geometry.is_empty
        or geometry.geom_type
        not in (
            "Polygon",
            "MultiPolygon",
        )
    ):
        kind = None if geometry is None else geometry.geom_type
        raise ValueError(f"grid {version.code}: geometry must be a non-empty polygon ({kind})")


def _event_times_us(at: npt.ArrayLike | None, n: int) -> Int64Array:
    """Event times as int64 µs since the epoch, one per point; None means now."""
    if at is None:
        return np.full(n, to_epoch_us(datetime.now(UTC)), dtype=np.int64)
    times = np.asarray(at)
    if times.dtype.kind != "M":
        raise TypeError(f"`at` must be numpy datetime64 (UTC), got dtype {times.dtype}")
    times = times.astype("datetime64[us]")
    if np.isnat(times).any():
        raise ValueError("`at` contains NaT")
    return np.broadcast_to(times.view(np.int64), (n,))


def _group_starts(sorted_owner: Int64Array) -> tuple[Int64Array, Int64Array]:
    """Start offsets of each run of equal values in a sorted array, and those values."""
    boundary = np.flatnonzero(sorted_owner[1:] != sorted_owner[:-1]) + 1
    starts = np.concatenate((np.zeros(1, dtype=np.int64), boundary))
    return starts, sorted_owner[starts]
