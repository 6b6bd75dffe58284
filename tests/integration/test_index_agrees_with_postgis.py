"""The in-memory grid index against PostGIS on the reference dataset: every point, every rule.

PostGIS's answer is the rules written in SQL: among the grid versions valid at the
event's time, those with ST_Covers(geom, point), smallest code; if none, the nearest with
ST_Distance(ST_Transform(geom, 4547), ST_Transform(point, 4547)) <= 30 m, ties to the
smallest code; else outside. It is asked set-based (one query over a temp table) so
that a test set of over 100,000 points runs in seconds.
"""

import itertools
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from fractions import Fraction

import numpy as np
import numpy.typing as npt
import psycopg
import pytest
import shapely
from pyproj import Transformer
from shapely.geometry.base import BaseGeometry
from sqlalchemy import Engine, text

from geodata.dataset.layers import LOCAL_TZ, METRIC_CRS, REFERENCE_VALID_FROM, STORAGE_CRS
from geodata.db.engine import create_db_engine
from geodata.db.grid_cache import SNAPSHOT_TABLES
from geodata.db.grid_versions import load_grid_versions
from geodata.db.stamps import read_stamp
from geodata.spatial_index import AssignmentRule, GridIndex, GridVersion, Located
from wangge.benchmarks.locate import run_locate_benchmark

pytestmark = pytest.mark.integration

FloatArray = npt.NDArray[np.float64]
TimeArray = npt.NDArray[np.datetime64]

SEED = 71
REFERENCE_GRIDS = 1138
TOLERANCE_M = 30.0
METRIC_SRID = int(METRIC_CRS.removeprefix("EPSG:"))
CHANGE_AT = datetime(2023, 7, 1, tzinfo=LOCAL_TZ)
TAKEN_RADIUS_M = 80.0
FIRST_EVENT = np.datetime64("2019-12-25T00:00:00", "us")
LAST_EVENT = np.datetime64("2026-01-01T00:00:00", "us")
# A nanodegree (0.1 mm) is far above rounding (1e-14 degrees) and far below anything
# else in a grid: it moves a point off an edge without changing what is near it.
NANODEGREE = 1e-9

_REFERENCE_SQL = """
SELECT p.id, covering.code, covering.n, nearest.code, nearest.distance
FROM locate_points p
CROSS JOIN LATERAL (SELECT ST_SetSRID(ST_MakePoint(p.lon, p.lat), 4326) AS geom) pt
LEFT JOIN LATERAL (
    SELECT min(g.code) AS code, count(DISTINCT g.code) AS n
    FROM grids g
    WHERE ST_Covers(g.geom, pt.geom)
      AND g.valid_from <= p.t AND (g.valid_to IS NULL OR p.t < g.valid_to)
) covering ON true
LEFT JOIN LATERAL (
    SELECT g.code,
           ST_Distance(ST_Transform(g.geom, %(srid)s), ST_Transform(pt.geom, %(srid)s))
               AS distance
    FROM grids g
    WHERE covering.n = 0
      -- a box of degrees that holds everything within the tolerance; only pre-selects
      AND g.geom && ST_Expand(pt.geom, %(box)s)
      AND g.valid_from <= p.t AND (g.valid_to IS NULL OR p.t < g.valid_to)
      AND ST_Distance(ST_Transform(g.geom, %(srid)s), ST_Transform(pt.geom, %(srid)s))
          <= %(tolerance)s
    ORDER BY distance, g.code
    LIMIT 1
) nearest ON true
ORDER BY p.id
"""


@dataclass(frozen=True)
class BoundaryChange:
    """Part of `loser` (`taken`) passed to its neighbour `gainer` at CHANGE_AT."""

    loser: str
    gainer: str
    taken: BaseGeometry


@dataclass(frozen=True)
class Reference:
    """A copy of the reference database, with one boundary change applied."""

    url: str
    engine: Engine
    change: BoundaryChange


@dataclass(frozen=True)
class Answers:
    """Codes, rules and distances for a batch, in input order, as plain comparable arrays."""

    codes: npt.NDArray[np.object_]
    rules: npt.NDArray[np.object_]
    distances_m: FloatArray

    @classmethod
    def of(cls, located: Located) -> "Answers":
        """The index's answers."""
        rules = np.array([str(rule) for rule in located.rules], dtype=object)
        return cls(located.codes, rules, located.distances_m)


@pytest.fixture(scope="module")
def reference(reference_database_factory: Callable[[], str]) -> Iterator[Reference]:
    """The reference dataset (seed 2020, 1,138 grids) plus one boundary change."""
    url = reference_database_factory()
    engine = create_db_engine(url)
    change = _change_a_boundary(engine)
    yield Reference(url, engine, change)
    engine.dispose()


@pytest.fixture(scope="module")
def index(reference: Reference) -> GridIndex:
    """The index over every grid version in the database."""
    return GridIndex.build(load_grid_versions(reference.engine), tolerance_m=TOLERANCE_M)


def test_index_agrees_with_postgis_on_every_point(reference: Reference, index: GridIndex) -> None:
    categories, lon, lat, at = _test_points(index, reference.change)
    assert len(lon) >= 100_000

    ours = Answers.of(index.locate(lon, lat, at))
    theirs = _postgis_locate(reference.url, lon, lat, at)

    disagree = (ours.codes != theirs.codes) | (ours.rules != theirs.rules)
    _print_summary(categories, ours, disagree)
    for i in np.flatnonzero(disagree)[:10]:
        print(
            f"DISAGREE {categories[i]} lon={lon[i]!r} lat={lat[i]!r} t={at[i]}: "
            f"index {ours.codes[i]} {ours.rules[i]} {ours.distances_m[i]!r}, "
            f"PostGIS {theirs.codes[i]} {theirs.rules[i]} {theirs.distances_m[i]!r}"
        )
    assert int(disagree.sum()) == 0
    # Same rows, different code paths for the distance: equal to far below a millimetre.
    np.testing.assert_allclose(ours.distances_m, theirs.distances_m, rtol=0, atol=1e-6)
    # The set exercises every rule, and shared vertices really are shared.
    assert set(ours.rules) == {str(rule) for rule in AssignmentRule}
    assert Counter(ours.rules[categories == "vertex"])["boundary_tiebreak"] > 1000


def test_events_are_assigned_with_the_boundary_valid_when_they_happened(
    reference: Reference, index: GridIndex
) -> None:
    change = reference.change
    lon, lat = _points_inside(change.taken, 200, np.random.default_rng(SEED))
    moments = [CHANGE_AT - timedelta(days=1), CHANGE_AT - timedelta(microseconds=1), CHANGE_AT]
    expected = [change.loser, change.loser, change.gainer]
    for moment, code in zip(moments, expected, strict=True):
        at = np.full(len(lon), _datetime64(moment))
        ours = Answers.of(index.locate(lon, lat, at))
        theirs = _postgis_locate(reference.url, lon, lat, at)
        assert set(ours.codes) == {code}
        assert set(ours.rules) == {"contains"}
        assert (ours.codes == theirs.codes).all()


def test_points_a_hair_off_a_shared_edge_follow_exact_arithmetic(
    reference: Reference, index: GridIndex
) -> None:
    """Where plain double arithmetic misjudges a point's side of an edge, GEOS does not.

    GEOS decides on which side of a segment a point lies with exact (robust) predicates;
    PostGIS's own point-in-polygon (used by ST_Covers for points) computes the same
    determinant in plain doubles, which can round to 0 ("on the edge") or to the wrong
    sign for points within about 1e-10 m of an edge. The index must give the exactly
    right grid there, i.e. the one PostGIS gives a nanodegree further on the same side.
    """
    now = datetime.now(UTC)
    edges = _shared_edges([v for v in index.versions if v.valid_to is None])
    hard, control = _near_edge_lattice_points(edges, np.random.default_rng(SEED))
    assert len(hard) > 0, "the lattice scan found no point that plain doubles misjudge"

    points = np.vstack([hard, control])
    lon, lat, side = points[:, 0], points[:, 1], points[:, 2:]
    pushed_lon, pushed_lat = lon + side[:, 0] * NANODEGREE, lat + side[:, 1] * NANODEGREE
    at = np.full(len(lon), _datetime64(now))
    ours = Answers.of(index.locate(lon, lat, at))
    pushed = Answers.of(index.locate(pushed_lon, pushed_lat, at))
    theirs = _postgis_locate(reference.url, lon, lat, at)
    theirs_pushed = _postgis_locate(reference.url, pushed_lon, pushed_lat, at)

    assert (pushed.codes == theirs_pushed.codes).all()
    assert (ours.codes == pushed.codes).all()
    assert set(ours.rules) == {"contains"}
    differs = (ours.codes != theirs.codes) | (ours.rules != theirs.rules)
    hard_disagree, control_disagree = differs[: len(hard)], differs[len(hard) :]
    print(
        f"\nlattice points a hair off shared edges: {len(hard)} that plain doubles misjudge, "
        f"of which PostGIS decides {int(hard_disagree.sum())} differently from GEOS; "
        f"{len(control)} controls, {int(control_disagree.sum())} disagreements"
    )
    assert int(control_disagree.sum()) == 0


def test_load_grid_versions_reads_every_version_bit_for_bit(
    reference: Reference, index: GridIndex
) -> None:
    versions = index.versions
    current = [v for v in versions if v.valid_to is None]
    closed = [v for v in versions if v.valid_to is not None]
    assert len(current) == REFERENCE_GRIDS
    assert {v.code for v in closed} == {reference.change.loser, reference.change.gainer}
    assert all(v.valid_to == CHANGE_AT for v in closed)
    assert all(v.valid_from.tzinfo is not None for v in versions)
    with reference.engine.connect() as conn:
        stored = conn.execute(
            text("SELECT ST_AsBinary(geom) FROM grids ORDER BY code, valid_from")
        ).scalars()
        geometries = shapely.from_wkb([bytes(wkb) for wkb in stored])
    loaded = np.array([v.geometry for v in versions], dtype=object)
    assert shapely.equals_exact(loaded, geometries, tolerance=0).all()


def test_projected_vertices_are_the_same_doubles_as_st_transform(
    reference: Reference, index: GridIndex
) -> None:
    # The index projects with pyproj, PostGIS with its own PROJ: distances can only agree
    # to the last bit at ties and at the tolerance if the projected vertices do.
    with reference.engine.connect() as conn:
        stored = conn.execute(
            text(
                "SELECT ST_AsBinary(ST_Transform(geom, :srid)) FROM grids ORDER BY code, valid_from"
            ),
            {"srid": METRIC_SRID},
        ).scalars()
        theirs = shapely.get_coordinates(shapely.from_wkb([bytes(wkb) for wkb in stored]))
    lon_lat = shapely.get_coordinates([v.geometry for v in index.versions])
    project = Transformer.from_crs(STORAGE_CRS, METRIC_CRS, always_xy=True)
    ours = np.column_stack(project.transform(lon_lat[:, 0], lon_lat[:, 1]))
    assert ours.shape == theirs.shape
    assert (ours == theirs).all()


def test_locate_benchmark_compares_the_same_points_and_reports_a_ratio(
    reference: Reference,
) -> None:
    # Timings are reported by `wangge bench`, never asserted.
    figures = run_locate_benchmark(reference.engine, points=10_000)
    assert figures["disagreements"] == 0
    assert figures["speedup"] > 0


def test_snapshot_stamp_changes_when_a_version_is_inserted_or_closed(engine: Engine) -> None:
    square = _ewkt(shapely.box(107.1, 34.3, 107.2, 34.4))
    with engine.begin() as conn:
        for statement in (
            "INSERT INTO districts (code, name, geom) VALUES ('610302', 'd', :g)",
            "INSERT INTO streets (code, district_code, name, geom)"
            " VALUES ('610302001', '610302', 's', :g)",
            "INSERT INTO communities (code, street_code, name, geom)"
            " VALUES ('610302001001', '610302001', 'c', :g)",
        ):
            conn.execute(text(statement), {"g": square})
    empty = _snapshot_stamp(engine)
    _insert_grid(engine, "610302001001001", shapely.box(107.1, 34.3, 107.15, 34.4), 2022)
    one = _snapshot_stamp(engine)
    _insert_grid(engine, "610302001001002", shapely.box(107.15, 34.3, 107.2, 34.4), 2024)
    two = _snapshot_stamp(engine)
    assert _snapshot_stamp(engine) == two
    # Closed at a time earlier than the newest valid_from: no maximum moves, but the stamp.
    with engine.begin() as conn:
        conn.execute(
            text("UPDATE grids SET valid_to = :t WHERE code = '610302001001001'"),
            {"t": datetime(2023, 1, 1, tzinfo=LOCAL_TZ)},
        )
    closed = _snapshot_stamp(engine)
    assert len({empty, one, two, closed}) == 4
    # The first table's count is the number of grid versions.
    assert [s.split(":")[0] for s in (empty, one, two, closed)] == ["0", "1", "2", "2"]
    assert len(load_grid_versions(engine)) == 2


def _snapshot_stamp(engine: Engine) -> str:
    with engine.connect() as conn:
        return read_stamp(conn, SNAPSHOT_TABLES)


# --- the boundary change --------------------------------------------------------------


def _change_a_boundary(engine: Engine) -> BoundaryChange:
    """Move a disk around the middle of one shared edge from one grid to its neighbour."""
    current = [v for v in load_grid_versions(engine) if v.valid_to is None]
    assert len(current) == REFERENCE_GRIDS
    by_code = {v.code: v for v in current}
    (p1, p2), (loser, gainer) = _longest_shared_edge_in_a_community(current)
    to_metric = Transformer.from_crs(STORAGE_CRS, METRIC_CRS, always_xy=True)
    to_storage = Transformer.from_crs(METRIC_CRS, STORAGE_CRS, always_xy=True)
    middle = to_metric.transform((p1[0] + p2[0]) / 2, (p1[1] + p2[1]) / 2)
    disk = shapely.transform(shapely.Point(middle).buffer(TAKEN_RADIUS_M), _apply(to_storage))
    # Set operations in EPSG:4326, so every vertex not on the disk keeps its stored bits
    # and the other neighbours' shared edges stay exact.
    taken = shapely.intersection(by_code[loser].geometry, disk)
    new_loser = shapely.difference(by_code[loser].geometry, taken)
    new_gainer = shapely.union(by_code[gainer].geometry, taken)
    with engine.begin() as conn:
        conn.execute(
            text("UPDATE grids SET valid_to = :t WHERE code IN (:a, :b) AND valid_to IS NULL"),
            {"t": CHANGE_AT, "a": loser, "b": gainer},
        )
        for code, geometry in ((loser, new_loser), (gainer, new_gainer)):
            conn.execute(
                text(
                    "INSERT INTO grids (code, community_code, name, households, geom, valid_from)"
                    " SELECT code, community_code, name, households,"
                    " ST_Multi(ST_GeomFromWKB(:wkb, 4326)), :t"
                    " FROM grids WHERE code = :code AND valid_to = :t"
                ),
                {"wkb": shapely.to_wkb(geometry), "t": CHANGE_AT, "code": code},
            )
    return BoundaryChange(loser, gainer, taken)


def _longest_shared_edge_in_a_community(
    versions: list[GridVersion],
) -> tuple[tuple[tuple[float, float], tuple[float, float]], tuple[str, str]]:
    """The longest segment shared by two grids of one community, and their codes."""
    owners: dict[tuple[tuple[float, float], tuple[float, float]], list[str]] = {}
    for version in versions:
        for p1, p2 in _segments(version.geometry):
            owners.setdefault(_undirected(p1, p2), []).append(version.code)
    shared = [
        (segment, sorted(codes))
        for segment, codes in owners.items()
        if len(codes) == 2 and codes[0][:12] == codes[1][:12]
    ]
    segment, codes = max(shared, key=lambda s: np.hypot(*np.subtract(s[0][1], s[0][0])))
    return segment, (codes[0], codes[1])


def _points_inside(area: BaseGeometry, n: int, rng: np.random.Generator) -> tuple[FloatArray, ...]:
    """`n` random points well inside `area` (a few metres from its boundary)."""
    inner = shapely.buffer(area, -5e-5)
    xmin, ymin, xmax, ymax = shapely.bounds(inner)
    found: list[FloatArray] = []
    while sum(len(f) for f in found) < n:
        xy = np.column_stack([rng.uniform(xmin, xmax, 4 * n), rng.uniform(ymin, ymax, 4 * n)])
        found.append(xy[shapely.contains_xy(inner, xy[:, 0], xy[:, 1])])
    xy = np.vstack(found)[:n]
    return xy[:, 0], xy[:, 1]


# --- the test set ---------------------------------------------------------------------


def _test_points(
    index: GridIndex, change: BoundaryChange
) -> tuple[npt.NDArray[np.str_], FloatArray, FloatArray, TimeArray]:
    """Over 100,000 points in named categories, with event times from 2019-12 to 2026."""
    rng = np.random.default_rng(SEED)
    geometries = np.array([v.geometry for v in index.versions], dtype=object)
    segments = np.array(
        [(*p1, *p2) for g in geometries for p1, p2 in _segments(g)], dtype=np.float64
    )
    unique_segments = np.unique(
        np.array([(*a, *b) for a, b in {_undirected(s[:2], s[2:]) for s in segments}]), axis=0
    )
    parts: dict[str, FloatArray] = {}
    # Grid vertices, shared by 2 or 3 grids (1 on the urban area's outline).
    parts["vertex"] = np.unique(shapely.get_coordinates(geometries), axis=0)
    # Points interpolated on edges: in floating point, almost never exactly on them.
    s = segments[rng.integers(0, len(segments), 35_000)]
    f = rng.random((len(s), 1))
    parts["edge"] = s[:, :2] + f * (s[:, 2:] - s[:, :2])
    parts["edge_midpoint"] = (unique_segments[:, :2] + unique_segments[:, 2:]) / 2
    xmin, ymin, xmax, ymax = shapely.total_bounds(geometries)
    parts["anywhere"] = np.column_stack(
        [rng.uniform(xmin, xmax, 35_000), rng.uniform(ymin, ymax, 35_000)]
    )
    parts["near_outline"] = _off_the_outline(geometries, rng, rng.uniform(0, 60, 20_000))
    parts["near_tolerance"] = _off_the_outline(geometries, rng, rng.uniform(29.5, 30.5, 5_000))
    parts["far"] = np.column_stack(
        [rng.uniform(xmin - 0.05, xmax + 0.05, 2_000), rng.uniform(ymin - 0.05, ymin, 2_000)]
    )
    parts["changed_area"] = np.column_stack(_points_inside(change.taken, 3_000, rng))

    categories: npt.NDArray[np.str_] = np.concatenate(
        [np.full(len(xy), name) for name, xy in parts.items()]
    )
    xy = np.vstack(list(parts.values()))
    offsets = rng.integers(0, (LAST_EVENT - FIRST_EVENT).astype(np.int64), len(xy))
    at: TimeArray = FIRST_EVENT + offsets.astype("timedelta64[us]")
    # At the change and at the reference's own start, and a microsecond before each.
    edges_in_time = [CHANGE_AT, REFERENCE_VALID_FROM]
    pick = rng.random(len(xy))
    for i, moment in enumerate(edges_in_time):
        at[(pick >= 0.04 * i) & (pick < 0.04 * i + 0.02)] = _datetime64(moment)
        at[(pick >= 0.04 * i + 0.02) & (pick < 0.04 * i + 0.04)] = _datetime64(
            moment - timedelta(microseconds=1)
        )
    changed = categories == "changed_area"
    around = _datetime64(CHANGE_AT) + rng.integers(-30, 30, changed.sum()) * np.timedelta64(1, "D")
    at[changed] = around
    return categories, xy[:, 0], xy[:, 1], at


def _off_the_outline(
    geometries: npt.NDArray[np.object_], rng: np.random.Generator, distances_m: FloatArray
) -> FloatArray:
    """Points `distances_m` away from random points of the urban outline, any direction."""
    to_metric = Transformer.from_crs(STORAGE_CRS, METRIC_CRS, always_xy=True)
    to_storage = Transformer.from_crs(METRIC_CRS, STORAGE_CRS, always_xy=True)
    current = shapely.union_all(geometries)
    outline = shapely.transform(shapely.boundary(current), _apply(to_metric))
    along = shapely.line_interpolate_point(
        outline, rng.uniform(0, outline.length, len(distances_m))
    )
    xy = shapely.get_coordinates(along)
    angle = rng.uniform(0, 2 * np.pi, len(distances_m))
    x = xy[:, 0] + distances_m * np.cos(angle)
    y = xy[:, 1] + distances_m * np.sin(angle)
    return np.column_stack(to_storage.transform(x, y))


# --- points a hair off shared edges ---------------------------------------------------


def _near_edge_lattice_points(
    edges: FloatArray, rng: np.random.Generator
) -> tuple[FloatArray, FloatArray]:
    """Floating-point neighbours of points on shared edges, where rounding matters.

    Returns (hard, control) rows of (lon, lat, unit normal towards the point's exact
    side): `hard` where the plain-double side test of PostGIS gives 0 or the wrong sign
    for either direction of the edge, `control` where it is right though the point is
    as close.
    """
    steps = np.arange(-4, 5)
    dx, dy = (a.ravel() for a in np.meshgrid(steps, steps))
    hard: list[tuple[float, ...]] = []
    control: list[tuple[float, ...]] = []
    for _ in range(16):
        e = edges[rng.integers(0, len(edges), 25_000)]
        f = rng.uniform(0.05, 0.95, (len(e), 1))
        q = e[:, :2] + f * (e[:, 2:] - e[:, :2])
        qx = (q[:, :1] + dx * np.spacing(q[:, :1])).ravel()
        qy = (q[:, 1:] + dy * np.spacing(q[:, 1:])).ravel()
        e = np.repeat(e, len(dx), axis=0)
        forward = _plain_side(e[:, 0], e[:, 1], e[:, 2], e[:, 3], qx, qy)
        backward = _plain_side(e[:, 2], e[:, 3], e[:, 0], e[:, 1], qx, qy)
        # Plain doubles err by at most ~1e-21 here; beyond that they have the sign right.
        for i in np.flatnonzero(np.minimum(np.abs(forward), np.abs(backward)) < 2e-21):
            exact = _exact_side(e[i], qx[i], qy[i])
            if exact == 0:
                continue  # exactly on the edge: a tie for everyone
            normal = np.array([e[i, 3] - e[i, 1], e[i, 0] - e[i, 2]]) * exact
            row = (qx[i], qy[i], *(normal / np.hypot(*normal)))
            plain_right = np.sign(forward[i]) == exact and np.sign(backward[i]) == -exact
            (control if plain_right else hard).append(row)
    return np.array(hard).reshape(-1, 4), np.array(control[:500]).reshape(-1, 4)


def _plain_side(
    x1: FloatArray, y1: FloatArray, x2: FloatArray, y2: FloatArray, qx: FloatArray, qy: FloatArray
) -> FloatArray:
    """PostGIS's lw_segment_side determinant, in the same plain double arithmetic."""
    return (qx - x1) * (y2 - y1) - (x2 - x1) * (qy - y1)


def _exact_side(edge: FloatArray, qx: float, qy: float) -> int:
    """The sign of the same determinant in exact rational arithmetic."""
    x1, y1, x2, y2 = (Fraction(float(v)) for v in edge)
    det = (Fraction(float(qx)) - x1) * (y2 - y1) - (x2 - x1) * (Fraction(float(qy)) - y1)
    return (det > 0) - (det < 0)


def _shared_edges(versions: list[GridVersion]) -> FloatArray:
    """Segments that belong to exactly two of the given grids, as (x1, y1, x2, y2) rows."""
    count = Counter(_undirected(p1, p2) for v in versions for p1, p2 in _segments(v.geometry))
    return np.array([(*a, *b) for (a, b), n in count.items() if n == 2], dtype=np.float64)


# --- PostGIS --------------------------------------------------------------------------


def _postgis_locate(url: str, lon: FloatArray, lat: FloatArray, at: TimeArray) -> Answers:
    """The rules answered by PostGIS for every point at once (COPY + one LATERAL query)."""
    times = at.astype("datetime64[us]").astype(datetime)
    params = {
        "srid": METRIC_SRID,
        "tolerance": TOLERANCE_M,
        # A degree of longitude is longer than 50 km up to 63° N.
        "box": TOLERANCE_M / 50_000,
    }
    with psycopg.connect(url) as conn:
        conn.execute(
            "CREATE TEMP TABLE locate_points (id int, lon float8, lat float8, t timestamptz)"
            " ON COMMIT DROP"
        )
        with conn.cursor().copy("COPY locate_points FROM STDIN (FORMAT BINARY)") as copy:
            # Binary COPY: the doubles arrive bit for bit, which edge points depend on.
            copy.set_types(["int4", "float8", "float8", "timestamptz"])
            for i in range(len(lon)):
                copy.write_row((i, float(lon[i]), float(lat[i]), times[i].replace(tzinfo=UTC)))
        conn.execute("ANALYZE locate_points")
        rows = conn.execute(_REFERENCE_SQL, params).fetchall()
    codes = np.full(len(rows), None, dtype=object)
    rules = np.full(len(rows), "outside_area", dtype=object)
    distances = np.full(len(rows), np.nan)
    for i, (_, covering_code, covering_n, nearest_code, distance) in enumerate(rows):
        if covering_n:
            codes[i], distances[i] = covering_code, 0.0
            rules[i] = "contains" if covering_n == 1 else "boundary_tiebreak"
        elif nearest_code is not None:
            codes[i], rules[i], distances[i] = nearest_code, "nearest_within_tolerance", distance
    return Answers(codes, rules, distances)


# --- helpers --------------------------------------------------------------------------


def _segments(
    geometry: BaseGeometry,
) -> Iterator[tuple[tuple[float, float], tuple[float, float]]]:
    """Every ring segment of a (multi)polygon, as pairs of coordinate tuples."""
    for ring in shapely.get_rings(shapely.get_parts(geometry)):
        xy = shapely.get_coordinates(ring)
        for a, b in itertools.pairwise(xy):
            yield (float(a[0]), float(a[1])), (float(b[0]), float(b[1]))


def _undirected(
    p1: tuple[float, float] | FloatArray, p2: tuple[float, float] | FloatArray
) -> tuple[tuple[float, float], tuple[float, float]]:
    a, b = (float(p1[0]), float(p1[1])), (float(p2[0]), float(p2[1]))
    return (a, b) if a <= b else (b, a)


def _apply(transformer: Transformer) -> Callable[[FloatArray], FloatArray]:
    def apply(xy: FloatArray) -> FloatArray:
        return np.column_stack(transformer.transform(xy[:, 0], xy[:, 1]))

    return apply


def _datetime64(moment: datetime) -> np.datetime64:
    return np.datetime64(moment.astimezone(UTC).replace(tzinfo=None), "us")


def _ewkt(geometry: BaseGeometry) -> str:
    return f"SRID=4326;{shapely.to_wkt(shapely.multipolygons([geometry]))}"


def _insert_grid(engine: Engine, code: str, polygon: BaseGeometry, year: int) -> None:
    with engine.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO grids (code, community_code, name, geom, valid_from)"
                " VALUES (:code, :community, :name, :g, :t)"
            ),
            {
                "code": code,
                "community": code[:12],
                "name": f"grid {code}",
                "g": _ewkt(polygon),
                "t": datetime(year, 1, 1, tzinfo=LOCAL_TZ),
            },
        )


def _print_summary(
    categories: npt.NDArray[np.str_], answers: Answers, disagree: npt.NDArray[np.bool_]
) -> None:
    print(f"\n{len(categories)} points; disagreements with PostGIS: {int(disagree.sum())}")
    for name in dict.fromkeys(categories):
        mask = categories == name
        rules = Counter(answers.rules[mask])
        print(
            f"  {name:15} {int(mask.sum()):6}  {dict(rules)}  disagree={int(disagree[mask].sum())}"
        )
