"""The importer's checks, on plain rows and in-memory layers (no files, no database)."""

from datetime import datetime
from itertools import pairwise
from typing import Any

import geopandas as gpd
import pandas as pd
import pytest
import shapely
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from shapely.geometry import MultiPolygon, Point, Polygon, box

from geodata.dataset import layers
from geodata.dataset.geometry_checks import (
    check_polygon,
    find_outside_parent,
    find_overlaps,
    same_geometries,
)
from geodata.dataset.rows import Boundary, CurrentState, Problem, Reason
from geodata.dataset.validation import check_codes, find_missing_parents, normalise_code, validate

COMMUNITY = "610302001001"
WEST, EAST, SOUTH, NORTH = 107.15, 107.16, 34.36, 34.37
# 0.00001° is about 1 m here: 1 m² is a square of that side.
METRE = 0.00001


def grid(n: int, geom: Polygon, parent: str = COMMUNITY) -> Boundary:
    """A grid row numbered `n` within `parent`."""
    return Boundary(f"{parent}{n:03d}", parent, f"网格{n}", MultiPolygon([geom]))


def strips(cuts: list[float]) -> list[Boundary]:
    """The community cut into vertical strips at the given longitudes."""
    edges = [WEST, *cuts, EAST]
    return [grid(n + 1, box(a, SOUTH, b, NORTH)) for n, (a, b) in enumerate(pairwise(edges))]


def reasons(problems: list[Problem]) -> list[Reason]:
    """The reason of each problem, in order."""
    return [problem.reason for problem in problems]


def frames(**overrides: Any) -> dict[str, Any]:
    """A valid file's layers: a community with two grids, two workers and a POI."""
    polygons = [box(WEST, SOUTH, 107.155, NORTH), box(107.155, SOUTH, EAST, NORTH)]
    data: dict[str, Any] = {
        "communities": gpd.GeoDataFrame(
            {"code": [COMMUNITY], "street_code": ["610302001"], "name": ["清姜路社区"]},
            geometry=[box(WEST, SOUTH, EAST, NORTH)],
            crs=layers.STORAGE_CRS,
        ),
        "grids": gpd.GeoDataFrame(
            {"code": [f"{COMMUNITY}001", f"{COMMUNITY}002"], "name": ["一", "二"]},
            geometry=polygons,
            crs=layers.STORAGE_CRS,
        ),
        "workers": pd.DataFrame(
            {
                "worker_id": ["W00001", "W00002"],
                "name": ["张伟", "王芳"],
                "employment": ["full_time", "part_time"],
                "grid_code": [f"{COMMUNITY}001", f"{COMMUNITY}002"],
            }
        ),
        "pois": gpd.GeoDataFrame(
            {
                "poi_id": ["P1"],
                "name": ["超市"],
                "kind": ["shop"],
                "grid_code": [f"{COMMUNITY}001"],
            },
            geometry=[Point(107.152, 34.365)],
            crs=layers.STORAGE_CRS,
        ),
    }
    return {**data, **overrides}


def state_with_street() -> CurrentState:
    """A database that holds the community's street (and its district)."""
    street = Boundary(
        "610302001", "610302", "经二路街道", MultiPolygon([box(107.1, 34.3, 107.2, 34.4)])
    )
    return CurrentState(boundaries={"streets": {street.code: street}})


def run(data: dict[str, Any]) -> list[Problem]:
    """validate() as a first import would call it."""
    _, problems = validate(
        data, state_with_street(), repair=False, valid_from=layers.REFERENCE_VALID_FROM
    )
    return problems


def test_bow_tie_is_a_self_intersection_that_repair_cannot_fix() -> None:
    bow_tie = Polygon([(0, 0), (1, 1), (1, 0), (0, 1)])

    geom, problem, repaired = check_polygon("grids", "g1", bow_tie, repair=True)

    assert geom is None
    assert repaired is None
    assert problem is not None
    assert problem.reason == Reason.SELF_INTERSECTION
    assert "--repair would fix it" not in problem.detail


def test_twisted_corner_is_refused_but_says_repair_would_fix_it() -> None:
    d = METRE
    twisted = Polygon(
        [(EAST, SOUTH), (EAST, NORTH), (WEST, NORTH), (WEST + 2 * d, SOUTH), (WEST, SOUTH + 2 * d)]
    )

    _, problem, _ = check_polygon("grids", "g1", twisted, repair=False)
    geom, no_problem, repaired = check_polygon("grids", "g1", twisted, repair=True)

    assert problem is not None
    assert problem.reason == Reason.SELF_INTERSECTION
    assert "--repair would fix it" in problem.detail
    assert no_problem is None
    assert geom is not None
    assert geom.is_valid
    assert repaired is not None
    assert repaired.area_change <= 0.001


def test_polygon_is_promoted_to_multipolygon_and_loses_z() -> None:
    geom, problem, _ = check_polygon(
        "grids", "g1", Polygon([(0, 0, 5), (1, 0, 5), (1, 1, 5)]), repair=False
    )

    assert problem is None
    assert geom is not None
    assert geom.geom_type == "MultiPolygon"
    assert not shapely.has_z(geom)


@pytest.mark.parametrize(
    ("geom", "reason"),
    [
        (None, Reason.EMPTY_GEOMETRY),
        (Polygon(), Reason.EMPTY_GEOMETRY),
        (Point(107.15, 34.36), Reason.WRONG_GEOMETRY_TYPE),
    ],
)
def test_missing_or_wrong_geometry_is_refused(geom: Point | None, reason: Reason) -> None:
    _, problem, _ = check_polygon("grids", "g1", geom, repair=True)

    assert problem is not None
    assert problem.reason == reason


@pytest.mark.parametrize("code", ["61030200100100", "6103020010010011", "61030200100100A"])
def test_code_of_the_wrong_width_or_with_letters_is_refused(code: str) -> None:
    problems = check_codes(layers.GRIDS, [code], [code], [COMMUNITY])

    assert reasons(problems) == [Reason.BAD_CODE]


def test_code_must_start_with_its_parent_code() -> None:
    problems = check_codes(layers.GRIDS, ["g"], ["610302001002001"], [COMMUNITY])

    assert reasons(problems) == [Reason.BAD_CODE]
    assert COMMUNITY in problems[0].detail


def test_duplicate_code_names_every_row_it_appears_in() -> None:
    codes = [f"{COMMUNITY}001", f"{COMMUNITY}002", f"{COMMUNITY}001"]

    problems = check_codes(layers.GRIDS, codes, list(codes), [COMMUNITY] * 3)

    assert reasons(problems) == [Reason.DUPLICATE_CODE]
    assert problems[0].feature == f"{COMMUNITY}001"
    assert "rows 0, 2" in problems[0].detail


@pytest.mark.parametrize(
    ("value", "code"),
    [(610302.0, "610302"), (610302, "610302"), (" 610302 ", "610302"), (float("nan"), None)],
)
def test_numeric_codes_become_text(value: object, code: str | None) -> None:
    assert normalise_code(value) == code


def test_grids_sharing_edges_do_not_overlap() -> None:
    assert find_overlaps("grids", strips([107.153, 107.157])) == []


def test_overlap_below_one_square_metre_is_tolerated() -> None:
    # 4e-9° is 0.4 mm: along the 1.1 km edge that is about 0.4 m².
    rows = [
        grid(1, box(WEST, SOUTH, 107.155 + 4e-9, NORTH)),
        grid(2, box(107.155, SOUTH, EAST, NORTH)),
    ]

    assert find_overlaps("grids", rows) == []


def test_overlapping_grids_are_named_both() -> None:
    rows = [grid(1, box(WEST, SOUTH, 107.156, NORTH)), grid(2, box(107.155, SOUTH, EAST, NORTH))]

    [problem] = find_overlaps("grids", rows)

    assert problem.reason == Reason.OVERLAP
    assert problem.feature == f"{COMMUNITY}001"
    assert f"{COMMUNITY}002" in problem.detail


def test_overlap_with_a_grid_already_in_the_database_is_found() -> None:
    in_db = grid(9, box(107.155, SOUTH, EAST, NORTH))

    [problem] = find_overlaps("grids", [grid(1, box(WEST, SOUTH, 107.156, NORTH))], [in_db])

    assert "in the database" in problem.detail


def test_grid_sticking_out_of_its_community_is_refused() -> None:
    community = MultiPolygon([box(WEST, SOUTH, EAST, NORTH)])
    rows = [
        grid(1, box(WEST - 10 * METRE, SOUTH, 107.155, NORTH)),
        grid(2, box(107.155, SOUTH, EAST, NORTH)),
    ]

    problems = find_outside_parent(layers.GRIDS, rows, {COMMUNITY: community})

    assert [(p.feature, p.reason) for p in problems] == [(f"{COMMUNITY}001", Reason.OUTSIDE_PARENT)]


def test_grid_whose_community_is_nowhere_is_refused() -> None:
    problems = find_missing_parents(layers.GRIDS, strips([]), known_parents={"610302001002"})

    assert reasons(problems) == [Reason.MISSING_PARENT]


def test_boundary_moved_less_than_one_square_metre_is_unchanged() -> None:
    old = MultiPolygon([box(WEST, SOUTH, EAST, NORTH)])
    nudged = MultiPolygon([box(WEST, SOUTH, EAST + 1e-9, NORTH)])
    moved = MultiPolygon([box(WEST, SOUTH, EAST + 10 * METRE, NORTH)])

    assert same_geometries([old, old], [nudged, moved]).tolist() == [True, False]


def test_valid_file_has_no_problems() -> None:
    assert run(frames()) == []


def test_parent_code_comes_from_the_code_prefix_when_the_column_is_absent() -> None:
    parsed, problems = validate(
        frames(), state_with_street(), repair=False, valid_from=layers.REFERENCE_VALID_FROM
    )

    assert problems == []
    assert [row.parent_code for row in parsed.boundaries["grids"]] == [COMMUNITY] * 2


def test_worker_of_an_unknown_grid_is_refused() -> None:
    workers = frames()["workers"].assign(grid_code=[f"{COMMUNITY}001", f"{COMMUNITY}099"])

    problems = run(frames(workers=workers))

    assert [(p.feature, p.reason) for p in problems] == [("W00002", Reason.UNKNOWN_GRID)]


def test_worker_without_valid_from_is_assigned_from_the_import_instant() -> None:
    instant = datetime(2024, 1, 1, tzinfo=layers.LOCAL_TZ)

    parsed, _ = validate(frames(), state_with_street(), repair=False, valid_from=instant)

    assert {worker.valid_from for worker in parsed.workers} == {instant}


def test_workers_with_bad_ids_or_employment_are_refused() -> None:
    workers = frames()["workers"].assign(worker_id=["W1", "W00002"], employment=["x", "contract"])

    problems = run(frames(workers=workers))

    assert [(p.feature, p.reason) for p in problems] == [
        ("W1", Reason.BAD_CODE),
        ("W00002", Reason.BAD_VALUE),
    ]


def test_poi_outside_its_stated_grid_is_refused() -> None:
    pois = frames()["pois"].set_geometry([Point(107.158, 34.365)])

    problems = run(frames(pois=pois))

    assert [(p.feature, p.reason) for p in problems] == [("P1", Reason.OUTSIDE_PARENT)]


def test_every_problem_is_reported_not_just_the_first() -> None:
    grids = frames()["grids"].copy()
    grids.loc[0, "code"] = "61030200100100X"
    grids.loc[1, "geometry"] = Polygon(
        [(107.155, 34.36), (107.16, 34.37), (107.16, 34.36), (107.155, 34.37)]
    )
    communities = frames()["communities"].assign(name=[None])

    problems = run(frames(grids=grids, communities=communities))

    assert set(reasons(problems)) >= {
        Reason.MISSING_VALUE,
        Reason.BAD_CODE,
        Reason.SELF_INTERSECTION,
    }


def test_missing_required_column_is_refused() -> None:
    problems = run(frames(workers=frames()["workers"].drop(columns="employment")))

    assert reasons(problems) == [Reason.MISSING_COLUMN]


@settings(max_examples=40, deadline=None)
@given(
    cuts=st.lists(
        st.floats(min_value=WEST + 0.0005, max_value=EAST - 0.0005), min_size=1, max_size=8
    ).map(lambda xs: sorted({round(x, 6) for x in xs})),
    shift=st.floats(min_value=0.0001, max_value=0.0004),
    which=st.integers(min_value=0),
)
def test_any_strip_partition_passes_and_any_pushed_edge_overlaps(
    cuts: list[float], shift: float, which: int
) -> None:
    assume(all(b - a >= 0.0005 for a, b in pairwise(cuts)))  # wider than any shift
    rows = strips(cuts)
    community = {COMMUNITY: MultiPolygon([box(WEST, SOUTH, EAST, NORTH)])}
    assert find_overlaps("grids", rows) == []
    assert find_outside_parent(layers.GRIDS, rows, community) == []

    k = which % len(cuts)  # push the east edge of strip k into strip k + 1
    west = rows[k].geom.bounds[0]
    pushed = [*rows[:k], grid(k + 1, box(west, SOUTH, cuts[k] + shift, NORTH)), *rows[k + 1 :]]

    [problem] = find_overlaps("grids", pushed)
    assert {problem.feature, problem.detail.split()[1]} == {rows[k].code, rows[k + 1].code}
