"""Repository of the boundary hierarchy, workers and POIs: read what is current, write imports.

Geometries cross this module as WKB and leave it as shapely objects; rows are written
in bulk (one executemany per table). Functions flush, never commit: the caller's unit of
work commits the whole import at once.
"""

from collections import defaultdict
from collections.abc import Sequence
from datetime import datetime
from typing import Any

import geopandas as gpd
import pandas as pd
import shapely
from geoalchemy2 import WKBElement
from geoalchemy2.shape import from_shape
from sqlalchemy import Table, exists, func, select, text, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.orm import Session

from geodata.dataset.layers import (
    COMMUNITY_COLUMNS,
    DISTRICT_COLUMNS,
    GRID_COLUMNS,
    LOCAL_TZ,
    POI_COLUMNS,
    STORAGE_CRS,
    STREET_COLUMNS,
    WORKER_COLUMNS,
)
from geodata.dataset.rows import Boundary, CurrentState, Person, Poi, Worker
from geodata.db.models import (
    Base,
    Community,
    DatasetImport,
    District,
    Grid,
    PointOfInterest,
    Street,
    WorkerAssignment,
)
from geodata.db.models import Worker as WorkerRow

SRID = 4326
# Any constant will do: it only has to be the same for every importer process.
_IMPORT_LOCK_KEY = 0x77616E67  # "wang"

# Core tables, not ORM entities: an ORM bulk insert splits rows by which keys are None,
# turning one executemany into hundreds of statements.
_TABLES = Base.metadata.tables
_AREA_TABLES: dict[str, tuple[Table, str | None]] = {
    "districts": (_TABLES[District.__tablename__], None),
    "streets": (_TABLES[Street.__tablename__], "district_code"),
    "communities": (_TABLES[Community.__tablename__], "street_code"),
}
_EXPORT_COLUMNS = {
    "districts": DISTRICT_COLUMNS,
    "streets": STREET_COLUMNS,
    "communities": COMMUNITY_COLUMNS,
    "grids": GRID_COLUMNS,
}


def lock_imports(session: Session) -> None:
    """Serialise imports: a second one waits until the first has committed or rolled back."""
    session.execute(select(func.pg_advisory_xact_lock(_IMPORT_LOCK_KEY)))


def has_grids(session: Session) -> bool:
    """True when there is at least one grid version, current or past."""
    return bool(session.scalar(select(exists().select_from(Grid))))


def load_current_state(session: Session) -> CurrentState:
    """Current boundary versions, workers with their open assignments, and POIs."""
    state = CurrentState()
    for layer, (table, parent) in _AREA_TABLES.items():
        columns = [table.c.code, table.c.name]
        columns += [table.c[parent] if parent else table.c.name_en]
        rows = session.execute(select(*columns, func.ST_AsBinary(table.c.geom))).all()
        geoms = _from_wkb([row[-1] for row in rows])
        state.boundaries[layer] = {
            row[0]: Boundary(
                code=row[0],
                parent_code=row[2] if parent else None,
                name=row[1],
                geom=geom,
                name_en=None if parent else row[2],
            )
            for row, geom in zip(rows, geoms, strict=True)
        }
    grid_rows = session.execute(
        select(
            Grid.code,
            Grid.community_code,
            Grid.name,
            Grid.households,
            Grid.valid_from,
            func.ST_AsBinary(Grid.geom),
        ).where(Grid.valid_to.is_(None))
    ).all()
    grid_geoms = _from_wkb([row[-1] for row in grid_rows])
    state.boundaries["grids"] = {
        row.code: Boundary(row.code, row.community_code, row.name, geom, households=row.households)
        for row, geom in zip(grid_rows, grid_geoms, strict=True)
    }
    state.grid_valid_from = {row.code: row.valid_from for row in grid_rows}
    assignments: dict[str, list[tuple[str, datetime]]] = defaultdict(list)
    for worker_id, grid_code, valid_from in session.execute(
        select(WorkerAssignment.worker_id, WorkerAssignment.grid_code, WorkerAssignment.valid_from)
        .where(WorkerAssignment.valid_to.is_(None))
        .order_by(WorkerAssignment.valid_from)
    ):
        assignments[worker_id].append((grid_code, valid_from))
    state.assignments = dict(assignments)
    people = select(
        WorkerRow.worker_id,
        WorkerRow.name,
        WorkerRow.phone,
        WorkerRow.employment,
        WorkerRow.party_role,
    )
    state.workers = {
        row.worker_id: Person(row.name, row.phone, row.employment, row.party_role)
        for row in session.execute(people)
    }
    poi_rows = session.execute(
        select(
            PointOfInterest.poi_id,
            PointOfInterest.name,
            PointOfInterest.kind,
            PointOfInterest.grid_code,
            func.ST_AsBinary(PointOfInterest.geom),
        )
    ).all()
    poi_geoms = _from_wkb([row[-1] for row in poi_rows])
    state.pois = {
        row[0]: Poi(row[0], row[1], row[2], row[3], geom)
        for row, geom in zip(poi_rows, poi_geoms, strict=True)
    }
    return state


def upsert_boundaries(session: Session, layer: str, rows: Sequence[Boundary]) -> None:
    """Insert or overwrite districts, streets or communities (these are not versioned)."""
    if not rows:
        return
    table, parent = _AREA_TABLES[layer]
    values = []
    for row in rows:
        value: dict[str, Any] = {"code": row.code, "name": row.name, "geom": _wkb(row.geom)}
        if parent:
            value[parent] = row.parent_code
        else:
            value["name_en"] = row.name_en
        values.append(value)
    statement = insert(table)
    updates = {key: statement.excluded[key] for key in values[0] if key != "code"}
    session.execute(statement.on_conflict_do_update(index_elements=["code"], set_=updates), values)
    session.flush()


def close_grid_versions(session: Session, codes: Sequence[str], valid_to: datetime) -> None:
    """End the current version of each grid at `valid_to` (kept as history)."""
    if not codes:
        return
    session.execute(
        update(Grid)
        .where(Grid.code.in_(codes), Grid.valid_to.is_(None))
        .values(valid_to=valid_to)
        .execution_options(synchronize_session=False)
    )
    session.flush()


def insert_grid_versions(session: Session, rows: Sequence[Boundary], valid_from: datetime) -> None:
    """Insert a new current version of each grid, valid from `valid_from`."""
    if not rows:
        return
    session.execute(
        insert(_TABLES[Grid.__tablename__]),
        [
            {
                "code": row.code,
                "community_code": row.parent_code,
                "name": row.name,
                "households": row.households,
                "geom": _wkb(row.geom),
                "valid_from": valid_from,
                "valid_to": None,
            }
            for row in rows
        ],
    )
    session.flush()


def upsert_workers(session: Session, workers: Sequence[Worker]) -> None:
    """Insert or overwrite workers' own attributes (assignments are separate)."""
    if not workers:
        return
    statement = insert(_TABLES[WorkerRow.__tablename__])
    columns = ("name", "phone", "employment", "party_role")
    session.execute(
        statement.on_conflict_do_update(
            index_elements=["worker_id"],
            set_={column: statement.excluded[column] for column in columns},
        ),
        [{"worker_id": worker.worker_id, **worker.person._asdict()} for worker in workers],
    )
    session.flush()


def close_assignments(session: Session, closures: Sequence[tuple[str, datetime]]) -> None:
    """End each worker's open assignments at the given instant."""
    if not closures:
        return
    session.execute(
        text(
            "UPDATE worker_assignments SET valid_to = :valid_to "
            "WHERE worker_id = :worker_id AND valid_to IS NULL"
        ),
        [{"worker_id": worker_id, "valid_to": valid_to} for worker_id, valid_to in closures],
    )
    session.flush()


def insert_assignments(session: Session, workers: Sequence[Worker]) -> None:
    """Open an assignment of each worker to their grid from the row's `valid_from`."""
    if not workers:
        return
    session.execute(
        insert(_TABLES[WorkerAssignment.__tablename__]),
        [
            {
                "worker_id": worker.worker_id,
                "grid_code": worker.grid_code,
                "valid_from": worker.valid_from,
                "valid_to": None,
            }
            for worker in workers
        ],
    )
    session.flush()


def upsert_pois(session: Session, pois: Sequence[Poi]) -> None:
    """Insert or overwrite points of interest."""
    if not pois:
        return
    statement = insert(_TABLES[PointOfInterest.__tablename__])
    columns = ("name", "kind", "grid_code", "geom")
    session.execute(
        statement.on_conflict_do_update(
            index_elements=["poi_id"],
            set_={column: statement.excluded[column] for column in columns},
        ),
        [
            {
                "poi_id": poi.poi_id,
                "name": poi.name,
                "kind": poi.kind,
                "grid_code": poi.grid_code,
                "geom": _wkb(poi.geom),
            }
            for poi in pois
        ],
    )
    session.flush()


def record_import(session: Session, source: str, summary: dict[str, object]) -> None:
    """Add the audit row of one import."""
    session.add(DatasetImport(source=source, summary=summary))
    session.flush()


def export_current_layers(session: Session) -> dict[str, gpd.GeoDataFrame | pd.DataFrame]:
    """Every layer as the contract shapes it: current versions only, sorted by code or id."""
    state = load_current_state(session)
    layers: dict[str, gpd.GeoDataFrame | pd.DataFrame] = {}
    for layer, columns in _EXPORT_COLUMNS.items():
        rows = sorted(state.layer(layer).values(), key=lambda row: row.code)
        data = {column: [_boundary_value(row, column) for row in rows] for column in columns}
        frame = gpd.GeoDataFrame(data, geometry=[row.geom for row in rows], crs=STORAGE_CRS)
        if "households" in frame.columns:
            frame["households"] = frame["households"].astype("Int64")
        layers[layer] = frame
    worker_rows: list[tuple[object, ...]] = []
    for worker_id, person in sorted(state.workers.items()):
        # The latest open assignment; a worker without one exports with blanks.
        assignment: tuple[object, object] = (None, None)
        if state.assignments.get(worker_id):
            grid_code, since = state.assignments[worker_id][-1]
            assignment = (grid_code, pd.Timestamp(since).tz_convert(LOCAL_TZ))
        worker_rows.append((worker_id, *person, *assignment))
    layers["workers"] = pd.DataFrame(worker_rows, columns=list(WORKER_COLUMNS))
    pois = sorted(state.pois.values(), key=lambda poi: poi.poi_id)
    layers["pois"] = gpd.GeoDataFrame(
        {column: [getattr(poi, column) for poi in pois] for column in POI_COLUMNS},
        geometry=[poi.geom for poi in pois],
        crs=STORAGE_CRS,
    )
    return layers


def _boundary_value(row: Boundary, column: str) -> object:
    if column.endswith("_code"):
        return row.parent_code
    value: object = getattr(row, column)
    return value


def _wkb(geom: shapely.Geometry) -> WKBElement:
    return from_shape(geom, srid=SRID)


def _from_wkb(blobs: Sequence[bytes | memoryview]) -> list[shapely.Geometry]:
    return list(shapely.from_wkb([bytes(blob) for blob in blobs]))
