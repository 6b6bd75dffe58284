"""Checking an import: the file's layers become plain rows, and every rule is checked on them.

Nothing here reads files or talks to the database. Geometries are shapely objects in
EPSG:4326, and the topology (intersections, differences) is computed there, as PostGIS
does on the stored columns; every area or distance that is compared with a tolerance is
then measured in metres, in the metric CRS.
"""

import re
import threading
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import NamedTuple

import geopandas as gpd
import numpy as np
import numpy.typing as npt
import pandas as pd
import shapely
from pyproj import Transformer
from shapely.geometry import MultiPolygon, Point, Polygon
from shapely.geometry.base import BaseGeometry

from geodata.dataset.layers import (
    EMPLOYMENT_KINDS,
    LEVEL_BY_LAYER,
    LEVELS,
    LOCAL_TZ,
    METRIC_CRS,
    POIS_LAYER,
    STORAGE_CRS,
    WORKERS_LAYER,
    LevelSpec,
)

#: Overlaps and parts outside a parent smaller than this are rounding, not errors (m²).
AREA_TOLERANCE_M2 = 1.0
#: A POI this close to its grid counts as inside it (m).
POINT_TOLERANCE_M = 0.01
#: `--repair` may change a polygon's area by at most this fraction (0.1 %).
REPAIR_MAX_AREA_CHANGE = 0.001

WORKER_ID_PATTERN = re.compile(r"W[0-9]{5}")
POI_ID_MAX_LENGTH = 16
_DIGITS = re.compile(r"[0-9]+")

GeometryArray = npt.NDArray[np.object_]


class Reason(StrEnum):
    """Stable machine-readable reason of a problem; the CLI and the API show these codes."""

    UNSUPPORTED_FORMAT = "unsupported_format"
    UNREADABLE_FILE = "unreadable_file"
    EMPTY_FILE = "empty_file"
    UNRECOGNISED_LAYER = "unrecognised_layer"
    MISSING_COLUMN = "missing_column"
    MISSING_CRS = "missing_crs"
    UNSUPPORTED_CRS = "unsupported_crs"
    WRONG_CRS = "wrong_crs"
    EMPTY_GEOMETRY = "empty_geometry"
    WRONG_GEOMETRY_TYPE = "wrong_geometry_type"
    INVALID_GEOMETRY = "invalid_geometry"
    SELF_INTERSECTION = "self_intersection"
    BAD_CODE = "bad_code"
    DUPLICATE_CODE = "duplicate_code"
    MISSING_VALUE = "missing_value"
    BAD_VALUE = "bad_value"
    MISSING_PARENT = "missing_parent"
    OUTSIDE_PARENT = "outside_parent"
    OVERLAP = "overlap"
    UNKNOWN_GRID = "unknown_grid"
    VALID_FROM_TOO_EARLY = "valid_from_too_early"


@dataclass(frozen=True)
class Problem:
    """One reason to refuse a file: which layer, which feature (code, id or row), why."""

    layer: str
    feature: str | None
    reason: Reason
    detail: str

    def __str__(self) -> str:
        where = self.layer if self.feature is None else f"{self.layer} {self.feature}"
        return f"{where}: {self.reason.value}: {self.detail}"


@dataclass(frozen=True)
class Repair:
    """A polygon that `--repair` made valid, and by how much its area changed (a fraction)."""

    layer: str
    feature: str
    area_change: float

    def __str__(self) -> str:
        return f"{self.layer} {self.feature}: repaired (area changed by {self.area_change:.4%})"


@dataclass(frozen=True)
class Boundary:
    """A district, street, community or grid: code, parent code, attributes, MultiPolygon."""

    code: str
    parent_code: str | None
    name: str
    geom: BaseGeometry
    name_en: str | None = None
    households: int | None = None

    def same_attributes(self, other: "Boundary") -> bool:
        """True when every attribute but the geometry is equal."""
        mine = (self.parent_code, self.name, self.name_en, self.households)
        return mine == (other.parent_code, other.name, other.name_en, other.households)


class Person(NamedTuple):
    """A worker's own attributes, apart from their assignment."""

    name: str
    phone: str | None
    employment: str
    party_role: str | None


@dataclass(frozen=True)
class Worker:
    """A grid worker and the grid they are assigned to from `valid_from` on."""

    worker_id: str
    person: Person
    grid_code: str
    valid_from: datetime


@dataclass(frozen=True)
class Poi:
    """A point of interest and the grid it is stated to lie in."""

    poi_id: str
    name: str
    kind: str
    grid_code: str
    geom: BaseGeometry


@dataclass
class CurrentState:
    """What the database holds now: current boundary versions, workers, assignments, POIs."""

    boundaries: dict[str, dict[str, Boundary]] = field(default_factory=dict)
    grid_valid_from: dict[str, datetime] = field(default_factory=dict)
    workers: dict[str, Person] = field(default_factory=dict)
    #: worker_id → (grid_code, valid_from) of each open assignment, oldest first.
    assignments: dict[str, list[tuple[str, datetime]]] = field(default_factory=dict)
    pois: dict[str, Poi] = field(default_factory=dict)

    def layer(self, name: str) -> dict[str, Boundary]:
        """Current rows of one boundary layer by code (empty when there are none)."""
        return self.boundaries.get(name, {})


@dataclass
class ParsedImport:
    """The file's features as checked rows per layer, and every well-formed code it holds."""

    boundaries: dict[str, list[Boundary]] = field(default_factory=dict)
    codes: dict[str, set[str]] = field(default_factory=lambda: defaultdict(set))
    workers: list[Worker] = field(default_factory=list)
    pois: list[Poi] = field(default_factory=list)
    repairs: list[Repair] = field(default_factory=list)


def validate(
    frames: Mapping[str, pd.DataFrame], state: CurrentState, *, repair: bool, valid_from: datetime
) -> tuple[ParsedImport, list[Problem]]:
    """Every check on every layer, top-down, against the file and what the database holds."""
    parsed = ParsedImport()
    problems: list[Problem] = []
    for level in LEVELS:
        if level.layer not in frames:
            continue
        rows, codes, found, repairs = _parse_boundaries(level, frames[level.layer], repair)
        parsed.boundaries[level.layer], parsed.codes[level.layer] = rows, codes
        parsed.repairs += repairs
        problems += found + _cross_check(level, rows, parsed, state)
    known_grids = parsed.codes["grids"] | state.layer("grids").keys()
    if WORKERS_LAYER in frames:
        parsed.workers, found = _parse_workers(frames[WORKERS_LAYER], valid_from)
        problems += found + find_unknown_grids(WORKERS_LAYER, parsed.workers, known_grids)
    if POIS_LAYER in frames:
        parsed.pois, found = _parse_pois(frames[POIS_LAYER])
        problems += found + find_unknown_grids(POIS_LAYER, parsed.pois, known_grids)
        grids = _geometries(state.layer("grids").values(), parsed.boundaries.get("grids", []))
        problems += find_pois_outside_grid(POIS_LAYER, parsed.pois, grids)
    return parsed, problems


def _cross_check(
    level: LevelSpec, rows: list[Boundary], parsed: ParsedImport, state: CurrentState
) -> list[Problem]:
    """Parents exist and contain their children; siblings (file and database) do not overlap."""
    problems: list[Problem] = []
    if level.parent_layer is not None:
        in_db = state.layer(level.parent_layer)
        problems += find_missing_parents(
            level, rows, parsed.codes[level.parent_layer] | in_db.keys()
        )
        parents = _geometries(in_db.values(), parsed.boundaries.get(level.parent_layer, []))
        problems += find_outside_parent(level, rows, parents)
    in_file = parsed.codes[level.layer]
    others = [row for code, row in state.layer(level.layer).items() if code not in in_file]
    return problems + find_overlaps(level.layer, rows, others)


def _geometries(*sources: Iterable[Boundary]) -> dict[str, BaseGeometry]:
    """Geometry by code; a later source (the file) wins over an earlier one (the database)."""
    return {row.code: row.geom for source in sources for row in source}


def _parse_boundaries(
    level: LevelSpec, frame: pd.DataFrame, repair: bool
) -> tuple[list[Boundary], set[str], list[Problem], list[Repair]]:
    """Rows with a good code and geometry, all good codes, the problems and the repairs."""
    problems = _missing_columns(level.layer, frame, ("code", "name"))
    if problems:
        return [], set(), problems, []
    codes = [normalise_code(value) for value in _values(frame, "code")]
    labels = [code or f"row {row}" for row, code in enumerate(codes)]
    parents = _parent_codes(level, frame, codes)
    problems = check_codes(level, labels, codes, parents)
    names = [_text(value) for value in _values(frame, "name")]
    problems += _missing_values(level.layer, labels, "name", names)
    households, bad = _counts(_values(frame, "households"))
    detail = "households is not a whole number ≥ 0"
    problems += [Problem(level.layer, labels[row], Reason.BAD_VALUE, detail) for row in bad]
    name_en = [_text(value) for value in _values(frame, "name_en")]
    geoms = frame.geometry.tolist() if isinstance(frame, gpd.GeoDataFrame) else [None] * len(frame)
    rows: list[Boundary] = []
    good_codes: set[str] = set()
    repairs: list[Repair] = []
    for row, (label, code, parent) in enumerate(zip(labels, codes, parents, strict=True)):
        geom, problem, repaired = check_polygon(level.layer, label, geoms[row], repair=repair)
        problems += [problem] if problem is not None else []
        repairs += [repaired] if repaired is not None else []
        if code is None or code_problem(level, code, parent) is not None:
            continue
        if geom is not None and code not in good_codes:
            name = names[row] or ""
            rows.append(Boundary(code, parent, name, geom, name_en[row], households[row]))
        good_codes.add(code)
    return rows, good_codes, problems, repairs


def _parent_codes(
    level: LevelSpec, frame: pd.DataFrame, codes: list[str | None]
) -> list[str | None]:
    """The parent column where the file fills it, else the code's prefix."""
    if level.parent_column is None or level.parent_layer is None:
        return [None] * len(codes)
    width = LEVEL_BY_LAYER[level.parent_layer].code_length
    given = [normalise_code(value) for value in _values(frame, level.parent_column)]
    return [
        parent or (code[:width] if code else None)
        for parent, code in zip(given, codes, strict=True)
    ]


def _parse_workers(
    frame: pd.DataFrame, default_from: datetime
) -> tuple[list[Worker], list[Problem]]:
    """Worker rows; `valid_from` defaults to the import's when the file has none."""
    required = ("worker_id", "name", "employment", "grid_code")
    problems = _missing_columns(WORKERS_LAYER, frame, required)
    if problems:
        return [], problems
    ids = [normalise_code(value) for value in _values(frame, "worker_id")]
    labels = [worker_id or f"row {row}" for row, worker_id in enumerate(ids)]
    names, kinds = _texts(frame, "name"), _texts(frame, "employment")
    grids = [normalise_code(value) for value in _values(frame, "grid_code")]
    phones = [normalise_code(value) for value in _values(frame, "phone")]
    roles, stamps = _texts(frame, "party_role"), _values(frame, "valid_from")
    problems += _missing_values(WORKERS_LAYER, labels, "name", names)
    problems += _missing_values(WORKERS_LAYER, labels, "grid_code", grids)
    rows_by_id: dict[str, list[int]] = defaultdict(list)
    workers: list[Worker] = []
    for row, (label, worker_id, kind, grid) in enumerate(
        zip(labels, ids, kinds, grids, strict=True)
    ):
        valid_from = _timestamp(stamps[row], default_from)
        if worker_id is None or not WORKER_ID_PATTERN.fullmatch(worker_id):
            detail = f"worker_id {worker_id!r} is not W followed by 5 digits"
            problems.append(Problem(WORKERS_LAYER, label, Reason.BAD_CODE, detail))
            continue
        rows_by_id[worker_id].append(row)
        if kind not in EMPLOYMENT_KINDS:
            detail = f"employment {kind!r} is not one of {', '.join(EMPLOYMENT_KINDS)}"
            problems.append(Problem(WORKERS_LAYER, label, Reason.BAD_VALUE, detail))
        if valid_from is None:
            detail = f"valid_from {stamps[row]!r} is not a date and time"
            problems.append(Problem(WORKERS_LAYER, label, Reason.BAD_VALUE, detail))
        if kind and grid and valid_from and len(rows_by_id[worker_id]) == 1:
            person = Person(names[row] or "", phones[row], kind, roles[row])
            workers.append(Worker(worker_id, person, grid, valid_from))
    return workers, problems + find_duplicates(WORKERS_LAYER, rows_by_id)


def _parse_pois(frame: pd.DataFrame) -> tuple[list[Poi], list[Problem]]:
    """Point-of-interest rows with a Point geometry."""
    problems = _missing_columns(POIS_LAYER, frame, ("poi_id", "name", "kind", "grid_code"))
    if problems or not isinstance(frame, gpd.GeoDataFrame):
        return [], problems
    ids = [normalise_code(value) for value in _values(frame, "poi_id")]
    labels = [poi_id or f"row {row}" for row, poi_id in enumerate(ids)]
    names, kinds = _texts(frame, "name"), _texts(frame, "kind")
    grids = [normalise_code(value) for value in _values(frame, "grid_code")]
    for column, values in (("name", names), ("kind", kinds), ("grid_code", grids)):
        problems += _missing_values(POIS_LAYER, labels, column, values)
    rows_by_id: dict[str, list[int]] = defaultdict(list)
    pois: list[Poi] = []
    for row, (label, geom) in enumerate(zip(labels, frame.geometry.tolist(), strict=True)):
        point, problem = check_point(POIS_LAYER, label, geom)
        problems += [problem] if problem is not None else []
        poi_id, kind, grid = ids[row], kinds[row], grids[row]
        if poi_id is None or len(poi_id) > POI_ID_MAX_LENGTH:
            detail = f"poi_id {poi_id!r} is empty or longer than {POI_ID_MAX_LENGTH} characters"
            problems.append(Problem(POIS_LAYER, label, Reason.BAD_CODE, detail))
            continue
        rows_by_id[poi_id].append(row)
        if point and kind and grid and len(rows_by_id[poi_id]) == 1:
            pois.append(Poi(poi_id, names[row] or "", kind, grid, point))
    return pois, problems + find_duplicates(POIS_LAYER, rows_by_id)


_local = threading.local()


def to_metric(geoms: Sequence[BaseGeometry] | GeometryArray) -> GeometryArray:
    """Project EPSG:4326 geometries to the metric CRS, so that areas come out in m²."""
    # One transformer per thread: building one costs ~50 ms, and they are not thread-safe.
    transformer = getattr(_local, "to_metric", None)
    if transformer is None:
        transformer = _local.to_metric = Transformer.from_crs(
            STORAGE_CRS, METRIC_CRS, always_xy=True
        )

    def project(xy: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
        return np.column_stack(transformer.transform(xy[:, 0], xy[:, 1]))

    return np.asarray(shapely.transform(_array(geoms), project), dtype=object)


def as_multipolygon(geom: BaseGeometry) -> MultiPolygon:
    """Promote a Polygon to a one-part MultiPolygon; leave a MultiPolygon as it is."""
    return MultiPolygon([geom]) if isinstance(geom, Polygon) else geom


def normalise_code(value: object) -> str | None:
    """A code or id as text: numbers read from GeoJSON or DBF become digits, blanks None."""
    if value is None or (isinstance(value, float) and value != value):  # NaN: missing
        return None
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    text = str(value).strip()
    return text or None


def code_problem(level: LevelSpec, code: str | None, parent: str | None) -> str | None:
    """Why a code is malformed (digits, width, parent prefix), or None when it is fine."""
    if code is None:
        return "has no code"
    if not _DIGITS.fullmatch(code) or len(code) != level.code_length:
        return f"code {code!r} is not {level.code_length} digits"
    if parent is not None and code[: len(parent)] != parent:
        return f"code {code} does not start with its {level.parent_column} {parent}"
    return None


def check_codes(
    level: LevelSpec,
    labels: Sequence[str],
    codes: Sequence[str | None],
    parent_codes: Sequence[str | None],
) -> list[Problem]:
    """Codes must be digits of the level's width, start with the parent code, be unique."""
    problems: list[Problem] = []
    rows_by_code: dict[str, list[int]] = defaultdict(list)
    for row, (label, code, parent) in enumerate(zip(labels, codes, parent_codes, strict=True)):
        detail = code_problem(level, code, parent)
        if detail is not None:
            problems.append(Problem(level.layer, label, Reason.BAD_CODE, detail))
        elif code is not None:
            rows_by_code[code].append(row)
    return problems + find_duplicates(level.layer, rows_by_code)


def find_duplicates(layer: str, rows_by_id: Mapping[str, Sequence[int]]) -> list[Problem]:
    """One problem per code or id that occurs in more than one row."""
    return [
        Problem(
            layer,
            key,
            Reason.DUPLICATE_CODE,
            f"{key} appears {len(rows)} times (rows {', '.join(map(str, rows))})",
        )
        for key, rows in rows_by_id.items()
        if len(rows) > 1
    ]


def check_polygon(
    layer: str, label: str, geom: BaseGeometry | None, *, repair: bool
) -> tuple[MultiPolygon | None, Problem | None, Repair | None]:
    """A valid 2D MultiPolygon, or the problem with it; `repair` applies a safe make_valid."""
    if geom is None or geom.is_empty:
        return None, Problem(layer, label, Reason.EMPTY_GEOMETRY, "has no geometry"), None
    if geom.geom_type not in ("Polygon", "MultiPolygon"):
        detail = f"is a {geom.geom_type}, expected a Polygon or MultiPolygon"
        return None, Problem(layer, label, Reason.WRONG_GEOMETRY_TYPE, detail), None
    polygon = as_multipolygon(shapely.force_2d(geom) if shapely.has_z(geom) else geom)
    validity = shapely.is_valid_reason(polygon)
    if validity == "Valid Geometry":
        return polygon, None, None
    fixed, change = repair_polygon(polygon)
    if fixed is not None and repair:
        return fixed, None, Repair(layer, label, change)
    if fixed is not None:
        detail = f"{validity}; --repair would fix it (area changes by {change:.4%})"
    else:
        detail = f"{validity}; make_valid would change its area by more than 0.1 %"
    self_intersecting = "self-intersection" in validity.lower()
    reason = Reason.SELF_INTERSECTION if self_intersecting else Reason.INVALID_GEOMETRY
    return None, Problem(layer, label, reason, detail), None


def repair_polygon(geom: BaseGeometry) -> tuple[MultiPolygon | None, float]:
    """make_valid's polygonal part and the relative area change; None if that exceeds 0.1 %."""
    parts = [
        part
        for part in shapely.get_parts(shapely.make_valid(geom))
        if part.geom_type in ("Polygon", "MultiPolygon")
    ]
    if not parts:
        return None, float("inf")
    fixed = as_multipolygon(shapely.union_all(parts))
    if fixed.geom_type != "MultiPolygon" or fixed.is_empty or not fixed.is_valid:
        return None, float("inf")
    # An invalid ring's area is its shoelace area: a bow-tie's lobes cancel out, so the
    # valid version of a bow-tie shows up as a large change and is never "repaired".
    before, after = metric_areas([geom, fixed]).tolist()
    change = abs(after - before) / before if before > 0 else float("inf")
    return (fixed if change <= REPAIR_MAX_AREA_CHANGE else None), change


def check_point(
    layer: str, label: str, geom: BaseGeometry | None
) -> tuple[Point | None, Problem | None]:
    """A 2D Point, or the problem with the geometry."""
    if geom is None or geom.is_empty:
        return None, Problem(layer, label, Reason.EMPTY_GEOMETRY, "has no geometry")
    if geom.geom_type == "MultiPoint" and len(geom.geoms) == 1:
        geom = geom.geoms[0]
    if geom.geom_type != "Point":
        detail = f"is a {geom.geom_type}, expected a Point"
        return None, Problem(layer, label, Reason.WRONG_GEOMETRY_TYPE, detail)
    return (Point(geom.x, geom.y) if geom.has_z else geom), None


def find_missing_parents(
    level: LevelSpec, rows: Iterable[Boundary], known_parents: set[str]
) -> list[Problem]:
    """Rows whose parent code is neither in the file nor in the database."""
    detail = "its {} {} is neither in the file nor in the database"
    return [
        Problem(
            level.layer,
            row.code,
            Reason.MISSING_PARENT,
            detail.format(level.parent_column, row.parent_code),
        )
        for row in rows
        if row.parent_code is not None and row.parent_code not in known_parents
    ]


def find_overlaps(
    layer: str, rows: Sequence[Boundary], others: Sequence[Boundary] = ()
) -> list[Problem]:
    """Pairs of one level's features whose intersection is larger than 1 m².

    `others` are features already in the database that the file does not replace; only
    pairs with at least one feature of the file are reported. An STRtree finds candidates.
    """
    items = [*rows, *others]
    if len(items) < 2 or not rows:
        return []
    geoms = _array([item.geom for item in items])
    left, right = shapely.STRtree(geoms).query(geoms[: len(rows)], predicate="intersects")
    keep = (left < right) | (right >= len(rows))  # each pair within the file once
    left, right = left[keep], right[keep]
    areas = metric_areas(shapely.intersection(geoms[left], geoms[right]))
    problems = []
    for i, j, area in zip(left.tolist(), right.tolist(), areas.tolist(), strict=True):
        if area > AREA_TOLERANCE_M2:
            where = " (in the database)" if j >= len(rows) else ""
            detail = f"overlaps {items[j].code}{where} by {area:,.1f} m²"
            problems.append(Problem(layer, items[i].code, Reason.OVERLAP, detail))
    return problems


def find_outside_parent(
    level: LevelSpec, rows: Sequence[Boundary], parents: Mapping[str, BaseGeometry]
) -> list[Problem]:
    """Rows with more than 1 m² outside their parent's polygon (from the file or the DB)."""
    pairs = [(row, row.parent_code) for row in rows if row.parent_code in parents]
    if not pairs:
        return []
    children = _array([row.geom for row, _ in pairs])
    containers = _array([parents[code] for _, code in pairs if code is not None])
    shapely.prepare(containers)
    # covers() settles nearly every child quickly; only the others need an area.
    suspects = np.flatnonzero(~shapely.covers(containers, children))
    outside = metric_areas(shapely.difference(children[suspects], containers[suspects]))
    return [
        Problem(
            level.layer,
            pairs[index][0].code,
            Reason.OUTSIDE_PARENT,
            f"{area:,.1f} m² lie outside its {level.parent_column} {pairs[index][1]}",
        )
        for index, area in zip(suspects.tolist(), outside.tolist(), strict=True)
        if area > AREA_TOLERANCE_M2
    ]


def find_unknown_grids(layer: str, items: Iterable[Worker | Poi], known: set[str]) -> list[Problem]:
    """Workers or POIs that refer to a grid code neither in the file nor in the database."""
    return [
        Problem(
            layer,
            item.worker_id if isinstance(item, Worker) else item.poi_id,
            Reason.UNKNOWN_GRID,
            f"grid {item.grid_code} is neither in the file nor in the database",
        )
        for item in items
        if item.grid_code not in known
    ]


def find_pois_outside_grid(
    layer: str, pois: Sequence[Poi], grids: Mapping[str, BaseGeometry]
) -> list[Problem]:
    """POIs farther than 1 cm from the grid they state they lie in."""
    located = [poi for poi in pois if poi.grid_code in grids]
    if not located:
        return []
    points = _array([poi.geom for poi in located])
    polygons = _array([grids[poi.grid_code] for poi in located])
    outside = np.flatnonzero(~shapely.covers(polygons, points))
    gaps = to_metric(shapely.shortest_line(polygons[outside], points[outside]))
    return [
        Problem(
            layer,
            located[index].poi_id,
            Reason.OUTSIDE_PARENT,
            f"lies {distance:,.1f} m outside its grid {located[index].grid_code}",
        )
        for index, distance in zip(outside.tolist(), shapely.length(gaps).tolist(), strict=True)
        if distance > POINT_TOLERANCE_M
    ]


def same_geometries(
    old: Sequence[BaseGeometry], new: Sequence[BaseGeometry]
) -> npt.NDArray[np.bool_]:
    """Pairwise: True where the symmetric difference is under 1 m² (so: unchanged)."""
    old_array, new_array = _array(old), _array(new)
    same = np.asarray(shapely.equals_exact(old_array, new_array, tolerance=0.0), dtype=bool)
    differ = np.flatnonzero(~same)
    symmetric = shapely.symmetric_difference(old_array[differ], new_array[differ])
    same[differ] = metric_areas(symmetric) < AREA_TOLERANCE_M2
    return same


def metric_areas(geoms: Sequence[BaseGeometry] | GeometryArray) -> npt.NDArray[np.float64]:
    """Areas in m² of EPSG:4326 geometries."""
    return np.asarray(shapely.area(to_metric(geoms)), dtype=np.float64)


def _array(geoms: Iterable[BaseGeometry]) -> GeometryArray:
    items = list(geoms)
    array = np.empty(len(items), dtype=object)
    array[:] = items
    return array


def _missing_columns(layer: str, frame: pd.DataFrame, required: Sequence[str]) -> list[Problem]:
    missing = [column for column in required if column not in frame.columns]
    if not missing:
        return []
    return [Problem(layer, None, Reason.MISSING_COLUMN, f"has no {', '.join(missing)} column")]


def _missing_values(
    layer: str, labels: Sequence[str], column: str, values: Sequence[object]
) -> list[Problem]:
    return [
        Problem(layer, label, Reason.MISSING_VALUE, f"has no {column}")
        for label, value in zip(labels, values, strict=True)
        if value is None
    ]


def _values(frame: pd.DataFrame, column: str) -> list[object]:
    """A column as plain Python values, every kind of missing value as None."""
    if column not in frame.columns:
        return [None] * len(frame)
    return [None if _is_missing(value) else value for value in frame[column].tolist()]


def _texts(frame: pd.DataFrame, column: str) -> list[str | None]:
    return [_text(value) for value in _values(frame, column)]


def _is_missing(value: object) -> bool:
    if value is None or value is pd.NA or value is pd.NaT:
        return True
    return isinstance(value, float) and value != value  # NaN


def _text(value: object) -> str | None:
    if value is None:
        return None
    text = value if isinstance(value, str) else str(value)
    return text if text.strip() else None


def _counts(values: Sequence[object]) -> tuple[list[int | None], list[int]]:
    """Whole non-negative numbers (or None), and the rows where a value is not one."""
    counts: list[int | None] = []
    bad: list[int] = []
    for row, value in enumerate(values):
        number: int | None = None
        if isinstance(value, int | float | str) and not isinstance(value, bool):
            try:
                as_float = float(value)
                number = int(as_float) if as_float.is_integer() and as_float >= 0 else None
            except ValueError:
                number = None
        if value is not None and number is None:
            bad.append(row)
        counts.append(number)
    return counts, bad


def _timestamp(value: object, default: datetime) -> datetime | None:
    """An aware datetime; naive values are local time (Asia/Shanghai), None the default."""
    if value is None:
        return default
    try:
        stamp = pd.Timestamp(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None
    if pd.isna(stamp):
        return default
    moment: datetime = stamp.to_pydatetime()
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=LOCAL_TZ)
