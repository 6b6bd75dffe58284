"""The week's compliance table as a file: CSV or XLSX, the numbers GET /api/v1/compliance gives.

One row per (worker, grid) pair, from the same report the map reads (`level=grid`, whose
items hold their workers), for the same week, `as_of` and area scope. The CSV is UTF-8
with a byte-order mark, so that Excel and WPS read its Chinese names without asking.
"""

from datetime import UTC, datetime
from typing import Annotated, Any, Final, Literal

from fastapi import APIRouter, Query
from fastapi.responses import Response
from starlette.concurrency import run_in_threadpool

from geodata.compliance import IsoWeek
from geodata.compliance.report import ComplianceReport, GridCompliance, check_code, parse_week
from geodata.db.compliance_read import compliance_report
from geodata.table_files import csv_bytes, xlsx_bytes
from grid_service.auth import scoped_code
from grid_service.compliance import AreaReader, ComplianceConfigDep, WeekQuery
from grid_service.deps import EngineDep, SupportedTime
from grid_service.errors import ErrorBody

router = APIRouter(prefix="/api/v1", tags=["compliance"])

COLUMNS: Final = (
    "week",
    "as_of",
    "grid_code",
    "grid_name",
    "worker_id",
    "worker_name",
    "required",
    "counted",
    "status",
    "counted_days",
)
"""The export's header row; `counted_days` joins the local days with spaces."""

CSV_TYPE: Final = "text/csv; charset=utf-8"
XLSX_TYPE: Final = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"

_ERRORS: Final[dict[int | str, dict[str, Any]]] = {
    401: {"model": ErrorBody, "description": "missing_token or invalid_token"},
    403: {"model": ErrorBody, "description": "forbidden or outside_area"},
    404: {"model": ErrorBody, "description": "grid_not_found"},
    422: {"model": ErrorBody, "description": "invalid_week, invalid_code or invalid_request"},
}


def table_rows(report: ComplianceReport, as_of: str) -> list[tuple[Any, ...]]:
    """The report's (worker, grid) pairs as rows of COLUMNS, in the report's order."""
    rows: list[tuple[Any, ...]] = []
    for grid in report.items:
        assert isinstance(grid, GridCompliance)
        for worker in grid.workers:
            rows.append(
                (
                    str(report.week),
                    as_of,
                    grid.grid_code,
                    grid.name or "",
                    worker.worker_id,
                    worker.name,
                    worker.required,
                    worker.counted,
                    worker.status,
                    " ".join(day.isoformat() for day in worker.counted_days),
                )
            )
    return rows


@router.get(
    "/compliance/export",
    response_class=Response,
    responses={
        **_ERRORS,
        200: {
            "description": "the table as a file",
            "content": {"text/csv": {}, XLSX_TYPE: {}},
        },
    },
)
async def export_compliance(
    engine: EngineDep,
    config: ComplianceConfigDep,
    principal: AreaReader,
    format: Annotated[Literal["csv", "xlsx"], Query(description="the file's format")] = "csv",
    week: WeekQuery = None,
    as_of: Annotated[
        SupportedTime | None,
        Query(description="RFC 3339 time with an offset; default: now"),
    ] = None,
    code: Annotated[
        str | None,
        Query(description="code prefix of the grids; default: the caller's area"),
    ] = None,
) -> Response:
    """The week's compliance table as CSV or XLSX: one row per (worker, grid) pair, the
    numbers of GET /api/v1/compliance?level=grid for the same `week`, `as_of` and `code`
    (its `items[].workers`). The same scope and errors as that route."""
    at = as_of if as_of is not None else datetime.now(UTC)
    check_code(code, "grid")
    chosen = parse_week(week) if week is not None else IsoWeek.week_of(at, config.tz)
    scoped = scoped_code(principal, code)
    report = await run_in_threadpool(
        compliance_report, engine, chosen, at, level="grid", code=scoped, config=config
    )
    rows = table_rows(report, at.astimezone(config.tz).isoformat())
    name = f"compliance-{chosen}-{scoped or 'city'}"
    if format == "xlsx":
        body, media_type = (
            await run_in_threadpool(xlsx_bytes, COLUMNS, rows, str(chosen)),
            XLSX_TYPE,
        )
    else:
        body, media_type = csv_bytes(COLUMNS, rows), CSV_TYPE
    return Response(
        body,
        media_type=media_type,
        headers={
            "Content-Disposition": f'attachment; filename="{name}.{format}"',
            "Cache-Control": "no-store",
        },
    )
