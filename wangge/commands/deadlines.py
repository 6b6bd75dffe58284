"""`wangge deadlines`: the city's deadline table and working calendar (docs/DEADLINES.md).

The work is in `wangge.incidents_cli`. An edit applies to stages begun from then on: a
case keeps the due time it was given when its stage began.
"""

from typing import Annotated

import typer

from wangge.commands.common import console, fail
from wangge.settings import DatabaseSettings

app = typer.Typer(help="Deadlines of incidents per category and stage, and the holidays.")


@app.command("list")
def deadlines_list() -> None:
    """Print the table and the calendar's holidays and make-up working days."""
    from wangge.incidents_cli import print_deadlines

    print_deadlines(DatabaseSettings().url, console)


@app.command("set")
def deadlines_set(
    category: Annotated[
        str, typer.Argument(help="a category code, a class such as emergency, or * for all")
    ],
    stage: Annotated[str, typer.Argument(help="dispatch, handle or verify")],
    amount: Annotated[
        float | None, typer.Argument(help="how many; leave out with UNIT to remove the row")
    ] = None,
    unit: Annotated[
        str | None, typer.Argument(help="hours (round the clock), working_hours or working_days")
    ] = None,
) -> None:
    """Set how long a stage of a category's cases may take (or remove the row)."""
    from geodata.errors import WanggeError
    from wangge.incidents_cli import set_deadline

    try:
        set_deadline(DatabaseSettings().url, category, stage, amount, unit)
    except (ValueError, WanggeError) as exc:
        raise fail(str(exc)) from exc
    console.print(f"{category} {stage}: {'removed' if amount is None else f'{amount:g} {unit}'}")


@app.command("day")
def deadlines_day(
    day: Annotated[str, typer.Argument(help="YYYY-MM-DD")],
    kind: Annotated[
        str | None,
        typer.Option(help="holiday, or workday (a weekend day worked); leave out: ordinary"),
    ] = None,
    name: Annotated[str | None, typer.Option(help="e.g. 国庆节")] = None,
) -> None:
    """Make a day a holiday or a make-up working day, or an ordinary day again."""
    from wangge.incidents_cli import set_calendar_day

    try:
        set_calendar_day(DatabaseSettings().url, day, kind, name)
    except ValueError as exc:
        raise fail(str(exc)) from exc
    console.print(f"{day}: {kind or 'ordinary'}")
