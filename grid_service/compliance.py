"""Patrol compliance over HTTP: weekly statuses at any level, and a worker's patrols.

A thin adapter over `geodata.db.compliance_read` (the queries),
`geodata.db.compliance_memory` (the open weeks held in memory) and
`geodata.compliance.report` (the reports): it parses the query, picks the engine, the
memory and the compliance configuration from `app.state`, and shapes the answer as JSON.

Both need a token (grid_service.auth). Compliance is for supervisors, under their area
code prefix, and admins; workers read their own patrols instead. Patrols are personal
data: the worker themself, a supervisor of an area the worker has (had) a grid in, who
sees the worker's grids in that area only, or an admin.
"""

import json
from dataclasses import replace
from datetime import UTC, date, datetime, tzinfo
from typing import Annotated, Any, Final, Self

from fastapi import APIRouter, Depends, Path, Query, Request, Response
from pydantic import BaseModel, ConfigDict, Field, TypeAdapter
from sqlalchemy import Engine
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool

from geodata.accounts import OutsideArea, Principal, Role
from geodata.compliance import ComplianceConfig, IsoWeek
from geodata.compliance.report import (
    AreaLevel,
    ComplianceReport,
    Level,
    PatrolRecord,
    WorkerPatrols,
    check_code,
    parse_week,
)
from geodata.db import accounts_store
from geodata.db.compliance_memory import ComplianceMemory
from geodata.db.compliance_read import compliance_report, worker_patrols
from geodata.events import ComplianceStatus
from grid_service.auth import RequiredPrincipal, ensure_worker, require_roles, scoped_code
from grid_service.deps import EngineDep, SupportedTime
from grid_service.errors import ErrorBody

router = APIRouter(prefix="/api/v1", tags=["compliance"])


def get_compliance_config(request: Request) -> ComplianceConfig:
    """Dependency: the patrol rule `create_app` put in `app.state` (from ApiConfig)."""
    config: ComplianceConfig = request.app.state.compliance_config
    return config


ComplianceConfigDep = Annotated[ComplianceConfig, Depends(get_compliance_config)]
AreaReader = Annotated[Principal, Depends(require_roles(Role.SUPERVISOR, Role.ADMIN))]

WeekQuery = Annotated[
    str | None,
    Query(
        description="ISO week such as 2020-W37, local time; default: the week of `as_of` (now).",
        examples=["2020-W37"],
    ),
]

LevelQuery = Annotated[Level, Query(description="one item per worker in a grid, or per area")]

_ERRORS: Final[dict[int | str, dict[str, Any]]] = {
    401: {"model": ErrorBody, "description": "missing_token or invalid_token"},
    403: {"model": ErrorBody, "description": "forbidden, outside_area or worker_mismatch"},
    404: {"model": ErrorBody, "description": "grid_not_found or worker_not_found"},
    422: {"model": ErrorBody, "description": "invalid_week, invalid_code or invalid_request"},
}


class _Public(BaseModel):
    model_config = ConfigDict(from_attributes=True)


class StatusCountsPublic(_Public):
    """How many (worker, grid) pairs have each status."""

    met: int
    on_track: int
    at_risk: int
    missed: int


class WorkerCompliancePublic(_Public):
    """One worker in one grid for the week, as of `as_of`."""

    worker_id: str
    name: str
    grid_code: str
    required: int = Field(description="counted patrols owed: 3, or fewer for part of a week")
    counted: int = Field(description="counted patrols as of `as_of` (at most 1 a day)")
    status: ComplianceStatus
    counted_days: list[date] = Field(description="local days with a counted patrol")


class GridCompliancePublic(_Public):
    """One grid: its workers' statuses, how many met, and its counted patrols."""

    grid_code: str
    name: str | None
    workers_met: int
    workers_total: int
    patrols: int = Field(description="counted patrols of all the grid's workers")
    statuses: StatusCountsPublic
    workers: list[WorkerCompliancePublic]


class AreaCompliancePublic(_Public):
    """A community, street or district aggregated over its grids."""

    level: AreaLevel
    code: str
    name: str | None
    grids: int = Field(description="grids with at least one worker assigned in the week")
    workers_met: int
    workers_total: int = Field(description="(worker, grid) pairs: a worker counts per grid")
    patrols: int = Field(description="counted patrols of all the area's workers")
    statuses: StatusCountsPublic
    at_risk_or_missed: list[WorkerCompliancePublic]


ItemsPublic = list[WorkerCompliancePublic] | list[GridCompliancePublic] | list[AreaCompliancePublic]


class CompliancePublic(BaseModel):
    """A week's compliance as of a time, at one level, under a code prefix."""

    week: str
    as_of: datetime
    level: Level
    code: str | None = Field(description="the code prefix the grids were filtered by")
    items: ItemsPublic

    @classmethod
    def of(cls, report: ComplianceReport, tz: tzinfo) -> Self:
        """The JSON shape of a report, `as_of` in local time."""
        items: (
            list[WorkerCompliancePublic] | list[GridCompliancePublic] | list[AreaCompliancePublic]
        )
        if report.level == "worker":
            items = [WorkerCompliancePublic.model_validate(item) for item in report.items]
        elif report.level == "grid":
            items = [GridCompliancePublic.model_validate(item) for item in report.items]
        else:
            items = [AreaCompliancePublic.model_validate(item) for item in report.items]
        return cls(
            week=str(report.week),
            as_of=report.as_of.astimezone(tz),
            level=report.level,
            code=report.code or None,
            items=items,
        )


class PatrolPublic(_Public):
    """One patrol as the compliance engine stored it."""

    local_day: date
    started_at: datetime
    ended_at: datetime
    checkin_count: int
    valid: bool
    valid_at: datetime | None = Field(description="when it first met both thresholds")
    counted: bool
    reason: str = Field(
        description="counted, invalid:too_few_checkins, invalid:too_short,"
        " invalid:mocked_location (a fix the phone said was mocked), invalid:implausible_speed"
        " (a fix reached faster than anyone walks or drives) or already_counted_today"
    )


class GridPatrolsPublic(_Public):
    """A worker's patrols in one grid."""

    grid_code: str
    patrols: list[PatrolPublic]


class WorkerPatrolsPublic(BaseModel):
    """A worker's patrols of a week, grouped per grid."""

    worker_id: str
    name: str
    week: str
    grids: list[GridPatrolsPublic]

    @classmethod
    def of(cls, patrols: WorkerPatrols, tz: tzinfo) -> Self:
        """The JSON shape of a worker's week, times in local time."""
        return cls(
            worker_id=patrols.worker_id,
            name=patrols.name,
            week=str(patrols.week),
            grids=[
                GridPatrolsPublic(
                    grid_code=grid.grid_code,
                    patrols=[_local_patrol(patrol, tz) for patrol in grid.patrols],
                )
                for grid in patrols.grids
            ],
        )


def _local_patrol(patrol: PatrolRecord, tz: tzinfo) -> PatrolPublic:
    # The database answers in its session time zone; supervisors read local time.
    return PatrolPublic(
        local_day=patrol.local_day,
        started_at=patrol.started_at.astimezone(tz),
        ended_at=patrol.ended_at.astimezone(tz),
        checkin_count=patrol.checkin_count,
        valid=patrol.valid,
        valid_at=patrol.valid_at.astimezone(tz) if patrol.valid_at is not None else None,
        counted=patrol.counted,
        reason=patrol.reason,
    )


def _week_or_current(week: str | None, at: datetime, config: ComplianceConfig) -> IsoWeek:
    return parse_week(week) if week is not None else IsoWeek.week_of(at, config.tz)


@router.get("/compliance", response_model=CompliancePublic, responses=_ERRORS)
async def get_compliance(
    request: Request,
    engine: EngineDep,
    config: ComplianceConfigDep,
    principal: AreaReader,
    week: WeekQuery = None,
    as_of: Annotated[
        SupportedTime | None,
        Query(
            description="RFC 3339 time with an offset (naive is refused), from 1970 to "
            "before 9000; default: now."
        ),
    ] = None,
    level: LevelQuery = "worker",
    code: Annotated[
        str | None,
        Query(
            description="code prefix of the grids: a district (6 digits), street (9), "
            "community (12) or grid (15); not finer than `level`; default: the caller's "
            "area (a supervisor's prefix; the whole city for an admin).",
            examples=["610302001"],
        ),
    ] = None,
) -> Response | CompliancePublic:
    """Patrol compliance of a week as it stood at `as_of`: met, on_track, at_risk or missed.

    Items are (worker, grid) pairs at level `worker`; grids with their workers at `grid`;
    communities, streets or districts with workers met / total, counts by status and the
    workers at_risk or missed. Only pairs with an assignment overlapping the week appear.
    The same `week`, `as_of` and `code` always give the same answer for the same patrols.
    Without `as_of`, this week and last week (until its late check-ins are in) are
    answered as of now from the API's memory, which follows the stored patrols within
    about a second; with `as_of`, from the stored patrols.
    Needs a supervisor's token (a `code` outside its area is 403 `outside_area`) or an
    admin's; a worker's is 403 `forbidden`.
    Errors: `invalid_week` (422, also for a week outside the years 1970 to 9000),
    `invalid_code` (422); `grid_not_found` (404) for an unknown 15-digit grid code;
    `invalid_request` (422) for a bad `level`, or an `as_of` naive or outside 1970 to 9000.
    """
    memory: ComplianceMemory = request.app.state.compliance_memory
    memory.ensure_started()
    at = as_of if as_of is not None else memory.now()
    # A malformed code is 422 for everyone; only a well-formed one is checked for scope.
    check_code(code, level)
    chosen = _week_or_current(week, at, config)
    scoped = scoped_code(principal, code)
    if as_of is None:
        # A kept answer is served here on the event loop; rendering one, in a thread.
        kept = memory.cached(chosen, level, scoped or "", at)
        if kept is None:
            kept = await run_in_threadpool(
                memory.answer, chosen, level, scoped or "", at, render_items
            )
        if kept is not None:
            return Response(_envelope(chosen, at, level, scoped, kept, config.tz), media_type=JSON)
    report = await run_in_threadpool(
        compliance_report, engine, chosen, at, level=level, code=scoped, config=config
    )
    return CompliancePublic.of(report, config.tz)


JSON: Final = "application/json"

_ITEMS: Final[dict[Level, TypeAdapter[Any]]] = {
    "worker": TypeAdapter(list[WorkerCompliancePublic]),
    "grid": TypeAdapter(list[GridCompliancePublic]),
    "community": TypeAdapter(list[AreaCompliancePublic]),
    "street": TypeAdapter(list[AreaCompliancePublic]),
    "district": TypeAdapter(list[AreaCompliancePublic]),
}


_TIME: Final = TypeAdapter(datetime)


def render_items(report: ComplianceReport) -> bytes:
    """The JSON of a report's items: the public models `CompliancePublic.of` uses, made
    from the report's dataclasses in one call rather than one model at a time."""
    adapter = _ITEMS[report.level]
    return adapter.dump_json(adapter.validate_python(report.items, from_attributes=True))


def _envelope(
    week: IsoWeek, at: datetime, level: Level, code: str | None, items: bytes, tz: tzinfo
) -> bytes:
    """The JSON of `CompliancePublic` around items rendered before, `as_of` this request's.

    Written out rather than validated through the model (a tenth of the cost, per request):
    week and level are the parsed values, the code is digits, the time pydantic's own JSON.
    """
    return b"".join(
        (
            b'{"week":"%s","as_of":%s,"level":"%s","code":%s,"items":'
            % (
                str(week).encode(),
                _TIME.dump_json(at.astimezone(tz)),
                level.encode(),
                json.dumps(code or None).encode(),
            ),
            items,
            b"}",
        )
    )


@router.get("/workers/{worker_id}/patrols", response_model=WorkerPatrolsPublic, responses=_ERRORS)
def get_worker_patrols(
    engine: EngineDep,
    config: ComplianceConfigDep,
    principal: RequiredPrincipal,
    worker_id: Annotated[str, Path(examples=["W00001"])],
    week: WeekQuery = None,
) -> WorkerPatrolsPublic:
    """A worker's patrols of a week per grid: start, end, check-ins, valid, counted and why.

    Every grid the worker was assigned to during the week is listed, with no patrols if
    they walked none. `counted` and `reason` are the compliance engine's latest view.
    Personal data: the worker's own token, an admin's, or a supervisor's whose area holds
    a grid of the worker (it sees those grids only); else 403 `worker_mismatch` or
    `outside_area`. Errors: `worker_not_found` (404, to an admin), `invalid_week` (422).
    Default week: the current one.
    """
    authorize_worker_read(engine, principal, worker_id)
    chosen = _week_or_current(week, datetime.now(UTC), config)
    patrols = worker_patrols(engine, worker_id, chosen, config)
    if principal.role is Role.SUPERVISOR:
        # The worker may also have grids elsewhere: those belong to another supervisor.
        mine = tuple(g for g in patrols.grids if principal.can_read_area(g.grid_code))
        patrols = replace(patrols, grids=mine)
    return WorkerPatrolsPublic.of(patrols, config.tz)


def authorize_worker_read(engine: Engine, principal: Principal, worker_id: str) -> None:
    """Raise unless the caller may read the worker's personal data (patrols, track): the
    worker themself, an admin, or a supervisor whose area holds a grid the worker had."""
    if principal.role is Role.ADMIN:
        return
    if principal.role is Role.WORKER:
        ensure_worker(principal, worker_id)
        return
    # Checked before reading anything, and the same 403 whether or not the worker exists,
    # so that a supervisor cannot probe other areas' worker ids.
    with Session(engine) as session:
        grid_codes = accounts_store.worker_grid_codes(session, worker_id)
    if not principal.can_read_worker(worker_id, grid_codes):
        raise OutsideArea(f"worker {worker_id} has no grid in the area {principal.area_prefix}")
