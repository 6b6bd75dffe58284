"""Checking an import: the file's layers become plain rows, and every rule is checked on them.

Nothing here reads files or talks to the database. This module checks codes, attributes
and references between layers; the geometric rules are in `geometry_checks`, the rows
and the problems in `rows`.
"""

import re
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime

import geopandas as gpd
import pandas as pd
from shapely.geometry.base import BaseGeometry

from geodata.dataset.geometry_checks import (
    check_point,
    check_polygon,
    find_outside_parent,
    find_overlaps,
    find_pois_outside_grid,
)
from geodata.dataset.layers import (
    EMPLOYMENT_KINDS,
    LEVEL_BY_LAYER,
    LEVELS,
    LOCAL_TZ,
    POIS_LAYER,
    WORKERS_LAYER,
    LevelSpec,
)
from geodata.dataset.rows import (
    Boundary,
    CurrentState,
    ParsedImport,
    Person,
    Poi,
    Problem,
    Reason,
    Repair,
    Worker,
)

WORKER_ID_PATTERN = re.compile(r"W[0-9]{5}")
POI_ID_MAX_LENGTH = 16
_DIGITS = re.compile(r"[0-9]+")


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
