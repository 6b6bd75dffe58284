"""A worker's walk over HTTP: their check-ins as GeoJSON, and a search for workers by
name or id (how the map's walk panel finds whom to show).

A thin adapter over `geodata.db.track_read` (the queries) and `geodata.track` (the rules).
A track is personal data, scoped exactly like the worker's patrols
(`grid_service.compliance.authorize_worker_read`): the worker themself, an admin, or a
supervisor whose area holds a grid the worker had, who sees the fixes taken in grids of
its area only. The search finds, for a supervisor, the workers who have (had) a grid in
its area; for a worker, themself.
"""

import json
from datetime import datetime, tzinfo
from typing import Annotated, Any, Final, Literal

from fastapi import APIRouter, Path, Query, Request, Response
from pydantic import BaseModel, ConfigDict, Field

from geodata.accounts import Principal, Role
from geodata.db.track_read import TrackPage, WorkerMatch, search_workers, track_page
from geodata.track import (
    DEFAULT_LIMIT,
    MAX_LIMIT,
    TRACK_FLAGS,
    Cursor,
    TrackFix,
    check_interval,
    track_of,
)
from grid_service.auth import RequiredPrincipal
from grid_service.compliance import ComplianceConfigDep, authorize_worker_read
from grid_service.deps import EngineDep, StoredText, SupportedTime
from grid_service.errors import ErrorBody

router = APIRouter(prefix="/api/v1", tags=["tracks"])

_ERRORS: Final[dict[int | str, dict[str, Any]]] = {
    401: {"model": ErrorBody, "description": "missing_token or invalid_token"},
    403: {"model": ErrorBody, "description": "worker_mismatch or outside_area"},
    404: {"model": ErrorBody, "description": "worker_not_found (to an admin)"},
    422: {
        "model": ErrorBody,
        "description": "invalid_interval, invalid_cursor or invalid_request",
    },
}

_TRACK_RESPONSES: Final[dict[int | str, dict[str, Any]]] = {
    200: {"content": {"application/geo+json": {}}},
    **_ERRORS,
}

SEARCH_LIMIT: Final = 50
"""Most workers one search answers with."""


class TrackPatrolPublic(BaseModel):
    """The stored patrol a fix belongs to (as `GET .../patrols` lists it)."""

    grid_code: str
    started_at: datetime
    ended_at: datetime
    counted: bool
    reason: str = Field(
        description="counted, invalid:too_few_checkins, invalid:too_short or already_counted_today"
    )


class TrackFixProperties(BaseModel):
    """What is known of one fix."""

    recorded_at: datetime = Field(description="when the phone took the fix, local time")
    accuracy_m: float | None
    grid_code: str | None = Field(description="the grid the fix lies in; null outside all")
    flags: list[Literal[TRACK_FLAGS]] = Field(  # type: ignore[valid-type]
        description="low_accuracy (over 100 m), implausible_speed (from the previous fix), "
        "mocked (the phone said so), outside_assigned_grid"
    )
    patrol: TrackPatrolPublic | None = Field(
        description="the patrol the fix is part of; null for a fix the rule cannot use"
    )


class PointPublic(BaseModel):
    """A GeoJSON Point, WGS 84 longitude and latitude."""

    type: Literal["Point"]
    coordinates: list[float] = Field(min_length=2, max_length=2)


class TrackFeaturePublic(BaseModel):
    """One fix as a GeoJSON Feature; its id is the check-in's event id."""

    type: Literal["Feature"]
    id: str
    geometry: PointPublic
    properties: TrackFixProperties


class TrackPublic(BaseModel):
    """A page of a worker's fixes in time order, a GeoJSON FeatureCollection."""

    model_config = ConfigDict(populate_by_name=True)

    type: Literal["FeatureCollection"]
    worker_id: str
    name: str
    from_: datetime = Field(alias="from")
    to: datetime
    limit: int
    number_returned: int
    next: str | None = Field(description="the next page's URL (path and query); null at the end")
    features: list[TrackFeaturePublic]


class WorkerMatchPublic(BaseModel):
    """A worker a search found."""

    worker_id: str
    name: str
    grid_codes: list[str] = Field(description="grids they have (had), within the caller's area")


class WorkerSearchPublic(BaseModel):
    """The workers whose id starts with, or whose name holds, the text searched."""

    items: list[WorkerMatchPublic]


@router.get("/workers/search", response_model=WorkerSearchPublic, responses=_ERRORS)
def get_worker_search(
    engine: EngineDep,
    principal: RequiredPrincipal,
    q: Annotated[
        StoredText,
        Query(min_length=1, max_length=40, description="a worker id's start, or part of a name"),
    ],
    limit: Annotated[int, Query(ge=1, le=SEARCH_LIMIT)] = 20,
) -> WorkerSearchPublic:
    """Workers by id or name, in id order: for a supervisor, those who have (had) a grid in
    its area (with those grids only); for an admin, anyone; for a worker, themself."""
    found = search_workers(
        engine,
        q,
        limit=limit,
        area_prefix=_area_of(principal),
        only=principal.worker_id if principal.role is Role.WORKER else None,
    )
    return WorkerSearchPublic(items=[_match(m) for m in found])


def _match(match: WorkerMatch) -> WorkerMatchPublic:
    return WorkerMatchPublic(
        worker_id=match.worker_id, name=match.name, grid_codes=match.grid_codes
    )


@router.get(
    "/workers/{worker_id}/track",
    response_model=TrackPublic,
    responses=_TRACK_RESPONSES,
)
def get_worker_track(
    request: Request,
    engine: EngineDep,
    config: ComplianceConfigDep,
    principal: RequiredPrincipal,
    worker_id: Annotated[str, Path(examples=["W00001"])],
    start: Annotated[
        SupportedTime,
        Query(alias="from", description="start of the interval (included), RFC 3339 with offset"),
    ],
    end: Annotated[
        SupportedTime,
        Query(alias="to", description="end of the interval (excluded), RFC 3339 with offset"),
    ],
    limit: Annotated[
        int, Query(ge=1, le=MAX_LIMIT, description="fixes per page (a week is about 500)")
    ] = DEFAULT_LIMIT,
    after: Annotated[
        str | None, Query(max_length=96, description="the cursor of `next`; not made by hand")
    ] = None,
) -> Response:
    """A worker's check-ins in [`from`, `to`) as GeoJSON points in time order, each with its
    time, accuracy, grid, flags and the patrol it is part of.

    Flags: `low_accuracy`, `implausible_speed` (the intake's), `mocked` (the phone said the
    fix was mocked), `outside_assigned_grid`. A fix is part of the stored patrol of its grid
    whose span holds it, when the patrol rule could use it (in its assigned grid, accurate
    enough). At most `limit` fixes a page; `next` is the following page's URL, or null.
    Scoped like the worker's patrols: the worker's own token, an admin's, or a supervisor's
    whose area holds a grid of the worker, which sees the fixes in its area's grids only;
    else 403 `worker_mismatch` or `outside_area`. Errors: `worker_not_found` (404, to an
    admin); `invalid_interval` (422: `to` not after `from`, or more than 31 days apart);
    `invalid_cursor` (422); `invalid_request` (422: a time naive or outside 1970 to 9000).
    """
    check_interval(start, end)
    cursor = Cursor.decode(after) if after is not None else None
    authorize_worker_read(engine, principal, worker_id)
    page = track_page(
        engine, worker_id, start, end, limit=limit, after=cursor, area_prefix=_area_of(principal)
    )
    track = track_of(page.fixes, page.patrols, config.max_accuracy_m)
    next_url = None
    if page.more:
        last = page.fixes[-1]
        url = request.url.include_query_params(
            after=Cursor(last.recorded_at, last.event_id).encode()
        )
        next_url = f"{url.path}?{url.query}"
    body = _collection(page, track, start, end, limit, next_url, config.tz)
    return Response(json.dumps(body, ensure_ascii=False), media_type="application/geo+json")


def _area_of(principal: Principal) -> str | None:
    return principal.area_prefix if principal.role is Role.SUPERVISOR else None


def _collection(
    page: TrackPage,
    track: list[TrackFix],
    start: datetime,
    end: datetime,
    limit: int,
    next_url: str | None,
    tz: tzinfo,
) -> dict[str, Any]:
    """TrackPublic's JSON, written out: a week's 500 fixes through the models cost more
    than the query (docs/BENCHMARKS.md, the track)."""
    return {
        "type": "FeatureCollection",
        "worker_id": page.worker_id,
        "name": page.name,
        "from": start.astimezone(tz).isoformat(),
        "to": end.astimezone(tz).isoformat(),
        "limit": limit,
        "number_returned": len(track),
        "next": next_url,
        "features": [_feature(item, tz) for item in track],
    }


def _feature(item: TrackFix, tz: tzinfo) -> dict[str, Any]:
    fix, patrol = item.fix, item.patrol
    return {
        "type": "Feature",
        "id": str(fix.event_id),
        "geometry": {"type": "Point", "coordinates": [fix.lon, fix.lat]},
        "properties": {
            "recorded_at": fix.recorded_at.astimezone(tz).isoformat(),
            "accuracy_m": fix.accuracy_m,
            "grid_code": fix.grid_code,
            "flags": list(item.flags),
            "patrol": None
            if patrol is None
            else {
                "grid_code": patrol.grid_code,
                "started_at": patrol.started_at.astimezone(tz).isoformat(),
                "ended_at": patrol.ended_at.astimezone(tz).isoformat(),
                "counted": patrol.counted,
                "reason": patrol.reason,
            },
        },
    }
