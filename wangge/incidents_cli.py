"""`wangge incidents`: incidents and where they stand, as a table in the terminal."""

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from geodata.compliance.report import check_code
from geodata.dataset.layers import LOCAL_TZ
from geodata.db.engine import create_db_engine
from geodata.db.incident_store import IncidentFilter, list_incidents
from geodata.incidents import ListingScope, Status, check_category, parse_statuses

STATUS_STYLE: dict[Status, str] = {
    Status.REPORTED: "bold yellow",
    Status.DISPATCHED: "cyan",
    Status.IN_PROGRESS: "blue",
    Status.RESOLVED: "magenta",
    Status.CLOSED: "green",
    Status.ESCALATED: "bold red",
    Status.CANCELLED: "dim",
}


def print_incidents(
    database_url: str,
    *,
    code: str | None,
    status: str | None,
    category: str | None,
    limit: int,
    console: Console,
) -> None:
    """Print the newest `limit` incidents under `code` with the statuses and category asked.

    The terminal is an operator's, with the database's credentials: no area scope. Bad
    filters raise the domain error (InvalidAreaCode, InvalidIncidentFilter).
    """
    query = IncidentFilter(
        scope=ListingScope(check_code(code, "grid") or None, None),
        statuses=parse_statuses(status),
        category=check_category(category),
    )
    engine = create_db_engine(database_url)
    try:
        with engine.connect() as conn:
            page = list_incidents(conn, query, limit=limit, offset=0)
    finally:
        engine.dispose()
    title = f"Incidents: {len(page.incidents)} newest of {page.number_matched}"
    if code:
        title += f" under {code}"
    table = Table(title=title)
    for column in ("reported", "incident", "category", "grid", "status", "assignee"):
        table.add_column(column)
    table.add_column("v", justify="right")
    table.add_column("escalated to")
    for record in page.incidents:
        state = record.state
        table.add_row(
            record.reported_at.astimezone(LOCAL_TZ).strftime("%Y-%m-%d %H:%M"),
            str(record.incident_id)[:8],
            escape(record.category),
            state.grid_code or "-",
            f"[{STATUS_STYLE[state.status]}]{state.status}[/]",
            state.assignee or "-",
            str(state.version),
            state.escalated_to or "",
        )
    console.print(table)


# --------------------------------------------------------------------------- deadlines


def print_deadlines(database_url: str, console: Console) -> None:
    """Print the city's deadline table and the calendar's holidays and make-up days."""
    import psycopg

    from geodata.db import deadline_store

    with psycopg.connect(database_url) as conn:
        table = deadline_store.load_table(conn)
        days = conn.execute("SELECT day, kind, name FROM calendar_days ORDER BY day").fetchall()
    rows = Table(title="Deadlines per category and stage (the most specific row wins)")
    for column in ("category", "stage", "within"):
        rows.add_column(column)
    for (category, stage), deadline in sorted(table.rows.items()):
        amount = f"{deadline.amount:g}"
        rows.add_row(escape(category), stage.value, f"{amount} {deadline.unit.value}")
    console.print(rows)
    calendar = table.calendar
    console.print(
        f"working hours {calendar.start:%H:%M}-{calendar.end:%H:%M} Asia/Shanghai, Monday to"
        " Friday, except:"
    )
    listed = Table()
    for column in ("day", "kind", "name"):
        listed.add_column(column)
    for day, kind, name in days:
        listed.add_row(day.isoformat(), kind, escape(name or ""))
    console.print(listed)


def set_deadline(
    database_url: str, category: str, stage: str, amount: float | None, unit: str | None
) -> None:
    """Set one row (amount and unit) or remove it (neither); ValueError for a bad one."""
    import psycopg

    from geodata.db import deadline_store
    from geodata.deadlines import ANY_CATEGORY, Deadline, Stage, Unit

    if category != ANY_CATEGORY:
        check_category(category)
    which = Stage(stage)
    with psycopg.connect(database_url) as conn:
        if amount is None and unit is None:
            if not deadline_store.delete_deadline(conn, category, which):
                raise ValueError(f"no deadline for {category} {stage} to remove")
            return
        if amount is None or unit is None:
            raise ValueError("give both an amount and a unit, or neither to remove the row")
        deadline_store.set_deadline(conn, category, which, Deadline(amount, Unit(unit)))


def set_calendar_day(database_url: str, day: str, kind: str | None, name: str | None) -> None:
    """Make a day a holiday or a make-up working day, or (kind None) an ordinary one again."""
    from datetime import date

    import psycopg

    from geodata.db import deadline_store

    if kind not in (None, "holiday", "workday"):
        raise ValueError(f"kind {kind!r} is neither holiday nor workday")
    with psycopg.connect(database_url) as conn:
        deadline_store.set_calendar_day(conn, date.fromisoformat(day), kind, name)
