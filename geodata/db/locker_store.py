"""Cloud lockers in PostGIS: the registry and the drop-offs; functions never commit.

The registry's writers take SQLAlchemy connections (the CLI's transaction); the consumer's
reader and writer take the psycopg connection of its batch.
"""

import csv
from collections.abc import Iterable, Sequence
from dataclasses import replace
from typing import IO, Final

import psycopg
from sqlalchemy import Connection, func, select
from sqlalchemy.dialects.postgresql import insert

from geodata.db.models import Locker as LockerRow
from geodata.db.models import PointOfInterest
from geodata.lockers import InvalidLocker, Locker, LockerDropOff, LockerExists, checked_locker

SRID: Final = 4326
DEFAULT_COMPARTMENTS: Final = 24
"""Compartments of a locker seeded from the dataset (a common cabinet: 4 columns of 6)."""
CSV_COLUMNS: Final = ("locker_id", "name", "lon", "lat", "compartments")


def _values(locker: Locker) -> dict[str, object]:
    return {
        "locker_id": locker.locker_id,
        "name": locker.name,
        "poi_id": locker.poi_id,
        "compartments": locker.compartments,
        "lon": locker.lon,
        "lat": locker.lat,
        "geom": func.ST_SetSRID(func.ST_MakePoint(locker.lon, locker.lat), SRID),
        "grid_code": locker.grid_code,
    }


def add_locker(conn: Connection, locker: Locker) -> None:
    """Register one locker; LockerExists when its id is taken."""
    statement = insert(LockerRow).values(**_values(locker)).on_conflict_do_nothing()
    if conn.execute(statement).rowcount == 0:
        raise LockerExists(f"a locker with the id {locker.locker_id!r} is registered already")


def upsert_lockers(conn: Connection, lockers: Iterable[Locker]) -> int:
    """Register or update lockers by id (an import run again changes nothing); how many."""
    count = 0
    for locker in lockers:
        statement = insert(LockerRow).values(**_values(locker))
        values = _values(locker)
        del values["locker_id"]
        conn.execute(
            statement.on_conflict_do_update(index_elements=[LockerRow.locker_id], set_=values)
        )
        count += 1
    return count


def list_lockers(conn: Connection) -> list[Locker]:
    """Every registered locker, by id."""
    rows = conn.execute(
        select(
            LockerRow.locker_id,
            LockerRow.name,
            LockerRow.lon,
            LockerRow.lat,
            LockerRow.compartments,
            LockerRow.grid_code,
            LockerRow.poi_id,
        ).order_by(LockerRow.locker_id)
    ).all()
    return [Locker(*row) for row in rows]


def dataset_lockers(conn: Connection) -> list[Locker]:
    """The dataset's cloud lockers (points of interest of kind cloud_locker), as entries
    with the POI's id for the locker's, ready to register."""
    rows = conn.execute(
        select(
            PointOfInterest.poi_id,
            PointOfInterest.name,
            func.ST_X(PointOfInterest.geom),
            func.ST_Y(PointOfInterest.geom),
        )
        .where(PointOfInterest.kind == "cloud_locker")
        .order_by(PointOfInterest.poi_id)
    ).all()
    return [
        checked_locker(poi_id, name, float(lon), float(lat), DEFAULT_COMPARTMENTS, poi_id=poi_id)
        for poi_id, name, lon, lat in rows
    ]


def read_csv(stream: IO[str]) -> list[Locker]:
    """Lockers from a CSV with the header `CSV_COLUMNS` (WGS84); InvalidLocker names the line."""
    reader = csv.DictReader(stream)
    missing = set(CSV_COLUMNS) - set(reader.fieldnames or ())
    if missing:
        raise InvalidLocker(f"the CSV lacks the column(s) {', '.join(sorted(missing))}")
    lockers: list[Locker] = []
    seen: set[str] = set()
    for line, row in enumerate(reader, start=2):
        try:
            locker = checked_locker(
                row["locker_id"] or "",
                row["name"] or "",
                float(row["lon"]),
                float(row["lat"]),
                int(row["compartments"]),
            )
        except (InvalidLocker, ValueError, TypeError) as exc:
            raise InvalidLocker(f"line {line}: {exc}") from None
        if locker.locker_id in seen:
            raise InvalidLocker(f"line {line}: the id {locker.locker_id} comes twice")
        seen.add(locker.locker_id)
        lockers.append(locker)
    return lockers


def located(lockers: Sequence[Locker], grid_of: dict[str, str | None]) -> list[Locker]:
    """The lockers with the grid codes `grid_of` gives by locker id."""
    return [replace(locker, grid_code=grid_of.get(locker.locker_id)) for locker in lockers]


# --------------------------------------------------------------------------- the consumer's


def lockers_by_id(conn: psycopg.Connection, ids: Iterable[str]) -> dict[str, Locker]:
    """The registered lockers among `ids`."""
    wanted = sorted(set(ids))
    if not wanted:
        return {}
    rows = conn.execute(
        "SELECT locker_id, name, lon, lat, compartments, grid_code, poi_id FROM lockers"
        " WHERE locker_id = ANY(%s)",
        (wanted,),
    ).fetchall()
    return {row[0]: Locker(row[0], row[1], row[2], row[3], row[4], row[5], row[6]) for row in rows}


def record_dropoffs(conn: psycopg.Connection, dropoffs: Sequence[LockerDropOff]) -> None:
    """Store each drop-off once by its event id (a redelivery is skipped)."""
    with conn.cursor() as cursor:
        cursor.executemany(
            "INSERT INTO locker_dropoffs (event_id, locker_id, compartment, document_kind,"
            " dropped_at) VALUES (%s, %s, %s, %s, %s) ON CONFLICT (event_id) DO NOTHING",
            [
                (d.event_id, d.locker_id, d.compartment, str(d.document_kind), d.dropped_at)
                for d in dropoffs
            ],
        )
