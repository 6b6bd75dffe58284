"""`wangge evaluate`: a period's evaluation (综合评价) as a terminal table or a CSV file.

The table is drawn by `wangge.evaluation_cli`; the definitions are in docs/EVALUATION.md.
"""

from datetime import datetime
from pathlib import Path
from typing import Annotated

import typer

from wangge.commands.common import console, fail
from wangge.settings import DatabaseSettings


def evaluate(
    first: Annotated[
        datetime | None,
        typer.Option(
            "--from",
            formats=["%Y-%m-%d"],
            help="first local day (Asia/Shanghai); default: the first of the month of --to",
        ),
    ] = None,
    last: Annotated[
        datetime | None,
        typer.Option(
            "--to",
            formats=["%Y-%m-%d"],
            help="last local day, included; default: the month's end of --from, or today",
        ),
    ] = None,
    level: Annotated[
        str | None,
        typer.Option(help="worker, grid, community, street or district; default: finer than code"),
    ] = None,
    code: Annotated[
        str | None, typer.Option(help="the area: a district, street, community or grid code")
    ] = None,
    csv_file: Annotated[
        Path | None, typer.Option("--csv", help="write the figures to this CSV file too")
    ] = None,
) -> None:
    """Print each worker's or area's figures for a period: closed on time, overdue, rework."""
    from geodata.errors import WanggeError
    from wangge.evaluation_cli import print_evaluation

    try:
        print_evaluation(
            DatabaseSettings().url,
            first.date() if first else None,
            last.date() if last else None,
            level,
            code,
            csv_file,
            console,
        )
    except WanggeError as exc:
        raise fail(str(exc)) from exc
