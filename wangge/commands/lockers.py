"""`wangge lockers add|list|import`: the registry of cloud lockers (智慧云柜).

Each locker is located in its grid with the grid snapshot the consumers and the API use;
its drop-offs become tasks for that grid's worker (docs/LOCKERS.md).
"""

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.table import Table

from wangge.commands.common import console, fail
from wangge.settings import DatabaseSettings

if TYPE_CHECKING:
    from sqlalchemy import Connection, Engine

    from geodata.lockers import Locker

app = typer.Typer(help="Cloud lockers (智慧云柜): the registry their drop-offs are routed by.")


@app.command("add")
def lockers_add(
    locker_id: Annotated[str, typer.Argument(help="the locker's id, as its drop-offs name it")],
    name: Annotated[str, typer.Option(help="its name, e.g. the compound's and 智慧云柜")],
    lon: Annotated[float, typer.Option(help="longitude, WGS84")],
    lat: Annotated[float, typer.Option(help="latitude, WGS84")],
    compartments: Annotated[int, typer.Option(help="how many compartments it has")] = 24,
) -> None:
    """Register one locker, located in its grid."""
    from geodata.db import locker_store
    from geodata.errors import WanggeError
    from geodata.lockers import checked_locker

    try:
        locker = checked_locker(locker_id, name, lon, lat, compartments)
        with _connection() as (engine, conn):
            [placed] = _locate(engine, [locker])
            locker_store.add_locker(conn, placed)
    except WanggeError as exc:
        raise fail(str(exc)) from exc
    console.print(f"registered locker {placed.locker_id} in grid {placed.grid_code or '(none)'}")


@app.command("import")
def lockers_import(
    csv_path: Annotated[
        Path | None,
        typer.Argument(
            help="a CSV with locker_id,name,lon,lat,compartments (WGS84); without it, the "
            "dataset's cloud lockers (the 40 of 高新区 in the reference city)",
            exists=True,
            dir_okay=False,
        ),
    ] = None,
) -> None:
    """Register or update lockers from a CSV, or from the dataset's points of interest."""
    from geodata.db import locker_store
    from geodata.errors import WanggeError

    try:
        with _connection() as (engine, conn):
            if csv_path is None:
                lockers = locker_store.dataset_lockers(conn)
            else:
                with csv_path.open(encoding="utf-8-sig", newline="") as stream:
                    lockers = locker_store.read_csv(stream)
            count = locker_store.upsert_lockers(conn, _locate(engine, lockers))
    except WanggeError as exc:
        raise fail(str(exc)) from exc
    console.print(f"registered {count} lockers")


@app.command("list")
def lockers_list() -> None:
    """Every registered locker: id, name, grid, compartments and point."""
    from geodata.db import locker_store
    from geodata.errors import WanggeError

    try:
        with _connection() as (_engine, conn):
            lockers = locker_store.list_lockers(conn)
    except WanggeError as exc:
        raise fail(str(exc)) from exc
    table = Table("locker", "name", "grid", "compartments", "lon", "lat")
    for locker in lockers:
        table.add_row(
            locker.locker_id,
            locker.name,
            locker.grid_code or "",
            str(locker.compartments),
            f"{locker.lon:.6f}",
            f"{locker.lat:.6f}",
        )
    console.print(table)
    console.print(f"{len(lockers)} lockers")


def _locate(engine: "Engine", lockers: Sequence["Locker"]) -> list["Locker"]:
    """The lockers with their grids, as the grid snapshot locates them now."""
    from geodata.db import locker_store
    from geodata.db.grid_cache import load_snapshot

    snapshot = load_snapshot(engine)
    now = datetime.now(UTC)
    grid_of: dict[str, str | None] = {}
    for locker in lockers:
        found = snapshot.locate(locker.lon, locker.lat, now)
        grid_of[locker.locker_id] = found.detail.grid.code if found else None
    return locker_store.located(lockers, grid_of)


@contextmanager
def _connection() -> Iterator[tuple["Engine", "Connection"]]:
    """The engine and a transaction at the current schema, committed on exit."""
    from geodata.db import migrate
    from geodata.db.engine import create_db_engine

    engine = create_db_engine(DatabaseSettings().url)
    try:
        migrate.require_current_schema(engine)
        with engine.begin() as conn:
            yield engine, conn
    finally:
        engine.dispose()
