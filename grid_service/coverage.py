"""Coverage over HTTP: each grid's last visit, visits and covered share in a period.

A thin adapter over `geodata.db.coverage_store` (what the storage stage and the
compliance engine stored; nothing here reads check-ins) and `geodata.coverage`. Scoped
like the compliance read: supervisors under their area code prefix, and admins. The same
table as CSV (UTF-8 with a byte-order mark, for Excel and WPS) or XLSX
(`geodata.table_files`).
"""

import threading
from datetime import date, datetime
from typing import Annotated, Any, Final, Literal

from fastapi import APIRouter, Query, Request, Response
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool

from geodata.compliance.report import check_code
from geodata.coverage import AreaCoverage, CoverageLevel, CoveragePeriod, GridCoverage
from geodata.db.coverage_store import CoverageMemory, coverage_report
from geodata.table_files import csv_bytes, xlsx_bytes
from grid_service.auth import scoped_code
from grid_service.compliance import AreaReader, ComplianceConfigDep
from grid_service.deps import EngineDep
from grid_service.errors import ErrorBody

router = APIRouter(prefix="/api/v1", tags=["coverage"])

CSV_TYPE: Final = "text/csv; charset=utf-8"
XLSX_TYPE: Final = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"

_ERRORS: Final[dict[int | str, dict[str, Any]]] = {
    401: {"model": ErrorBody, "description": "missing_token or invalid_token"},
    403: {"model": ErrorBody, "description": "forbidden or outside_area"},
    422: {"model": ErrorBody, "description": "invalid_interval, invalid_code or invalid_request"},
}


class GridCoveragePublic(BaseModel):
    """One grid in the period."""

    grid_code: str
    name: str
    visits: int = Field(description="counted patrols begun in the period (all its workers)")
    last_visit: datetime | None = Field(
        description="start of the last counted patrol begun before the period's end, local time"
    )
    days_since_last_visit: int | None = Field(
        description="local days from the last visit's day to the period's last day; null: never"
    )
    covered_share: float = Field(description="share of the grid's area near a usable fix, 0-1")
    cells_covered: int
    cells_total: int = Field(description="lattice cells inside the grid (0: not yet measured)")


class AreaCoveragePublic(BaseModel):
    """A community, street or district over its grids; the share is weighted by area."""

    level: CoverageLevel
    code: str
    name: str
    grids: int
    grids_visited: int = Field(description="grids with a counted patrol in the period")
    visits: int
    last_visit: datetime | None
    days_since_last_visit: int | None
    covered_share: float
    cells_covered: int
    cells_total: int


class CoveragePublic(BaseModel):
    """A period's coverage at one level, under a code prefix."""

    from_: date = Field(alias="from", serialization_alias="from")
    to: date
    level: CoverageLevel
    code: str | None = Field(description="the code prefix the grids were filtered by")
    items: list[GridCoveragePublic] | list[AreaCoveragePublic]


def _public(item: GridCoverage | AreaCoverage, tz: Any) -> GridCoveragePublic | AreaCoveragePublic:
    last = item.last_visit.astimezone(tz) if item.last_visit is not None else None
    share = round(item.covered_share, 4)
    if isinstance(item, GridCoverage):
        return GridCoveragePublic(
            grid_code=item.grid_code,
            name=item.name,
            visits=item.visits,
            last_visit=last,
            days_since_last_visit=item.days_since_last_visit,
            covered_share=share,
            cells_covered=item.cells_covered,
            cells_total=item.cells_total,
        )
    return AreaCoveragePublic(
        level=item.level,
        code=item.code,
        name=item.name,
        grids=item.grids,
        grids_visited=item.grids_visited,
        visits=item.visits,
        last_visit=last,
        days_since_last_visit=item.days_since_last_visit,
        covered_share=share,
        cells_covered=item.cells_covered,
        cells_total=item.cells_total,
    )


def coverage_answer(
    items: list[GridCoverage] | list[AreaCoverage],
    period: CoveragePeriod,
    level: CoverageLevel,
    code: str,
    tz: Any,
) -> CoveragePublic:
    """The JSON shape of a coverage report; times in local time."""
    return CoveragePublic.model_validate(
        {
            "from": period.first,
            "to": period.last,
            "level": level,
            "code": code or None,
            "items": [_public(item, tz) for item in items],
        }
    )


def table(answer: CoveragePublic) -> tuple[list[str], list[list[Any]]]:
    """The answer's items as a header and rows: the JSON fields in order, times as text."""
    model = GridCoveragePublic if answer.level == "grid" else AreaCoveragePublic
    header = list(model.model_fields)
    rows = []
    for item in answer.items:
        values = item.model_dump(mode="json")
        rows.append(["" if values[name] is None else values[name] for name in header])
    return header, rows


_MEMORY_LOCK: Final = threading.Lock()


def _memory(request: Request, engine: EngineDep) -> CoverageMemory:
    """The app's kept coverage answers, made on first use."""
    state = request.app.state
    with _MEMORY_LOCK:
        memory: CoverageMemory | None = getattr(state, "coverage_memory", None)
        if memory is None:
            memory = CoverageMemory(engine)
            state.coverage_memory = memory
    return memory


@router.get(
    "/coverage",
    response_model=CoveragePublic,
    response_model_by_alias=True,
    responses={
        **_ERRORS,
        200: {
            "description": "the coverage as JSON, or as a file with `format=csv|xlsx`",
            "content": {"text/csv": {}, XLSX_TYPE: {}},
        },
    },
)
async def get_coverage(
    request: Request,
    engine: EngineDep,
    config: ComplianceConfigDep,
    principal: AreaReader,
    from_: Annotated[
        date | None,
        Query(alias="from", description="first local day; default: 6 days before `to`"),
    ] = None,
    to: Annotated[
        date | None, Query(description="last local day, included; default: today")
    ] = None,
    level: Annotated[CoverageLevel, Query(description="one item per grid, or per area")] = "grid",
    code: Annotated[
        str | None, Query(description="code prefix of the grids; default: the caller's area")
    ] = None,
    format: Annotated[
        Literal["json", "csv", "xlsx"], Query(description="JSON, or the table as a file")
    ] = "json",
) -> Any:
    """Each grid's (or area's) last visit (a counted patrol), visits (counted patrols)
    and the share of its area within the coverage buffer of a usable fix, for the local
    days `from` to `to` (at most 366). Read from what the pipeline stored as it went:
    the storage stage's covered cells per grid and day, the engine's counted patrols.
    An answer is kept while no patrol is written, 30 s at most (docs/COVERAGE.md)."""
    tz = config.tz
    prefix = check_code(code, level)
    scoped = scoped_code(principal, prefix or None) or ""
    period = CoveragePeriod.of(from_, to, datetime.now(tz).date())

    def render() -> bytes:
        answer = coverage_answer(
            coverage_report(engine, period, level, scoped, tz), period, level, scoped, tz
        )
        if format == "json":
            return answer.model_dump_json(by_alias=True).encode()
        header, rows = table(answer)
        if format == "xlsx":
            return xlsx_bytes(header, rows, f"{period.first} {level}")
        return csv_bytes(header, rows)

    memory = _memory(request, engine)
    body = await run_in_threadpool(memory.answer, (period, level, scoped, format), render)
    if format == "json":
        return Response(body, media_type="application/json")
    name = f"coverage-{period.first}-{period.last}-{level}-{scoped or 'city'}"
    return Response(
        body,
        media_type=XLSX_TYPE if format == "xlsx" else CSV_TYPE,
        headers={
            "Content-Disposition": f'attachment; filename="{name}.{format}"',
            "Cache-Control": "no-store",
        },
    )
