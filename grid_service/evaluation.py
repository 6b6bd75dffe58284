"""Evaluation (综合评价) over HTTP: a period's figures per worker or area, as JSON or CSV.

A thin adapter over `geodata.db.evaluation_read` (the read and the kept answers) and
`geodata.evaluation` (the figures; definitions in docs/EVALUATION.md). Scoped like
compliance: a supervisor under its area code prefix, an admin anywhere, a worker not at all.
"""

import threading
from datetime import UTC, date, datetime
from typing import Annotated, Any, Final, Literal

from fastapi import APIRouter, Depends, Query, Request, Response
from pydantic import BaseModel, ConfigDict, Field, TypeAdapter
from starlette.concurrency import run_in_threadpool

from geodata.accounts import Principal, Role
from geodata.compliance.report import Level, check_code
from geodata.db.evaluation_read import EvaluationMemory
from geodata.deadlines import CITY_ZONE
from geodata.evaluation import Evaluation, Stage, default_level, period_of
from geodata.evaluation_csv import evaluation_csv
from grid_service.auth import require_roles, scoped_code
from grid_service.deps import EngineDep
from grid_service.errors import ErrorBody

router = APIRouter(prefix="/api/v1", tags=["evaluation"])

AreaReader = Annotated[Principal, Depends(require_roles(Role.SUPERVISOR, Role.ADMIN))]

_ERRORS: Final[dict[int | str, dict[str, Any]]] = {
    401: {"model": ErrorBody, "description": "missing_token or invalid_token"},
    403: {"model": ErrorBody, "description": "forbidden (a worker) or outside_area"},
    404: {"model": ErrorBody, "description": "area_not_found"},
    422: {"model": ErrorBody, "description": "invalid_period, invalid_code or invalid_request"},
}


class _Public(BaseModel):
    model_config = ConfigDict(from_attributes=True)


class StageTimePublic(_Public):
    """The stays in a stage that ended in the period: how many, mean and p90 (seconds)."""

    count: int
    mean_s: float | None
    p90_s: float | None = Field(description="nearest-rank 90th percentile")


class SharePublic(_Public):
    """How many of the period's reports had this source or category, and their share."""

    key: str
    count: int
    share: float


class FiguresPublic(_Public):
    """One worker's or area's figures for the period (docs/EVALUATION.md)."""

    level: str = Field(description="worker, grid, community, street, district; city (total)")
    code: str = Field(description="the worker id or the area code ('' for the city)")
    name: str | None
    reported: int = Field(description="reports made in the period (a worker: its own)")
    dispatched: int = Field(description="cases dispatched in the period")
    closed: int = Field(description="cases closed in the period")
    closed_on_time: int = Field(description="of those, never past a due moment")
    on_time_rate: float | None = Field(description="closed_on_time / closed")
    overdue: int = Field(description="cases escalated or marked by the deadlines in the period")
    escalations: int
    escalations_by_deadlines: int
    reopened: int = Field(description="closed cases reopened at least once before their close")
    reopen_rate: float | None = Field(description="reopened / closed")
    stages: dict[Stage, StageTimePublic]
    by_source: list[SharePublic]
    by_category: list[SharePublic]


class EvaluationPublic(BaseModel):
    """A period's evaluation of an area: its total and one item per unit of `level`."""

    from_: date = Field(alias="from", serialization_alias="from")
    to: date
    time_zone: str
    level: Level
    code: str | None = Field(description="the area evaluated; null for the whole city")
    total: FiguresPublic
    items: list[FiguresPublic]


_FIGURES: Final = TypeAdapter(FiguresPublic)
_ITEMS: Final = TypeAdapter(list[FiguresPublic])


def render_json(evaluation: Evaluation) -> bytes:
    """The JSON of `EvaluationPublic`, made from the evaluation's dataclasses in one pass."""
    period = evaluation.period
    head = b'{"from":"%s","to":"%s","time_zone":"Asia/Shanghai","level":"%s","code":%s,"total":' % (
        period.first.isoformat().encode(),
        period.last.isoformat().encode(),
        evaluation.level.encode(),
        b'"%s"' % evaluation.code.encode() if evaluation.code else b"null",
    )
    total = _FIGURES.dump_json(_FIGURES.validate_python(evaluation.total, from_attributes=True))
    items = _ITEMS.dump_json(_ITEMS.validate_python(evaluation.items, from_attributes=True))
    return b"".join((head, total, b',"items":', items, b"}"))


def render_csv(evaluation: Evaluation) -> bytes:
    """The evaluation as the CSV of `geodata.evaluation_csv`."""
    return evaluation_csv(evaluation).encode()


_MEMORY_LOCK: Final = threading.Lock()


def _memory(request: Request, engine: EngineDep) -> EvaluationMemory:
    """The app's kept answers, made on first use (no lifespan hook of its own needed)."""
    state = request.app.state
    with _MEMORY_LOCK:
        memory: EvaluationMemory | None = getattr(state, "evaluation_memory", None)
        if memory is None:
            memory = EvaluationMemory(engine)
            state.evaluation_memory = memory
    return memory


DateQuery = Annotated[date | None, Query(examples=["2020-10-01"])]


@router.get(
    "/evaluation",
    response_model=EvaluationPublic,
    responses={
        **_ERRORS,
        200: {"content": {"text/csv": {"description": "with format=csv"}}},
    },
)
async def get_evaluation(
    request: Request,
    engine: EngineDep,
    principal: AreaReader,
    first: Annotated[
        date | None,
        Query(
            alias="from",
            description="first local day (Asia/Shanghai), YYYY-MM-DD; default: the first "
            "day of the month of `to`",
            examples=["2020-10-01"],
        ),
    ] = None,
    last: Annotated[
        date | None,
        Query(
            alias="to",
            description="last local day, included; default: the month's last day of `from`, "
            "or today",
            examples=["2020-10-31"],
        ),
    ] = None,
    level: Annotated[
        Level | None,
        Query(description="one item per worker or per area; default: a level finer than code"),
    ] = None,
    code: Annotated[
        str | None,
        Query(
            description="the area: a district (6 digits), street (9), community (12) or grid "
            "(15); default: the caller's area (a supervisor's prefix, the city for an admin)",
            examples=["610302"],
        ),
    ] = None,
    format: Annotated[
        Literal["json", "csv"], Query(description="json, or csv (UTF-8 with a BOM)")
    ] = "json",
) -> Response:
    """A period's evaluation (综合评价): reported, dispatched, closed, on-time closure rate,
    overdue, escalations, rework rate, mean and p90 time per stage, shares by source and
    category, for the area and each worker, grid, community, street or district in it.

    The definitions (what is on time, which times each stage uses, the period's bounds in
    Asia/Shanghai) are in docs/EVALUATION.md. `format=csv` answers the same figures as a
    CSV file, the area's total first. Needs a supervisor's token (a `code` outside its area
    is 403 `outside_area`) or an admin's; a worker's is 403 `forbidden`. Errors:
    `invalid_period` (422: `to` before `from`, more than 366 days, years outside 1970 to
    8999), `invalid_code` (422: not 6, 9, 12 or 15 digits, or finer than `level`),
    `area_not_found` (404), `invalid_request` (422: a malformed date, level or format).
    """
    check_code(code, level or "worker")
    scoped = scoped_code(principal, code) or ""
    chosen: Level = level or default_level(scoped)
    check_code(scoped, chosen)
    today = datetime.now(UTC).astimezone(CITY_ZONE).date()
    period = period_of(first, last, today)
    memory = _memory(request, engine)
    if format == "csv":
        body = await run_in_threadpool(memory.answer, period, chosen, scoped, "csv", render_csv)
        name = f"evaluation-{scoped or 'city'}-{chosen}-{period.first}-{period.last}.csv"
        return Response(
            body,
            media_type="text/csv; charset=utf-8",
            headers={"Content-Disposition": f'attachment; filename="{name}"'},
        )
    body = await run_in_threadpool(memory.answer, period, chosen, scoped, "json", render_json)
    return Response(body, media_type="application/json")
