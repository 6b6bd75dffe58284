"""`wangge dataset`: generate the reference dataset and import boundaries."""

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from wangge.commands.common import console, err_console, fail, progress_bar
from wangge.settings import DatabaseSettings, LocalServicesSettings

app = typer.Typer(help="The reference dataset: generate and import boundaries.")


@app.command("generate")
def dataset_generate(
    out: Annotated[Path, typer.Option(help="GeoPackage to write")],
    seed: Annotated[int, typer.Option(help="random seed; same seed, same file")] = 2020,
) -> None:
    """Write the synthetic Baoji reference dataset (1,138 grids) as a GeoPackage."""
    from geodata.dataset.generate import generate_reference_dataset, write_geopackage

    with progress_bar() as progress:
        dataset = generate_reference_dataset(seed, progress=progress)
    write_geopackage(dataset, out)
    table = Table("layer", "features")
    for layer in ("districts", "streets", "communities", "grids", "workers", "pois"):
        table.add_row(layer, f"{len(getattr(dataset, layer)):,}")
    console.print(table)
    console.print(f"wrote {out}")


def import_dataset(
    path: Path, *, dry_run: bool, repair: bool, valid_from: str | None = None
) -> None:
    """Import a boundary file, or print why it was refused and exit 1."""
    from geodata.dataset.importer import import_boundaries, parse_valid_from
    from geodata.db import migrate
    from geodata.db.engine import create_db_engine
    from geodata.errors import ImportRefused, SchemaMissing

    try:
        since = None if valid_from is None else parse_valid_from(valid_from)
    except ValueError as exc:
        raise fail(str(exc)) from exc
    engine = create_db_engine(DatabaseSettings().url)
    try:
        migrate.require_current_schema(engine)
        with progress_bar() as progress:
            report = import_boundaries(
                engine,
                path,
                dry_run=dry_run,
                repair=repair,
                valid_from=since,
                progress=progress,
            )
    except SchemaMissing as exc:
        raise fail(str(exc)) from exc
    except ImportRefused as exc:
        table = Table("layer", "feature", "reason", "detail", title="refused: nothing was written")
        for problem in exc.problems:
            table.add_row(
                str(getattr(problem, "layer", "")),
                str(getattr(problem, "feature", "")),
                str(getattr(problem, "reason", "")),
                str(getattr(problem, "detail", "")),
            )
        err_console.print(table)
        raise fail(str(exc)) from exc
    finally:
        engine.dispose()
    console.print(report.render() if hasattr(report, "render") else report)


@app.command("import")
def dataset_import(
    path: Annotated[
        Path,
        typer.Argument(
            exists=True, help="GeoJSON, Shapefile (.shp/.zip), GeoPackage or FlatGeobuf"
        ),
    ],
    dry_run: Annotated[bool, typer.Option("--dry-run", help="validate and report only")] = False,
    repair: Annotated[
        bool, typer.Option("--repair", help="repair rings make_valid fixes within 0.1 % area")
    ] = False,
    valid_from: Annotated[
        str | None,
        typer.Option(
            "--valid-from",
            metavar="DATE",
            help="when the city's new boundaries and assignments take effect: a date "
            "(2024-07-01, local midnight) or an ISO 8601 time; may be in the future "
            "(default: now; the reference date on a first import)",
        ),
    ] = None,
) -> None:
    """Validate and import boundaries, all or nothing."""
    import_dataset(path, dry_run=dry_run, repair=repair, valid_from=valid_from)


def _reference_dataset_path(seed: int) -> Path:
    return LocalServicesSettings().state_dir / f"baoji-reference-seed{seed}.gpkg"


def load_reference_dataset_if_empty(seed: int) -> None:
    """Import the reference dataset when the database has no grid yet."""
    from geodata.dataset.generate import generate_reference_dataset, write_geopackage
    from geodata.dataset.importer import database_is_empty
    from geodata.db.engine import create_db_engine

    engine = create_db_engine(DatabaseSettings().url)
    try:
        empty = database_is_empty(engine)
    finally:
        engine.dispose()
    if not empty:
        console.print("database already holds grids: reference dataset not loaded")
        return
    path = _reference_dataset_path(seed)
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        with progress_bar() as progress:
            write_geopackage(generate_reference_dataset(seed, progress=progress), path)
    console.print(f"loading the reference dataset from {path}")
    import_dataset(path, dry_run=False, repair=False)
