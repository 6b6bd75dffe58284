"""`wangge bench` (the benchmarks themselves are in `wangge.benchmarks`)."""

from pathlib import Path
from typing import Annotated

import typer

from wangge.commands.common import console, fail, print_reports
from wangge.commands.services import start_services
from wangge.settings import DatabaseSettings


def bench(
    names: Annotated[
        list[str] | None,
        typer.Argument(
            help="pipeline, compliance, api, import, peers, trackers, app, map,"
            " deadlines, evaluation, coverage (default: all)"
        ),
    ] = None,
    quick: Annotated[
        bool, typer.Option("--quick", help="short runs: about a minute in all, noisy figures")
    ] = False,
    output: Annotated[
        Path | None,
        typer.Option(help="also write the combined table: results.json or results.md"),
    ] = None,
) -> None:
    """Run the benchmarks on the configured services; print one table of them all."""
    try:
        from wangge.benchmarks.cli import check_request, run_benchmarks
    except ModuleNotFoundError as exc:
        if exc.name != "wangge.benchmarks":
            raise
        # The wheel leaves the benchmarks out: a development tool, with dev dependencies.
        raise fail("the benchmarks run from a checkout of wangge (pip install -e .)") from exc
    try:
        check_request(names or [], output)
    except ValueError as exc:
        raise fail(str(exc)) from exc
    print_reports(start_services(tune=False))
    database_url = DatabaseSettings().url
    failed = run_benchmarks(
        names or [], quick=quick, console=console, database_url=database_url, output=output
    )
    if failed:
        raise typer.Exit(code=1)
