"""`wangge compliance` and `wangge incidents`: what the database holds, as terminal tables.

The tables are drawn by `wangge.compliance_cli` and `wangge.incidents_cli`.
"""

from datetime import datetime
from typing import Annotated

import typer

from wangge.commands.common import console, fail
from wangge.settings import DatabaseSettings, PatrolSettings


def compliance(
    week: Annotated[str, typer.Option(help="ISO week, e.g. 2020-W37")],
    as_of: Annotated[
        datetime | None,
        typer.Option(
            "--as-of",
            formats=["%Y-%m-%dT%H:%M:%S%z", "%Y-%m-%dT%H:%M:%S", "%Y-%m-%dT%H:%M", "%Y-%m-%d"],
            help="how the week stood at this time (default now); without an offset, Beijing time",
        ),
    ] = None,
    code: Annotated[
        str | None, typer.Option(help="district, street, community or grid code prefix")
    ] = None,
) -> None:
    """Print the patrol compliance of every worker in a week, as of a time."""
    from geodata.errors import WanggeError
    from wangge.compliance_cli import print_compliance

    try:
        config = PatrolSettings().compliance_config()
        print_compliance(DatabaseSettings().url, week, as_of, code, console, config)
    except WanggeError as exc:
        raise fail(str(exc)) from exc


def incidents(
    code: Annotated[
        str | None, typer.Option(help="district, street, community or grid code prefix")
    ] = None,
    status: Annotated[
        str | None, typer.Option(help="a status or several, comma-separated, e.g. reported")
    ] = None,
    category: Annotated[
        str | None, typer.Option(help="a category code, or a class such as environment")
    ] = None,
    limit: Annotated[int, typer.Option(min=1, max=1000, help="rows to print")] = 50,
) -> None:
    """Print the newest incidents and where they stand in their lifecycle."""
    from geodata.errors import WanggeError
    from wangge.incidents_cli import print_incidents

    try:
        print_incidents(
            DatabaseSettings().url,
            code=code,
            status=status,
            category=category,
            limit=limit,
            console=console,
        )
    except WanggeError as exc:
        raise fail(str(exc)) from exc
