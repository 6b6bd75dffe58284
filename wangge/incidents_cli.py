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
