"""`wangge coverage`: each grid's (or area's) visits, last visit and covered share, as a table.

The rows are the API's (`grid_service.coverage.table`), so `--csv` and `--xlsx` write the
very file `GET /api/v1/coverage?format=` answers for the same period, level and code.
"""

from datetime import date, datetime
from pathlib import Path

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from geodata.compliance.report import check_code
from geodata.coverage import CoverageConfig, CoverageLevel, CoveragePeriod
from geodata.db.coverage_store import coverage_report
from geodata.db.engine import create_db_engine
from geodata.table_files import csv_bytes, xlsx_bytes
from grid_service.coverage import coverage_answer, table


def _share_style(share: float) -> str:
    return "red" if share < 0.2 else "yellow" if share < 0.5 else "green"


def print_coverage(
    database_url: str,
    first: str | None,
    last: str | None,
    level: CoverageLevel,
    code: str | None,
    *,
    console: Console,
    csv_path: Path | None = None,
    xlsx_path: Path | None = None,
    config: CoverageConfig | None = None,
) -> None:
    """Print the period's coverage under `code`; write it as CSV or XLSX when asked.

    Days are local (Asia/Shanghai by default); bad input raises the domain error
    (InvalidPeriod, InvalidAreaCode) for the command to report.
    """
    tz = (config or CoverageConfig()).tz
    prefix = check_code(code, level)
    try:
        period = CoveragePeriod.of(
            date.fromisoformat(first) if first else None,
            date.fromisoformat(last) if last else None,
            datetime.now(tz).date(),
        )
    except ValueError as exc:
        raise ValueError(f"days are YYYY-MM-DD: {exc}") from None
    engine = create_db_engine(database_url)
    try:
        items = coverage_report(engine, period, level, prefix, tz)
    finally:
        engine.dispose()
    answer = coverage_answer(items, period, level, prefix, tz)
    header, rows = table(answer)

    title = f"Coverage {period.first} to {period.last}, by {level}"
    if prefix:
        title += f", under {prefix}"
    view = Table(title=title)
    show = [name for name in header if name not in ("cells_covered", "cells_total")]
    for name in show:
        numeric = name in ("visits", "grids", "grids_visited", "days_since_last_visit")
        view.add_column(name.replace("_", " "), justify="right" if numeric else "left")
    for row in rows:
        values = dict(zip(header, row, strict=True))
        cells = []
        for name in show:
            value = values[name]
            if name == "covered_share":
                cells.append(f"[{_share_style(float(value))}]{float(value):.0%}[/]")
            elif name == "last_visit":
                cells.append(str(value)[:16].replace("T", " "))
            elif name == "days_since_last_visit" and value == "":
                cells.append("[red]never[/]")
            else:
                cells.append(escape(str(value)))
        view.add_row(*cells)
    console.print(view)
    unvisited = sum(1 for row in rows if dict(zip(header, row, strict=True))["visits"] == 0)
    console.print(f"{len(rows):,} {level}s; {unvisited:,} without a counted patrol in the period")
    if csv_path is not None:
        csv_path.write_bytes(csv_bytes(header, rows))
        console.print(f"wrote {csv_path}")
    if xlsx_path is not None:
        xlsx_path.write_bytes(xlsx_bytes(header, rows, f"{period.first} {level}"))
        console.print(f"wrote {xlsx_path}")
