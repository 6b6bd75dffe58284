"""Import boundary files (GeoJSON, Shapefile, GeoPackage, FlatGeobuf): read, check, plan, write.

A file is refused as a whole, with every offending feature named, before anything is
written; an accepted file is written in one transaction. Grid boundaries are versioned:
a changed boundary closes the old version instead of overwriting it.
"""

import logging
import zipfile
from collections import Counter, defaultdict
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path

import geopandas as gpd
import pandas as pd
import pyogrio
import pyogrio.errors
import shapely
from sqlalchemy import Engine
from sqlalchemy.orm import Session

from geodata.dataset.layers import (
    COMMUNITY_COLUMNS,
    DISTRICT_COLUMNS,
    GRID_COLUMNS,
    LEVEL_BY_CODE_LENGTH,
    LEVEL_BY_LAYER,
    LEVELS,
    LOCAL_TZ,
    POI_COLUMNS,
    POIS_LAYER,
    REFERENCE_VALID_FROM,
    STORAGE_CRS,
    STREET_COLUMNS,
    WORKER_COLUMNS,
    WORKERS_LAYER,
)
from geodata.dataset.validation import (
    Boundary,
    CurrentState,
    ParsedImport,
    Poi,
    Problem,
    Reason,
    Repair,
    Worker,
    normalise_code,
    same_geometries,
    validate,
)
from geodata.db import boundaries
from geodata.db.engine import unit_of_work
from geodata.errors import ImportRefused

__all__ = [
    "ImportReport",
    "LayerCounts",
    "Problem",
    "Reason",
    "Repair",
    "database_is_empty",
    "export_layers",
    "import_boundaries",
    "read_boundary_file",
]

logger = logging.getLogger(__name__)

#: progress(stage, done, total) is called with one of these stages, in this order.
Progress = Callable[[str, int, int], None]
STAGE_READ = "Reading layers"
STAGE_VALIDATE = "Validating"
STAGE_WRITE = "Writing to PostGIS"

SUFFIXES = {
    ".geojson": "GeoJSON",
    ".json": "GeoJSON",
    ".shp": "Shapefile",
    ".zip": "zipped Shapefile",
    ".gpkg": "GeoPackage",
    ".fgb": "FlatGeobuf",
}
ASSIGNMENTS = "worker_assignments"
_FILE = "file"
_ID_COLUMNS = {WORKERS_LAYER: "worker_id", POIS_LAYER: "poi_id"}
#: Every column of the layer contract; Shapefiles cut names to 10 characters.
_CONTRACT_COLUMNS = frozenset(
    DISTRICT_COLUMNS + STREET_COLUMNS + COMMUNITY_COLUMNS + GRID_COLUMNS
    + WORKER_COLUMNS + POI_COLUMNS
)  # fmt: skip


@dataclass
class LayerCounts:
    """What an import did (or would do, in a dry run) to one layer."""

    inserted: int = 0
    updated: int = 0
    unchanged: int = 0
    new_versions: int = 0
    repaired: int = 0


@dataclass
class ImportReport:
    """The outcome of an import: counts per layer, repairs made, layers not recognised."""

    source: str
    dry_run: bool
    valid_from: datetime
    layers: dict[str, LayerCounts] = field(default_factory=dict)
    repairs: list[Repair] = field(default_factory=list)
    skipped_layers: list[str] = field(default_factory=list)

    def summary(self) -> dict[str, object]:
        """The report as JSON-ready data, as stored in `dataset_imports.summary`."""
        return {
            "dry_run": self.dry_run,
            "valid_from": self.valid_from.isoformat(),
            "layers": {name: asdict(counts) for name, counts in self.layers.items()},
            "repairs": [str(repair) for repair in self.repairs],
            "skipped_layers": self.skipped_layers,
        }

    def render(self) -> str:
        """A plain-text table of the counts, then repairs and skipped layers, for the CLI."""
        fields = ("inserted", "updated", "unchanged", "new_versions", "repaired")
        lines = [f"{'layer':<20}" + "".join(f"{name:>14}" for name in fields)]
        for layer, counts in self.layers.items():
            values = asdict(counts)
            lines.append(f"{layer:<20}" + "".join(f"{values[name]:>14,}" for name in fields))
        lines += [f"repaired: {repair}" for repair in self.repairs]
        lines += [f"skipped layer (not recognised): {name}" for name in self.skipped_layers]
        when = f"valid from {self.valid_from.isoformat()}"
        lines.append(f"dry run, nothing written ({when})" if self.dry_run else f"imported, {when}")
        return "\n".join(lines)


@dataclass
class ImportPlan:
    """Every row to write, decided before anything is written."""

    valid_from: datetime
    upserts: dict[str, list[Boundary]] = field(default_factory=dict)
    grid_closures: list[str] = field(default_factory=list)
    grid_inserts: list[Boundary] = field(default_factory=list)
    worker_upserts: list[Worker] = field(default_factory=list)
    assignment_closures: list[tuple[str, datetime]] = field(default_factory=list)
    assignment_inserts: list[Worker] = field(default_factory=list)
    poi_upserts: list[Poi] = field(default_factory=list)
    counts: dict[str, LayerCounts] = field(default_factory=dict)


def import_boundaries(
    engine: Engine,
    path: Path,
    *,
    dry_run: bool = False,
    repair: bool = False,
    valid_from: datetime | None = None,
    progress: Progress | None = None,
) -> ImportReport:
    """Validate a boundary file and write it in one transaction; raise ImportRefused if bad."""
    notify: Progress = progress or (lambda _stage, _done, _total: None)
    frames, skipped = read_boundary_file(path, progress=notify)
    with unit_of_work(engine) as session:
        boundaries.lock_imports(session)
        state = boundaries.load_current_state(session)
        first_import = not boundaries.has_grids(session)
        effective_from = _effective_valid_from(valid_from, first_import=first_import)
        parsed, problems = validate(frames, state, repair=repair, valid_from=effective_from)
        notify(STAGE_VALIDATE, 1, 1)
        plan, plan_problems = plan_import(parsed, state, effective_from)
        problems += plan_problems
        if problems:
            raise ImportRefused(_refusal_message(path, problems), list(problems))
        report = ImportReport(
            source=str(path),
            dry_run=dry_run,
            valid_from=effective_from,
            layers=plan.counts,
            repairs=parsed.repairs,
            skipped_layers=skipped,
        )
        if not dry_run:
            _write(session, plan, report, notify)
    logger.info("imported %s: %s", path, report.summary())
    return report


def export_layers(engine: Engine) -> dict[str, gpd.GeoDataFrame | pd.DataFrame]:
    """The current version of every layer, with the layer contract's columns, sorted by id."""
    with unit_of_work(engine) as session:
        return boundaries.export_current_layers(session)


def database_is_empty(engine: Engine) -> bool:
    """True when the database holds no grid at all (no version, current or past)."""
    with unit_of_work(engine) as session:
        return not boundaries.has_grids(session)


def read_boundary_file(
    path: Path, *, progress: Progress | None = None
) -> tuple[dict[str, pd.DataFrame], list[str]]:
    """Every recognised layer of a file, in EPSG:4326, and the names of layers skipped."""
    suffix = path.suffix.lower()
    if suffix not in SUFFIXES:
        known = ", ".join(sorted(SUFFIXES))
        detail = f"{suffix or 'no extension'} is not a supported format ({known})"
        raise _refused(path, [Problem(_FILE, path.name, Reason.UNSUPPORTED_FORMAT, detail)])
    try:
        sources = _layer_sources(path)
        read: list[tuple[str, pd.DataFrame]] = []
        for done, (source, layer) in enumerate(sources, start=1):
            read.append((layer, pyogrio.read_dataframe(source, layer=layer)))
            if progress is not None:
                progress(STAGE_READ, done, len(sources))
    except _ReadErrors as exc:
        problem = Problem(_FILE, path.name, Reason.UNREADABLE_FILE, str(exc))
        raise _refused(path, [problem]) from exc
    if not sources:
        detail = "the zip archive holds no .shp, .gpkg, .geojson or .fgb file"
        raise _refused(path, [Problem(_FILE, path.name, Reason.UNSUPPORTED_FORMAT, detail)])
    frames, skipped, problems = _recognise_layers(read)
    if not problems and all(frame.empty for frame in frames.values()):
        detail = "no recognised layer of the file has a feature"
        problems.append(Problem(_FILE, path.name, Reason.EMPTY_FILE, detail))
    if problems:
        raise _refused(path, problems)
    return frames, skipped


_ReadErrors = (
    pyogrio.errors.DataSourceError,
    pyogrio.errors.DataLayerError,
    pyogrio.errors.FieldError,
    pyogrio.errors.GeometryError,
    pyogrio.errors.CRSError,
    zipfile.BadZipFile,
    OSError,
)


def _layer_sources(path: Path) -> list[tuple[str, str]]:
    """(GDAL path, layer name) of every layer; a zip's members are read via /vsizip/."""
    if not path.exists():
        raise FileNotFoundError(f"{path} does not exist")
    if path.suffix.lower() != ".zip":
        return [(str(path), str(name)) for name, _ in pyogrio.list_layers(path)]
    with zipfile.ZipFile(path) as archive:
        members = [
            name
            for name in archive.namelist()
            if Path(name).suffix.lower() in SUFFIXES.keys() - {".zip"}
            and not name.startswith("__MACOSX/")
        ]
    sources = []
    for member in sorted(members):
        inner = f"/vsizip/{path.resolve()}/{member}"
        sources += [(inner, str(name)) for name, _ in pyogrio.list_layers(inner)]
    return sources


def _recognise_layers(
    read: Sequence[tuple[str, pd.DataFrame]],
) -> tuple[dict[str, pd.DataFrame], list[str], list[Problem]]:
    """Name each layer by the contract, bring geometries to EPSG:4326, merge same-kind layers."""
    by_kind: dict[str, list[pd.DataFrame]] = defaultdict(list)
    unknown: list[str] = []
    problems: list[Problem] = []
    for name, raw in read:
        frame = _canonical_columns(raw)
        kind = _identify(name, frame)
        if kind is None:
            unknown.append(name)
            continue
        if kind == WORKERS_LAYER and isinstance(frame, gpd.GeoDataFrame):
            frame = pd.DataFrame(frame.drop(columns=frame.geometry.name))
        elif kind != WORKERS_LAYER:
            frame, crs_problems = _to_storage_crs(kind, frame)
            problems += crs_problems
        by_kind[kind].append(frame)
    if not by_kind and any(not frame.empty for _, frame in read):
        problems += [
            Problem(
                _FILE,
                name,
                Reason.UNRECOGNISED_LAYER,
                "neither its name nor its columns say which layer it is "
                "(expected districts, streets, communities, grids, workers or pois, "
                "or a code column of 6, 9, 12 or 15 digits)",
            )
            for name in unknown
        ]
    frames = {
        kind: parts[0] if len(parts) == 1 else pd.concat(parts, ignore_index=True)
        for kind, parts in by_kind.items()
    }
    return frames, unknown, problems


def _canonical_columns(frame: pd.DataFrame) -> pd.DataFrame:
    """Lower-case column names and undo the Shapefile's 10-character truncation."""
    renames: dict[str, str] = {}
    for column in frame.columns:
        if isinstance(frame, gpd.GeoDataFrame) and column == frame.geometry.name:
            continue
        lower = str(column).lower()
        full = [name for name in _CONTRACT_COLUMNS if len(lower) == 10 and name.startswith(lower)]
        truncated = len(full) == 1 and lower not in _CONTRACT_COLUMNS
        renames[str(column)] = full[0] if truncated else lower
    return frame.rename(columns=renames)


def _identify(name: str, frame: pd.DataFrame) -> str | None:
    """The contract layer a file layer holds: by its name, else by its code width or id column."""
    key = name.lower()
    if key in LEVEL_BY_LAYER or key in (WORKERS_LAYER, POIS_LAYER):
        return key
    if "code" in frame.columns:
        widths = Counter(len(code) for code in map(normalise_code, frame["code"]) if code)
        if widths:
            level = LEVEL_BY_CODE_LENGTH.get(widths.most_common(1)[0][0])
            return level.layer if level is not None else None
    for kind, id_column in _ID_COLUMNS.items():
        if id_column in frame.columns:
            return kind
    return None


def _to_storage_crs(kind: str, frame: pd.DataFrame) -> tuple[pd.DataFrame, list[Problem]]:
    """Transform a layer to EPSG:4326; refuse no CRS, an unusable CRS, out-of-range coordinates."""
    if not isinstance(frame, gpd.GeoDataFrame):
        return frame, [Problem(kind, None, Reason.MISSING_COLUMN, "the layer has no geometry")]
    if frame.empty:
        return frame, []
    crs = frame.crs
    if crs is None:
        detail = "the layer has no coordinate reference system (add a .prj or an SRS)"
        return frame, [Problem(kind, None, Reason.MISSING_CRS, detail)]
    if crs.equals(STORAGE_CRS, ignore_axis_order=True):
        frame = frame.set_crs(STORAGE_CRS, allow_override=True)
    elif crs.is_geographic or crs.is_projected:
        try:
            frame = frame.to_crs(STORAGE_CRS)
        except Exception as exc:  # pyproj raises several types; all mean "cannot transform"
            detail = f"cannot transform {crs.name} to {STORAGE_CRS}: {exc}"
            return frame, [Problem(kind, None, Reason.UNSUPPORTED_CRS, detail)]
    else:
        detail = f"{crs.name} is neither geographic nor projected"
        return frame, [Problem(kind, None, Reason.UNSUPPORTED_CRS, detail)]
    lon_min, lat_min, lon_max, lat_max = frame.total_bounds
    if not (-180 <= lon_min <= lon_max <= 180 and -90 <= lat_min <= lat_max <= 90):
        detail = f"coordinates fall outside longitude/latitude ranges: is {crs.name} right?"
        return frame, [Problem(kind, None, Reason.WRONG_CRS, detail)]
    return frame, []


def plan_import(
    parsed: ParsedImport, state: CurrentState, valid_from: datetime
) -> tuple[ImportPlan, list[Problem]]:
    """Decide, row by row, what to insert, update, version or leave unchanged."""
    plan = ImportPlan(valid_from=valid_from)
    problems: list[Problem] = []
    for level in LEVELS:
        if level.layer not in parsed.boundaries:
            continue
        counts = plan.counts[level.layer] = LayerCounts()
        counts.repaired = sum(1 for repair in parsed.repairs if repair.layer == level.layer)
        current = state.layer(level.layer)
        rows = parsed.boundaries[level.layer]
        existing = [row for row in rows if row.code in current]
        same = same_geometries(
            [current[row.code].geom for row in existing], [row.geom for row in existing]
        )
        unchanged = {
            row.code
            for row, same_geom in zip(existing, same.tolist(), strict=True)
            if same_geom and row.same_attributes(current[row.code])
        }
        counts.unchanged = len(unchanged)
        changed = [row for row in rows if row.code not in unchanged]
        counts.inserted = sum(1 for row in changed if row.code not in current)
        if level.layer != "grids":
            plan.upserts[level.layer] = changed
            counts.updated = len(changed) - counts.inserted
            continue
        plan.grid_inserts = changed
        for row in changed:
            if row.code not in current:
                continue
            since = state.grid_valid_from[row.code]
            if valid_from <= since:
                problems.append(_too_early("grids", row.code, valid_from, since))
            plan.grid_closures.append(row.code)
        counts.new_versions = len(plan.grid_closures)
    if parsed.workers:
        problems += _plan_workers(plan, parsed.workers, state)
    if parsed.pois:
        counts = plan.counts[POIS_LAYER] = LayerCounts()
        for poi in parsed.pois:
            old = state.pois.get(poi.poi_id)
            if old is None:
                counts.inserted += 1
            elif _same_poi(old, poi):
                counts.unchanged += 1
                continue
            else:
                counts.updated += 1
            plan.poi_upserts.append(poi)
    return plan, problems


def _same_poi(old: Poi, new: Poi) -> bool:
    if (old.name, old.kind, old.grid_code) != (new.name, new.kind, new.grid_code):
        return False
    return bool(shapely.equals_exact(old.geom, new.geom, tolerance=1e-9))


def _plan_workers(plan: ImportPlan, workers: list[Worker], state: CurrentState) -> list[Problem]:
    """Upsert changed workers; open an assignment where the grid changed, closing the old one."""
    problems: list[Problem] = []
    people = plan.counts[WORKERS_LAYER] = LayerCounts()
    assignments = plan.counts[ASSIGNMENTS] = LayerCounts()
    for worker in workers:
        old = state.workers.get(worker.worker_id)
        if old == worker.person:
            people.unchanged += 1
        else:
            people.inserted += old is None
            people.updated += old is not None
            plan.worker_upserts.append(worker)
        open_assignments = state.assignments.get(worker.worker_id, [])
        if any(grid == worker.grid_code for grid, _ in open_assignments):
            assignments.unchanged += 1
            continue
        for _, since in open_assignments:
            if worker.valid_from <= since:
                problems.append(
                    _too_early(WORKERS_LAYER, worker.worker_id, worker.valid_from, since)
                )
        if open_assignments:
            plan.assignment_closures.append((worker.worker_id, worker.valid_from))
            assignments.new_versions += 1
        else:
            assignments.inserted += 1
        plan.assignment_inserts.append(worker)
    return problems


def _write(session: Session, plan: ImportPlan, report: ImportReport, notify: Progress) -> None:
    """Write the plan top-down (parents before children) and the audit row; flush, no commit."""
    total = 4
    for layer in ("districts", "streets", "communities"):
        boundaries.upsert_boundaries(session, layer, plan.upserts.get(layer, []))
    notify(STAGE_WRITE, 1, total)
    # Close before inserting: at most one open version per code (a unique index).
    boundaries.close_grid_versions(session, plan.grid_closures, plan.valid_from)
    boundaries.insert_grid_versions(session, plan.grid_inserts, plan.valid_from)
    notify(STAGE_WRITE, 2, total)
    boundaries.upsert_workers(session, plan.worker_upserts)
    boundaries.close_assignments(session, plan.assignment_closures)
    boundaries.insert_assignments(session, plan.assignment_inserts)
    notify(STAGE_WRITE, 3, total)
    boundaries.upsert_pois(session, plan.poi_upserts)
    boundaries.record_import(session, report.source, report.summary())
    notify(STAGE_WRITE, 4, total)


def _effective_valid_from(valid_from: datetime | None, *, first_import: bool) -> datetime:
    """The given instant (naive: local time), else the reference date if first, else now."""
    if valid_from is not None:
        return valid_from if valid_from.tzinfo is not None else valid_from.replace(tzinfo=LOCAL_TZ)
    if first_import:
        return REFERENCE_VALID_FROM
    return datetime.now(LOCAL_TZ)


def _too_early(layer: str, feature: str, valid_from: datetime, since: datetime) -> Problem:
    detail = (
        f"valid_from {valid_from.isoformat()} is not after the current version's "
        f"{since.isoformat()}; pass a later --valid-from"
    )
    return Problem(layer, feature, Reason.VALID_FROM_TOO_EARLY, detail)


def _refused(path: Path, problems: Sequence[Problem]) -> ImportRefused:
    return ImportRefused(_refusal_message(path, problems), list(problems))


def _refusal_message(path: Path, problems: Sequence[Problem]) -> str:
    lines = [f"{path.name} refused, nothing was imported: {len(problems)} problem(s)"]
    lines += [f"  {problem}" for problem in problems]
    return "\n".join(lines)
