"""The cheap bounds `nearest` prunes with hold for every point and polygon."""

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st
from shapely.geometry import MultiPolygon, box

from geodata.geography_distance import PolygonDistances

_POLYGONS = [
    box(107.10, 34.30, 107.11, 34.31),
    box(107.11, 34.30, 107.13, 34.305),
    MultiPolygon([box(107.2, 34.4, 107.201, 34.401), box(107.3, 34.35, 107.31, 34.36)]),
    box(107.0, 34.0, 107.5, 34.5).difference(box(107.1, 34.1, 107.4, 34.4)),  # with a hole
]
_INDEX = PolygonDistances(_POLYGONS)
_ALL = np.arange(len(_POLYGONS))


@settings(max_examples=200)
@given(lon=st.floats(-180, 180), lat=st.floats(-89.9, 89.9))
def test_each_distance_lies_between_its_bounds(lon: float, lat: float) -> None:
    below, above = _INDEX.distance_bounds_m(lon, lat)
    distances = _INDEX.distances_m(lon, lat, _ALL)
    assert np.all(below <= distances + 1e-6)
    assert np.all(distances <= above + 1e-6)


def test_a_vertex_is_at_zero_and_a_point_a_degree_north_about_111_km() -> None:
    assert _INDEX.distances_m(107.10, 34.30, _ALL[:1])[0] < 1e-6
    # 34.31 to 35.31 north along the meridian: 110.94 km on WGS 84.
    far = _INDEX.distances_m(107.105, 35.31, _ALL[:1])[0]
    assert abs(far - 110_943) < 50


@settings(max_examples=200)
@given(
    lon=st.floats(106.9, 107.6),
    lat=st.floats(33.9, 34.6),
    k=st.integers(1, len(_POLYGONS)),
    valid=st.lists(st.booleans(), min_size=len(_POLYGONS), max_size=len(_POLYGONS)),
)
def test_candidates_hold_the_k_nearest_valid_polygons(
    lon: float, lat: float, k: int, valid: list[bool]
) -> None:
    mask = np.array(valid)
    if mask.sum() < k:
        mask[:k] = True
    candidates = _INDEX.candidates(lon, lat, k, None if mask.all() else mask)
    assert np.all(mask[candidates])
    assert np.all(np.diff(candidates) > 0)
    # Every valid polygon nearer than the k-th nearest valid one is a candidate.
    shown = np.flatnonzero(mask)
    distances = _INDEX.distances_m(lon, lat, shown)
    kth = np.sort(distances)[k - 1]
    assert set(shown[distances <= kth].tolist()) <= set(candidates.tolist())
