"""`wangge archive`: closed weeks of check-ins to GeoParquet files and back (docs/HISTORY.md)."""

from datetime import date
from pathlib import Path
from typing import Annotated

import typer

from wangge.commands.common import fail

app = typer.Typer(
    help="Archive closed weeks of check-ins to GeoParquet, drop them, and restore them.",
    invoke_without_command=True,
    no_args_is_help=False,
)


@app.callback()
def archive(
    ctx: typer.Context,
    before: Annotated[
        str | None,
        typer.Option(help="archive every week that ends by this local day, YYYY-MM-DD"),
    ] = None,
    out: Annotated[
        Path | None, typer.Option(help="directory of the GeoParquet files and manifest.json")
    ] = None,
    apply_retention: Annotated[
        bool,
        typer.Option(
            "--apply-retention",
            help="archive the closed weeks older than WANGGE_RETENTION_WEEKS instead of --before",
        ),
    ] = False,
) -> None:
    """Write closed weeks to --out (one file per week, checked), then drop their partitions."""
    if ctx.invoked_subcommand is not None:
        return
    from geodata.errors import WanggeError
    from wangge.archive_cli import run_archive
    from wangge.settings import DatabaseSettings, PatrolSettings, RetentionSettings

    if out is None:
        raise fail("--out DIR is required: weeks are never dropped without an archive")
    if apply_retention == (before is not None):
        raise fail("give either --before YYYY-MM-DD or --apply-retention")
    try:
        cutoff = date.fromisoformat(before) if before else None
    except ValueError as exc:
        raise fail(f"--before is a day such as 2021-01-01, not {before!r}") from exc
    try:
        run_archive(
            DatabaseSettings().url,
            out,
            cutoff,
            RetentionSettings().retention_weeks,
            PatrolSettings().compliance_config().allowed_lateness,
        )
    except WanggeError as exc:
        raise fail(str(exc)) from exc


@app.command()
def restore(
    directory: Annotated[Path, typer.Argument(help="an archive directory (manifest.json)")],
    week: Annotated[
        list[str] | None, typer.Option(help="only this week, e.g. 2020-W37 (repeatable)")
    ] = None,
) -> None:
    """Load archived weeks back into check-ins, every file checked before any is loaded."""
    from geodata.compliance.weeks import IsoWeek
    from geodata.errors import WanggeError
    from wangge.archive_cli import run_restore
    from wangge.settings import DatabaseSettings

    try:
        weeks = [IsoWeek.parse(w) for w in week] if week else None
    except ValueError as exc:
        raise fail(str(exc)) from exc
    try:
        run_restore(DatabaseSettings().url, directory, weeks)
    except WanggeError as exc:
        raise fail(str(exc)) from exc
