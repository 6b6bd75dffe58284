"""A worker's walk over HTTP: their check-ins as GeoJSON, and a search for workers by
name or id (how the map's walk panel finds whom to show).

A thin adapter over `geodata.db.track_read` (the queries) and `geodata.track` (the rules).
A track is personal data, scoped exactly like the worker's patrols
(`grid_service.compliance.authorize_worker_read`): the worker themself, an admin, or a
supervisor whose area holds a grid the worker had, who sees the fixes taken in grids of
its area only. The search finds, for a supervisor, the workers who have (had) a grid in
its area; for a worker, themself.
"""

import gzip
import hashlib
import threading
import time
import uuid
from collections import OrderedDict
from collections.abc import Hashable
from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, Any, Final, Literal

from fastapi import APIRouter, Header, Path, Query, Request, Response
from pydantic import BaseModel, ConfigDict, Field
from pydantic_core import to_json
from sqlalchemy import Engine
from starlette.concurrency import run_in_threadpool

from geodata.accounts import Principal, Role
from geodata.compliance import ComplianceConfig
from geodata.db.compliance_read import read_snapshot
from geodata.db.grid_cache import GridSnapshot
from geodata.db.track_read import (
    TrackPage,
    WorkerMatch,
    search_workers,
    track_page,
    track_stamp,
)
from geodata.track import (
    DEFAULT_LIMIT,
    MAX_LIMIT,
    TRACK_FLAGS,
    Cursor,
    PatrolSpan,
    check_interval,
    track_of,
)
from grid_service.auth import RequiredPrincipal
from grid_service.compliance import authorize_worker_read
from grid_service.deps import EngineDep, StoredText, SupportedTime
from grid_service.errors import ErrorBody
from grid_service.grids import current_grids
from grid_service.tiles import _etag_matches

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
    patrol: int | None = Field(
        description="the index in the page's `patrols` of the patrol the fix is part of; "
        "null for a fix the rule cannot use or no patrol holds"
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
    patrols: list[TrackPatrolPublic] = Field(
        description="the patrols this page's fixes are part of, in order of their first fix"
    )
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
async def get_worker_track(
    request: Request,
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
    if_none_match: Annotated[str | None, Header(include_in_schema=False)] = None,
    accept_encoding: Annotated[str | None, Header(include_in_schema=False)] = None,
) -> Response:
    """A worker's check-ins in [`from`, `to`) as GeoJSON points in time order, each with its
    time, accuracy, grid, flags and the patrol it is part of (an index into the page's
    `patrols`, each with its grid, start, end, counted and why).

    Flags: `low_accuracy`, `implausible_speed` (the intake's), `mocked` (the phone said the
    fix was mocked), `outside_assigned_grid`. A fix is part of the stored patrol of its grid
    whose span holds it, when the patrol rule could use it (in its assigned grid, accurate
    enough). At most `limit` fixes a page; `next` is the following page's URL, or null.
    Scoped like the worker's patrols: the worker's own token, an admin's, or a supervisor's
    whose area holds a grid of the worker, which sees the fixes in its area's grids only;
    else 403 `worker_mismatch` or `outside_area`. Errors: `worker_not_found` (404, to an
    admin); `invalid_interval` (422: `to` not after `from`, or more than 31 days apart);
    `invalid_cursor` (422); `invalid_request` (422: a time naive or outside 1970 to 9000).

    Each page carries an `ETag`; with `If-None-Match` naming it, an unchanged page is
    `304 Not Modified` without a body (for a client that keeps the pages it has read).
    A page is kept by the server and checked against its data at most once a second: a
    fix stored meanwhile shows within a second.
    Sent gzipped to a caller whose `Accept-Encoding` takes gzip.
    """
    check_interval(start, end)
    cursor = Cursor.decode(after) if after is not None else None
    state = request.app.state
    engine: Engine = state.engine
    config: ComplianceConfig = state.compliance_config
    # Async, so that the checks above and the answer's assembly run on the event loop; the
    # database is asked in the pool, once for a kept page (its stamp), and the
    # authorization only when the roster in memory does not already allow it.
    if principal.role is not Role.SUPERVISOR:
        authorize_worker_read(engine, principal, worker_id)  # reads nothing for these roles
    elif not _allowed_by_roster(await current_grids(request), principal, worker_id):
        await run_in_threadpool(authorize_worker_read, engine, principal, worker_id)
    # A page whose stamp was read within the last second is served as kept, on the event
    # loop: a supervisor replaying a walk asks for the same week again and again.
    max_age_s = getattr(state, "track_stamp_max_age_s", STAMP_MAX_AGE_S)
    key = _answer_key(request, worker_id, _area_of(principal))
    answer = _answers(request).fresh(key, max_age_s)
    if answer is None:
        answer = await run_in_threadpool(
            _answer, request, engine, config, worker_id, _area_of(principal), start, end, limit,
            cursor,
        )  # fmt: skip
    # The page gzipped to a caller that takes it (a browser always does): a week's 140 KB
    # of GeoJSON is 29 KB, compressed once when the page is kept.
    gzipped = "gzip" in (accept_encoding or "")
    etag = answer.gzip_etag if gzipped else answer.etag
    headers = {"ETag": etag, "Vary": "Accept-Encoding"}
    if _etag_matches(if_none_match, etag):
        return Response(status_code=304, headers=headers)
    if gzipped:
        headers["Content-Encoding"] = "gzip"
        return Response(answer.gzipped, media_type="application/geo+json", headers=headers)
    return Response(answer.body, media_type="application/geo+json", headers=headers)


def _allowed_by_roster(snapshot: GridSnapshot, principal: Principal, worker_id: str) -> bool:
    """Whether the grid snapshot's roster, without I/O, shows a supervisor may read the worker.

    Only a yes is taken from memory: an assignment is never deleted (a move ends its
    period), so a grid the roster holds for the worker is one the database holds too,
    however old the snapshot. A no is asked of the database, which may know of an
    assignment newer than the snapshot.
    """
    grid_codes = (period.grid_code for period in snapshot.roster.periods_of(worker_id))
    return principal.can_read_worker(worker_id, grid_codes)


@dataclass(frozen=True, slots=True)
class _Answer:
    """A page as sent: its bytes and their ETag, and the same gzipped with its own."""

    body: bytes
    etag: str
    gzipped: bytes
    gzip_etag: str

    @classmethod
    def of(cls, body: bytes) -> "_Answer":
        """The page's bytes, gzipped once, each with a strong validator (a digest)."""
        digest = hashlib.blake2b(body, digest_size=16).hexdigest()
        gzipped = gzip.compress(body, compresslevel=6, mtime=0)
        return cls(body, f'"{digest}"', gzipped, f'"{digest}-gzip"')

    @property
    def size(self) -> int:
        """The bytes it holds."""
        return len(self.body) + len(self.gzipped)


def _answer(
    request: Request,
    engine: Engine,
    config: ComplianceConfig,
    worker_id: str,
    area: str | None,
    start: datetime,
    end: datetime,
    limit: int,
    cursor: Cursor | None,
) -> _Answer:
    """The page kept for this query and area if its stamp is unchanged, else read and kept."""
    answers = _answers(request)
    key = _answer_key(request, worker_id, area)
    # A kept page is checked by its stamp alone; a new one is read with its stamp in one
    # snapshot, so that what is kept is exactly what the stamp describes.
    kept = answers.get(key, track_stamp(engine, worker_id, start, end))
    if kept is not None:
        return kept
    with read_snapshot(engine) as connection:
        stamp = track_stamp(connection, worker_id, start, end)
        page = track_page(
            connection,
            worker_id,
            start,
            end,
            limit=limit,
            after=cursor,
            area_prefix=area,
            timezone=config.timezone,
        )
    body = to_json(_collection(page, request, start, end, limit, config))
    answer = _Answer.of(body)
    answers.put(key, stamp, answer)
    return answer


class _Answers:
    """The track pages answered lately, each under the stamp of the data it was made from.

    A supervisor's map asks for one worker's week again and again while replaying it, and
    a page of 500 fixes costs milliseconds of Python to shape; a page is served again only
    while its stamp (`track_stamp`, read in the same snapshot) is unchanged.
    """

    def __init__(self, max_entries: int = 256, max_bytes: int = 64 * 1024 * 1024) -> None:
        self.max_entries, self.max_bytes = max_entries, max_bytes
        # key -> (stamp, page, monotonic time its stamp was last read)
        self._held: OrderedDict[Hashable, tuple[object, _Answer, float]] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()

    def get(self, key: Hashable, stamp: object) -> _Answer | None:
        """The page kept under `key` if it was made at `stamp` (which was just read)."""
        with self._lock:
            held = self._held.get(key)
            if held is None or held[0] != stamp:
                return None
            self._held[key] = (stamp, held[1], time.monotonic())
            self._held.move_to_end(key)
            return held[1]

    def fresh(self, key: Hashable, max_age_s: float) -> _Answer | None:
        """The page kept under `key` if its stamp was read less than `max_age_s` ago."""
        with self._lock:
            held = self._held.get(key)
            if held is None or time.monotonic() - held[2] >= max_age_s:
                return None
            self._held.move_to_end(key)
            return held[1]

    def put(self, key: Hashable, stamp: object, answer: _Answer) -> None:
        """Keep a page, dropping the least recently used beyond the limits."""
        with self._lock:
            previous = self._held.pop(key, None)
            if previous is not None:
                self._bytes -= previous[1].size
            self._held[key] = (stamp, answer, time.monotonic())
            self._bytes += answer.size
            while len(self._held) > self.max_entries or self._bytes > self.max_bytes:
                _, (_, dropped, _) = self._held.popitem(last=False)
                self._bytes -= dropped.size


STAMP_MAX_AGE_S: Final = 1.0
"""How long a kept page is served without reading its stamp again: a fix stored meanwhile
shows at most this much later (the live map's own stream is about as late). An app may set
`app.state.track_stamp_max_age_s` (0: read the stamp for every request)."""

_ANSWERS_LOCK: Final = threading.Lock()


def _answers(request: Request) -> _Answers:
    """This app's kept track pages (one per app, made on first use)."""
    state = request.app.state
    with _ANSWERS_LOCK:
        answers: _Answers | None = getattr(state, "track_answers", None)
        if answers is None:
            answers = state.track_answers = _Answers()
    return answers


def _answer_key(request: Request, worker_id: str, area: str | None) -> Hashable:
    """The key a page is kept under: the worker, the caller's area and the query."""
    return (worker_id, area, request.url.query)


def _area_of(principal: Principal) -> str | None:
    return principal.area_prefix if principal.role is Role.SUPERVISOR else None


def _collection(
    page: TrackPage,
    request: Request,
    start: datetime,
    end: datetime,
    limit: int,
    config: ComplianceConfig,
) -> dict[str, Any]:
    """TrackPublic's content as plain data, times as the database gave them (local), for
    pydantic-core's serializer: through the models, a week's 500 fixes cost several times
    the query (docs/BENCHMARKS.md, the track)."""
    track = track_of(page.fixes, page.patrols, config.max_accuracy_m)
    next_url = None
    if page.more:
        last = page.fixes[-1]
        url = request.url.include_query_params(
            after=Cursor(last.recorded_at, uuid.UUID(last.event_id)).encode()
        )
        next_url = f"{url.path}?{url.query}"
    tz = config.tz
    # By identity: track_of hands out one PatrolSpan per patrol, and hashing its fields
    # for each of 500 fixes was a tenth of this function.
    patrols: dict[int, tuple[int, PatrolSpan]] = {}
    features = []
    for item in track:
        fix, patrol = item.fix, item.patrol
        index = None
        if patrol is not None:
            index = patrols.setdefault(id(patrol), (len(patrols), patrol))[0]
        features.append(
            {
                "type": "Feature",
                "id": fix.event_id,
                "geometry": {"type": "Point", "coordinates": (fix.lon, fix.lat)},
                "properties": {
                    "recorded_at": fix.recorded_at,
                    "accuracy_m": fix.accuracy_m,
                    "grid_code": fix.grid_code,
                    "flags": item.flags,
                    "patrol": index,
                },
            }
        )
    return {
        "type": "FeatureCollection",
        "worker_id": page.worker_id,
        "name": page.name,
        "from": start.astimezone(tz),
        "to": end.astimezone(tz),
        "limit": limit,
        "number_returned": len(features),
        "next": next_url,
        "patrols": [
            {
                "grid_code": p.grid_code,
                "started_at": p.started_at,
                "ended_at": p.ended_at,
                "counted": p.counted,
                "reason": p.reason,
            }
            for _, p in patrols.values()
        ],
        "features": features,
    }
