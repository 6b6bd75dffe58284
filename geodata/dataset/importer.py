"""Import boundary files (GeoJSON, Shapefile, GeoPackage, FlatGeobuf): read, check, plan, write.

A file is refused as a whole, with every offending feature named, before anything is
written; an accepted file is written in one transaction. Grid boundaries are versioned:
a changed boundary closes the old version instead of overwriting it.
"""

import logging
from dataclasses import asdict, dataclass, field
from datetime import date, datetime, time
from pathlib import Path

import geopandas as gpd
import pandas as pd
import shapely
from sqlalchemy import Engine
from sqlalchemy.orm import Session

from geodata.compliance.weeks import check_supported_time
from geodata.dataset.geometry_checks import same_geometries
from geodata.dataset.layers import (
    LEVELS,
    LOCAL_TZ,
    POIS_LAYER,
    REFERENCE_VALID_FROM,
    WORKERS_LAYER,
)
from geodata.dataset.reading import STAGE_READ, Progress, read_boundary_file, refused
from geodata.dataset.rows import (
    Boundary,
    CurrentState,
    ParsedImport,
    Poi,
    Problem,
    Reason,
    Repair,
    Worker,
)
from geodata.dataset.validation import validate
from geodata.db import boundaries
from geodata.db.engine import unit_of_work

__all__ = [
    "STAGE_READ",
    "STAGE_VALIDATE",
    "STAGE_WRITE",
    "ImportReport",
    "LayerCounts",
    "Problem",
    "Reason",
    "Repair",
    "database_is_empty",
    "export_layers",
    "import_boundaries",
    "parse_valid_from",
    "read_boundary_file",
]

logger = logging.getLogger(__name__)

#: progress(stage, done, total) is called with STAGE_READ, then these stages, in order.
STAGE_VALIDATE = "Validating"
STAGE_WRITE = "Writing to PostGIS"
ASSIGNMENTS = "worker_assignments"


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
    name: str | None = None,
) -> ImportReport:
    """Validate a boundary file and write it in one transaction; raise ImportRefused if bad.

    `name` is how the file is named in problems, the report and the audit row: an
    upload's own name rather than the temporary path it was saved at (default: `path`).
    """
    notify: Progress = progress or (lambda _stage, _done, _total: None)
    source = name or str(path)
    frames, skipped = read_boundary_file(path, name=name, progress=notify)
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
            raise refused(name or path.name, problems)
        report = ImportReport(
            source=source,
            dry_run=dry_run,
            valid_from=effective_from,
            layers=plan.counts,
            repairs=parsed.repairs,
            skipped_layers=skipped,
        )
        if not dry_run:
            _write(session, plan, report, notify)
    logger.info("imported %s (%s): %s", source, path, report.summary())
    return report


def parse_valid_from(value: str) -> datetime:
    """The instant a city dates an import from: a date (`2024-07-01`, local midnight) or an
    ISO 8601 time (without an offset: local time); ValueError if neither or out of span.

    One reading for `wangge dataset import --valid-from` and the admin route's `valid_from`,
    so that the same text means the same instant on both.
    """
    text = value.strip()
    try:
        if len(text) == len("2024-07-01"):
            moment = datetime.combine(date.fromisoformat(text), time(0), tzinfo=LOCAL_TZ)
        else:
            moment = datetime.fromisoformat(text)
    except ValueError:
        raise ValueError(
            f"valid_from {value!r} is neither a date (2024-07-01) nor an ISO 8601 time "
            "(2024-07-01T00:00:00+08:00)"
        ) from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=LOCAL_TZ)
    return check_supported_time(moment, "valid_from")


def export_layers(engine: Engine) -> dict[str, gpd.GeoDataFrame | pd.DataFrame]:
    """The current version of every layer, with the layer contract's columns, sorted by id."""
    with unit_of_work(engine) as session:
        return boundaries.export_current_layers(session)


def database_is_empty(engine: Engine) -> bool:
    """True when the database holds no grid at all (no version, current or past)."""
    with unit_of_work(engine) as session:
        return not boundaries.has_grids(session)


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
        f"{since.isoformat()}; date the import later (--valid-from, or valid_from over HTTP)"
    )
    return Problem(layer, feature, Reason.VALID_FROM_TOO_EARLY, detail)
