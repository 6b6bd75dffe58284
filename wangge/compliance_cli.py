"""`wangge compliance`: a week's patrol compliance as a table in the terminal."""

from collections import Counter
from datetime import UTC, datetime

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from geodata.compliance import ComplianceConfig
from geodata.compliance.report import WorkerCompliance, parse_week
from geodata.db.compliance_read import compliance_report
from geodata.db.engine import create_db_engine
from geodata.events import ComplianceStatus

STATUS_STYLE: dict[ComplianceStatus, str] = {
    "met": "green",
    "on_track": "cyan",
    "at_risk": "yellow",
    "missed": "bold red",
}
# Fixed English names rather than strftime("%a"), which follows the process locale.
WEEKDAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")


def _days(worker: WorkerCompliance) -> str:
    return " ".join(WEEKDAYS[day.weekday()] for day in worker.counted_days)


def print_compliance(
    database_url: str,
    week: str,
    as_of: datetime | None,
    code: str | None,
    console: Console,
    config: ComplianceConfig | None = None,
) -> None:
    """Print every (worker, grid) of the week under `code` as of `as_of` (default now).

    A naive `as_of` is read as local time (Asia/Shanghai by default): people at a
    terminal in Baoji type Beijing time. Bad input raises the domain error (InvalidWeek,
    InvalidAreaCode, GridNotFound) for the command to report.
    """
    config = config or ComplianceConfig()
    iso_week = parse_week(week)
    if as_of is None:
        at = datetime.now(UTC)
    elif as_of.tzinfo is None:
        at = as_of.replace(tzinfo=config.tz)
    else:
        at = as_of
    engine = create_db_engine(database_url)
    try:
        report = compliance_report(engine, iso_week, at, level="worker", code=code, config=config)
    finally:
        engine.dispose()
    workers = [item for item in report.items if isinstance(item, WorkerCompliance)]

    local = at.astimezone(config.tz)
    title = f"Patrol compliance {iso_week} as of {local.isoformat(timespec='minutes')}"
    if report.code:
        title += f", grids under {report.code}"
    table = Table(title=title)
    for column in ("grid", "worker", "name"):
        table.add_column(column)
    for column in ("required", "counted"):
        table.add_column(column, justify="right")
    table.add_column("status")
    table.add_column("counted days")
    for worker in workers:
        style = STATUS_STYLE[worker.status]
        table.add_row(
            worker.grid_code,
            worker.worker_id,
            escape(worker.name),
            str(worker.required),
            str(worker.counted),
            f"[{style}]{worker.status}[/]",
            _days(worker),
        )
    console.print(table)
    statuses = Counter(worker.status for worker in workers)
    console.print(
        f"{statuses['met']:,} of {len(workers):,} met; "
        + ", ".join(f"{status} {statuses[status]:,}" for status in STATUS_STYLE if status != "met")
    )
