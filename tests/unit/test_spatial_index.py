"""The grid index's assignment rules on small synthetic grids (no I/O)."""

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from functools import cache

import numpy as np
import numpy.typing as npt
import pytest
import shapely
from hypothesis import given, settings
from hypothesis import strategies as st
from pyproj import Geod, Transformer
from shapely.geometry import MultiPolygon, Polygon, box
from shapely.geometry.base import BaseGeometry

from geodata.dataset.layers import METRIC_CRS, STORAGE_CRS
from geodata.geography_distance import PolygonDistances
from geodata.spatial_index import AssignmentRule, GridIndex, GridVersion, Located

FloatArray = npt.NDArray[np.float64]

COMMUNITY = "610302001001"
SINCE = datetime(2020, 1, 1, tzinfo=UTC)
CHANGE = datetime(2023, 7, 1, tzinfo=UTC)
GEOD = Geod(ellps="GRS80")

# Three grids meeting at one vertex (V3): two squares side by side and a rectangle on
# top of both. Codes are not in drawing order, so a tie is decided by code, not by
# the order of the versions.
D = 0.005
X0, X1, X2 = 107.150, 107.155, 107.160
Y0, Y1, Y2 = 34.360, 34.365, 34.370
V3 = (X1, Y1)
SOUTH_WEST = f"{COMMUNITY}003"
SOUTH_EAST = f"{COMMUNITY}001"
NORTH = f"{COMMUNITY}002"

# Two grids whose outer edges meet at a spike (VS) pointing south, so that a point due
# south of VS is nearest to VS in both grids: an exact tie in distance.
VS = (107.200, 34.300)
SPIKE_WEST = f"{COMMUNITY}012"
SPIKE_EAST = f"{COMMUNITY}011"

# On CHANGE, LOSER's east part [XC1, XC2] passes to GAINER, which also grows east from
# XC3 to XC4 (about 18 m).
XC0, XC1, XC2, XC3, XC4 = 107.250, 107.255, 107.258, 107.260, 107.2602
YCM = 34.3625
YC0, YC1 = 34.360, 34.365
LOSER = f"{COMMUNITY}021"
GAINER = f"{COMMUNITY}022"


def _multi(polygon: Polygon) -> MultiPolygon:
    return MultiPolygon([polygon])


def _version(
    code: str, polygon: Polygon, since: datetime = SINCE, until: datetime | None = None
) -> GridVersion:
    return GridVersion(code, COMMUNITY, _multi(polygon), since, until)


def _versions() -> list[GridVersion]:
    north = Polygon([(X0, Y1), (X1, Y1), (X2, Y1), (X2, Y2), (X0, Y2)])
    vx, vy = VS
    spike_west = Polygon(
        [(vx, vy), (vx, vy + 0.01), (vx - 0.01, vy + 0.01), (vx - 0.01, vy + 0.005)]
    )
    spike_east = Polygon(
        [(vx, vy), (vx + 0.01, vy + 0.005), (vx + 0.01, vy + 0.01), (vx, vy + 0.01)]
    )
    return [
        _version(SOUTH_WEST, box(X0, Y0, X1, Y1)),
        _version(SOUTH_EAST, box(X1, Y0, X2, Y1)),
        _version(NORTH, north),
        _version(SPIKE_WEST, spike_west),
        _version(SPIKE_EAST, spike_east),
        _version(LOSER, box(XC0, YC0, XC2, YC1), until=CHANGE),
        _version(GAINER, box(XC2, YC0, XC3, YC1), until=CHANGE),
        _version(LOSER, box(XC0, YC0, XC1, YC1), since=CHANGE),
        _version(GAINER, box(XC1, YC0, XC4, YC1), since=CHANGE),
    ]


@pytest.fixture(scope="module")
def index() -> GridIndex:
    """The synthetic grids, indexed with the default 30 m tolerance."""
    return GridIndex.build(_versions())


def _moved(lon: float, lat: float, azimuth_deg: float, metres: float) -> tuple[float, float]:
    """The point `metres` on the ground from (lon, lat) towards `azimuth_deg`."""
    x, y, _ = GEOD.fwd(lon, lat, azimuth_deg, metres)
    return float(x), float(y)


def _at(moment: datetime) -> npt.NDArray[np.datetime64]:
    return np.array([moment.astimezone(UTC).replace(tzinfo=None)], dtype="datetime64[us]")


def test_point_strictly_inside_goes_to_its_grid(index: GridIndex) -> None:
    assert index.locate_one(X0 + D / 2, Y0 + D / 2) == (SOUTH_WEST, AssignmentRule.CONTAINS, 0.0)


def test_point_on_shared_edge_goes_to_smallest_code(index: GridIndex) -> None:
    code, rule, distance = index.locate_one(X1, Y0 + D / 3)
    assert (code, rule, distance) == (SOUTH_EAST, AssignmentRule.BOUNDARY_TIEBREAK, 0.0)


def test_point_on_vertex_shared_by_three_grids_goes_to_smallest_code(index: GridIndex) -> None:
    code, rule, _ = index.locate_one(*V3)
    assert (code, rule) == (SOUTH_EAST, AssignmentRule.BOUNDARY_TIEBREAK)
    # Without the smallest of the three, the next smallest wins: all three cover V3.
    others = GridIndex.build([v for v in _versions() if v.code != SOUTH_EAST])
    assert others.locate_one(*V3)[:2] == (NORTH, AssignmentRule.BOUNDARY_TIEBREAK)


def test_point_on_outer_boundary_is_contained(index: GridIndex) -> None:
    assert index.locate_one(X0, Y0 + D / 2)[:2] == (SOUTH_WEST, AssignmentRule.CONTAINS)


def test_point_10_m_outside_goes_to_nearest_grid_with_its_distance(index: GridIndex) -> None:
    lon, lat = _moved(X0, Y0 + D / 2, 270.0, 10.0)
    code, rule, distance = index.locate_one(lon, lat)
    assert (code, rule) == (SOUTH_WEST, AssignmentRule.NEAREST_WITHIN_TOLERANCE)
    assert distance == pytest.approx(10.0, abs=0.5)


def test_point_50_m_outside_is_outside_area(index: GridIndex) -> None:
    lon, lat = _moved(X0, Y0 + D / 2, 270.0, 50.0)
    code, rule, distance = index.locate_one(lon, lat)
    assert code is None
    assert rule is AssignmentRule.OUTSIDE_AREA
    assert np.isnan(distance)


def test_tolerance_is_measured_in_metres_not_degrees() -> None:
    # 25 m west of the west edge: inside a 30 m tolerance, outside a 20 m one.
    lon, lat = _moved(X0, Y0 + D / 2, 270.0, 25.0)
    assert GridIndex.build(_versions(), tolerance_m=30.0).locate_one(lon, lat)[0] == SOUTH_WEST
    assert GridIndex.build(_versions(), tolerance_m=20.0).locate_one(lon, lat)[0] is None


def test_equidistant_nearest_grids_tie_to_smallest_code(index: GridIndex) -> None:
    lon, lat = _moved(*VS, 180.0, 10.0)
    code, rule, distance = index.locate_one(lon, lat)
    assert (code, rule) == (SPIKE_EAST, AssignmentRule.NEAREST_WITHIN_TOLERANCE)
    assert distance == pytest.approx(10.0, abs=0.5)
    # The tie is exact: both grids are nearest at the shared vertex.
    project = Transformer.from_crs(STORAGE_CRS, METRIC_CRS, always_xy=True)
    point = shapely.Point(project.transform(lon, lat))
    spikes = [v.geometry for v in _versions() if v.code in (SPIKE_EAST, SPIKE_WEST)]
    gaps = [shapely.distance(point, shapely.transform(g, _projector(project))) for g in spikes]
    assert gaps[0] == gaps[1]


def _projector(project: Transformer) -> Callable[[FloatArray], FloatArray]:
    """A shapely.transform function applying `project` to all coordinates at once."""

    def apply(xy: FloatArray) -> FloatArray:
        return np.column_stack(project.transform(xy[:, 0], xy[:, 1]))

    return apply


def test_event_before_a_boundary_change_keeps_the_old_grid(index: GridIndex) -> None:
    taken = ((XC1 + XC2) / 2, YCM)
    before = CHANGE - timedelta(days=30)
    assert index.locate_one(*taken, at=before)[:2] == (LOSER, AssignmentRule.CONTAINS)
    assert index.locate_one(*taken, at=CHANGE)[:2] == (GAINER, AssignmentRule.CONTAINS)
    assert index.locate_one(*taken, at=CHANGE + timedelta(days=1))[0] == GAINER
    assert index.locate_one(*taken)[0] == GAINER  # now


def test_validity_ends_just_before_valid_to(index: GridIndex) -> None:
    taken = ((XC1 + XC2) / 2, YCM)
    last = CHANGE - timedelta(microseconds=1)
    lon, lat = np.array([taken[0]] * 2), np.array([taken[1]] * 2)
    at = np.concatenate([_at(last), _at(CHANGE)])
    assert index.locate(lon, lat, at).codes.tolist() == [LOSER, GAINER]


def test_old_edge_is_a_tie_only_while_it_exists(index: GridIndex) -> None:
    # XC2 was the shared edge before the change; afterwards it is inside GAINER.
    point = (XC2, YCM)
    before = index.locate_one(*point, at=CHANGE - timedelta(days=1))
    after = index.locate_one(*point, at=CHANGE)
    assert before[:2] == (LOSER, AssignmentRule.BOUNDARY_TIEBREAK)
    assert after[:2] == (GAINER, AssignmentRule.CONTAINS)


def test_event_before_any_boundary_is_outside_area(index: GridIndex) -> None:
    early = SINCE - timedelta(days=1)
    assert index.locate_one(X0 + D / 2, Y0 + D / 2, at=early)[1] is AssignmentRule.OUTSIDE_AREA


def test_nearest_only_considers_versions_valid_at_the_event_time(index: GridIndex) -> None:
    # 25 m east of GAINER's new east edge, about 43 m east of its old one.
    lon, lat = _moved(XC4, YCM, 90.0, 25.0)
    code, rule, distance = index.locate_one(lon, lat, at=CHANGE)
    assert (code, rule) == (GAINER, AssignmentRule.NEAREST_WITHIN_TOLERANCE)
    assert distance == pytest.approx(25.0, abs=0.5)
    before = index.locate_one(lon, lat, at=CHANGE - timedelta(days=1))
    assert before[:2] == (None, AssignmentRule.OUTSIDE_AREA)


def test_distance_is_to_the_version_valid_at_the_event_time(index: GridIndex) -> None:
    lon, lat = _moved(XC4, YCM, 90.0, 5.0)
    after = index.locate_one(lon, lat, at=CHANGE)
    before = index.locate_one(lon, lat, at=CHANGE - timedelta(days=1))
    assert after[0] == before[0] == GAINER
    assert after[2] == pytest.approx(5.0, abs=0.5)
    assert before[2] == pytest.approx(5.0 + 18.4, abs=0.5)


def test_batch_keeps_input_order_and_rule_types(index: GridIndex) -> None:
    lon = np.array([X0 + D / 2, 0.0, X1, X1 + D / 2])
    lat = np.array([Y0 + D / 2, 0.0, Y0 + D / 3, Y0 + D / 2])
    located = index.locate(lon, lat)
    assert isinstance(located, Located)
    assert len(located) == 4
    assert located.codes.tolist() == [SOUTH_WEST, None, SOUTH_EAST, SOUTH_EAST]
    assert all(isinstance(rule, AssignmentRule) for rule in located.rules)
    assert located.rules.tolist() == [
        AssignmentRule.CONTAINS,
        AssignmentRule.OUTSIDE_AREA,
        AssignmentRule.BOUNDARY_TIEBREAK,
        AssignmentRule.CONTAINS,
    ]


def test_non_finite_coordinates_are_outside_area(index: GridIndex) -> None:
    located = index.locate(np.array([np.nan, np.inf]), np.array([Y0, np.nan]))
    assert located.codes.tolist() == [None, None]
    assert set(located.rules.tolist()) == {AssignmentRule.OUTSIDE_AREA}


def test_empty_batch_and_empty_index() -> None:
    empty = np.array([], dtype=np.float64)
    assert len(GridIndex.build(_versions()).locate(empty, empty)) == 0
    nothing = GridIndex.build([])
    assert nothing.size == 0
    assert nothing.locate_one(X0, Y0)[1] is AssignmentRule.OUTSIDE_AREA


def test_event_times_may_be_any_datetime64_unit_or_one_for_all(index: GridIndex) -> None:
    taken = ((XC1 + XC2) / 2, YCM)
    lon, lat = np.array([taken[0]] * 2), np.array([taken[1]] * 2)
    seconds = np.array(["2023-06-01T00:00:00", "2023-08-01T00:00:00"], dtype="datetime64[s]")
    assert index.locate(lon, lat, seconds).codes.tolist() == [LOSER, GAINER]
    one = np.datetime64("2023-06-01T00:00:00", "us")
    assert index.locate(lon, lat, one).codes.tolist() == [LOSER, LOSER]


def test_invalid_inputs_are_refused(index: GridIndex) -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        index.locate_one(X0, Y0, at=datetime(2023, 1, 1))
    with pytest.raises(TypeError, match="datetime64"):
        index.locate(np.array([X0]), np.array([Y0]), np.array([1.0]))
    with pytest.raises(ValueError, match="NaT"):
        index.locate(np.array([X0]), np.array([Y0]), np.array(["NaT"], dtype="datetime64[us]"))
    with pytest.raises(ValueError, match="same length"):
        index.locate(np.array([X0, X1]), np.array([Y0]))
    with pytest.raises(ValueError, match="tolerance"):
        GridIndex.build(_versions(), tolerance_m=-1.0)
    with pytest.raises(ValueError, match="polygon"):
        GridIndex.build([GridVersion("x", COMMUNITY, shapely.Point(X0, Y0), SINCE, None)])


def test_size_and_versions(index: GridIndex) -> None:
    assert index.size == len(_versions()) == len(index.versions)
    assert index.tolerance_m == 30.0


# Points near and on the synthetic grids: coordinates drawn from the grids' own vertex
# coordinates often enough to land on edges and vertices, plus anywhere around them.
_LONS = sorted({x for v in _versions() for x, _ in shapely.get_coordinates(v.geometry)})
_LATS = sorted({y for v in _versions() for _, y in shapely.get_coordinates(v.geometry)})
_lon = st.one_of(st.sampled_from(_LONS), st.floats(107.149, 107.2101, allow_nan=False))
_lat = st.one_of(st.sampled_from(_LATS), st.floats(34.2995, 34.3705, allow_nan=False))
_near = st.tuples(st.sampled_from(_LONS), st.sampled_from(_LATS), st.floats(-0.0006, 0.0006)).map(
    lambda p: (p[0] + p[2], p[1] - p[2] / 2)
)
_time = st.one_of(
    st.sampled_from([SINCE, CHANGE, CHANGE - timedelta(microseconds=1)]),
    st.datetimes(datetime(2019, 6, 1), datetime(2025, 1, 1), timezones=st.just(UTC)),
)
_event = st.tuples(st.one_of(st.tuples(_lon, _lat), _near), _time)


@settings(max_examples=200, deadline=None)
@given(st.lists(_event, min_size=1, max_size=40))
def test_batch_equals_one_at_a_time(events: list[tuple[tuple[float, float], datetime]]) -> None:
    index = _shared_index()
    lon = np.array([p[0] for p, _ in events])
    lat = np.array([p[1] for p, _ in events])
    at = np.concatenate([_at(t) for _, t in events])
    batch = index.locate(lon, lat, at)
    for i, ((x, y), t) in enumerate(events):
        code, rule, distance = index.locate_one(x, y, at=t)
        assert (batch.codes[i], batch.rules[i]) == (code, rule)
        np.testing.assert_equal(batch.distances_m[i], distance)


@settings(max_examples=200, deadline=None)
@given(st.lists(_event, min_size=1, max_size=40))
def test_batch_equals_brute_force_rules(events: list[tuple[tuple[float, float], datetime]]) -> None:
    index = _shared_index()
    lon = np.array([p[0] for p, _ in events])
    lat = np.array([p[1] for p, _ in events])
    at = np.concatenate([_at(t) for _, t in events])
    batch = index.locate(lon, lat, at)
    for i, ((x, y), t) in enumerate(events):
        code, rule, distance = _brute_force(x, y, t)
        assert (batch.codes[i], batch.rules[i]) == (code, rule)
        np.testing.assert_equal(batch.distances_m[i], distance)


@cache
def _shared_index() -> GridIndex:
    # Hypothesis cannot take function-scoped fixtures; build once per process instead.
    return GridIndex.build(_versions())


@cache
def _to_metric() -> Transformer:
    return Transformer.from_crs(STORAGE_CRS, METRIC_CRS, always_xy=True)


@cache
def _metric_versions() -> list[tuple[GridVersion, BaseGeometry]]:
    project = _projector(_to_metric())
    return [(v, shapely.transform(v.geometry, project)) for v in _versions()]


def _brute_force(lon: float, lat: float, at: datetime) -> tuple[str | None, AssignmentRule, float]:
    """The rules one version at a time, straight from their definition."""
    valid = [
        (v, metric)
        for v, metric in _metric_versions()
        if v.valid_from <= at and (v.valid_to is None or at < v.valid_to)
    ]
    point = shapely.Point(lon, lat)
    covering = sorted({v.code for v, _ in valid if shapely.covers(v.geometry, point)})
    if covering:
        rule = AssignmentRule.CONTAINS if len(covering) == 1 else AssignmentRule.BOUNDARY_TIEBREAK
        return covering[0], rule, 0.0
    metric_point = shapely.Point(_to_metric().transform(lon, lat))
    near = sorted((float(shapely.distance(metric_point, metric)), v.code) for v, metric in valid)
    if near and near[0][0] <= 30.0:
        return near[0][1], AssignmentRule.NEAREST_WITHIN_TOLERANCE, near[0][0]
    return None, AssignmentRule.OUTSIDE_AREA, float("nan")


_k = st.integers(1, len(_versions()) + 1)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.one_of(st.tuples(_lon, _lat), _near), _time, _k), max_size=20))
def test_nearest_equals_every_valid_version_measured(
    asked: list[tuple[tuple[float, float], datetime, int]],
) -> None:
    # One index asked at times in any order: the validity it keeps between two asks must
    # never answer for another span of time.
    index = _shared_index()
    everything = PolygonDistances([v.geometry for v in index.versions])
    for (lon, lat), at, k in asked:
        valid = [
            i
            for i, v in enumerate(index.versions)
            if v.valid_from <= at and (v.valid_to is None or at < v.valid_to)
        ]
        metres = everything.distances_m(lon, lat, np.array(valid, dtype=np.int64))
        point = shapely.Point(lon, lat)
        measured = [
            (0.0 if shapely.intersects(index.versions[i].geometry, point) else float(m), i)
            for i, m in zip(valid, metres, strict=True)
        ]
        expected = sorted(measured, key=lambda dm: (dm[0], index.versions[dm[1]].code))[:k]
        assert index.nearest(lon, lat, k, at) == [(i, d) for d, i in expected]
