"""`wangge evaluate`: a period's evaluation as a table, and its CSV file (docs/EVALUATION.md)."""

from datetime import UTC, date, datetime
from pathlib import Path
from typing import get_args

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from geodata.compliance.report import Level, check_code
from geodata.db.engine import create_db_engine
from geodata.db.evaluation_read import read_evaluation
from geodata.deadlines import CITY_ZONE
from geodata.errors import InvalidAreaCode
from geodata.evaluation import Figures, StageTime, default_level, period_of
from geodata.evaluation_csv import evaluation_csv


def _rate(value: float | None) -> str:
    return "–" if value is None else f"{value:.1%}"


def _hours(time: StageTime) -> str:
    if time.mean_s is None or time.p90_s is None:
        return "–"
    return f"{time.mean_s / 3600:.1f} / {time.p90_s / 3600:.1f}"


def _row(figures: Figures) -> list[str]:
    return [
        figures.code or "city",
        escape(figures.name or ""),
        f"{figures.reported:,}",
        f"{figures.dispatched:,}",
        f"{figures.closed:,}",
        _rate(figures.on_time_rate),
        f"{figures.overdue:,}",
        f"{figures.escalations:,}",
        _rate(figures.reopen_rate),
        _hours(figures.stages["dispatch"]),
        _hours(figures.stages["handle"]),
        _hours(figures.stages["verify"]),
    ]


def print_evaluation(
    database_url: str,
    first: date | None,
    last: date | None,
    level: str | None,
    code: str | None,
    csv_file: Path | None,
    console: Console,
) -> None:
    """Print the period's figures at `level` under `code` (the city without), and write them
    to `csv_file` when given. Bad input raises the domain error (InvalidPeriod,
    InvalidAreaCode, AreaNotFound) for the command to report."""
    if level is not None and level not in get_args(Level):
        raise InvalidAreaCode(f"level {level!r} is not one of {', '.join(get_args(Level))}")
    scoped = check_code(code, "worker")
    chosen = next((known for known in get_args(Level) if known == level), default_level(scoped))
    check_code(scoped, chosen)
    period = period_of(first, last, datetime.now(UTC).astimezone(CITY_ZONE).date())
    engine = create_db_engine(database_url)
    try:
        with console.status(f"Reading the cases of {period.first} to {period.last}…"):
            evaluation = read_evaluation(engine, period, chosen, scoped)
    finally:
        engine.dispose()
    title = f"Evaluation {period.first} to {period.last} (Asia/Shanghai), by {chosen}"
    table = Table(title=title + (f" under {scoped}" if scoped else ""), show_footer=False)
    table.add_column("code")
    table.add_column("name")
    for column in ("reported", "dispatched", "closed", "on time", "overdue", "escal.", "rework"):
        table.add_column(column, justify="right")
    for stage in ("dispatch", "handle", "verify"):
        table.add_column(f"{stage} h\nmean / p90", justify="right")
    for item in evaluation.items:
        table.add_row(*_row(item))
    table.add_section()
    table.add_row(*_row(evaluation.total), style="bold")
    console.print(table)
    if csv_file is not None:
        csv_file.write_text(evaluation_csv(evaluation), encoding="utf-8", newline="")
        console.print(f"{len(evaluation.items) + 1:,} rows written to {csv_file}")
