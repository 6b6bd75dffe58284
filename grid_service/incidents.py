"""Incidents over HTTP: list them, read one with its history, move it through its lifecycle.

A thin adapter over `geodata.incidents` (the rules) and `geodata.db.incident_store`.
Every route needs a token: a supervisor sees its area, a worker the incidents it reported
or holds, an admin all. A PATCH names the version it was decided on, as `If-Match: "3"`
(the ETag of the last read) or as `version` in the body; a stale one is 412.
"""

from datetime import UTC, datetime
from typing import Annotated, Any, Final, Literal
from uuid import UUID

from fastapi import APIRouter, Depends, Header, Path, Query, Request
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from sqlalchemy import Engine
from starlette.concurrency import run_in_threadpool

from geodata.accounts import Principal, Role
from geodata.compliance.report import check_code
from geodata.dataset.layers import LOCAL_TZ
from geodata.db.incident_store import (
    HistoryEntry,
    IncidentDetail,
    IncidentFilter,
    IncidentPage,
    IncidentRecord,
    list_incidents,
    readable_incident,
    transition_incident,
)
from geodata.incidents import (
    MAX_NOTE_LENGTH,
    Action,
    EscalationLevel,
    InvalidTransitionRequest,
    Status,
    TransitionRequest,
    VersionRequired,
    check_category,
    listing_scope,
    parse_statuses,
    transition_request,
)
from geodata.query_limits import DEFAULT_PAGE, MAX_OFFSET, MAX_PAGE, parse_bbox
from grid_service.auth import RequiredPrincipal, require_roles
from grid_service.deps import EngineDep, StoredText, read_capped_body
from grid_service.errors import ErrorBody
from grid_service.grid_documents import GEOJSON_MEDIA_TYPE, GeoJSONResponse, Link

router = APIRouter(prefix="/api/v1/incidents", tags=["incidents"])

MAX_VERSION: Final = 2**31 - 1
MAX_UPDATE_BYTES: Final = 16 * 1024
"""Largest PATCH body: a 2,000-character note in any script, escaped, fits several times."""

# Both statements of a page (the count and the rows) read one snapshot.
_SNAPSHOT: Final = {"isolation_level": "REPEATABLE READ"}

_READ_ERRORS: Final[dict[int | str, dict[str, Any]]] = {
    401: {"model": ErrorBody, "description": "missing_token or invalid_token"},
    403: {"model": ErrorBody, "description": "forbidden, outside_area or worker_mismatch"},
    422: {
        "model": ErrorBody,
        "description": "invalid_bbox, bbox_too_large, invalid_code, invalid_filter, "
        "invalid_request",
    },
}
_ONE_ERRORS: Final[dict[int | str, dict[str, Any]]] = {
    **_READ_ERRORS,
    404: {"model": ErrorBody, "description": "incident_not_found"},
}
_PATCH_ERRORS: Final[dict[int | str, dict[str, Any]]] = {
    **_ONE_ERRORS,
    409: {"model": ErrorBody, "description": "illegal_transition from the current status"},
    412: {"model": ErrorBody, "description": "stale_version: read the incident again"},
    413: {"model": ErrorBody, "description": "payload_too_large: more than 16 KiB"},
    415: {
        "model": ErrorBody,
        "description": "unsupported_media_type: not application/json, or not UTF-8",
    },
    422: {
        "model": ErrorBody,
        "description": "unknown_action, note_required, invalid_assignee, invalid_transition, "
        "invalid_request (also for a body that is not a JSON object)",
    },
    428: {"model": ErrorBody, "description": "version_required: send If-Match or `version`"},
    429: {"model": ErrorBody, "description": "rate_limited: retry after Retry-After seconds"},
}


# --------------------------------------------------------------------------- documents


class PointGeometry(BaseModel):
    """Where the incident is: a GeoJSON Point in EPSG:4326 (after any CRS conversion)."""

    type: Literal["Point"]
    coordinates: Annotated[list[float], Field(min_length=2, max_length=2)]


class IncidentProperties(BaseModel):
    """An incident: what was reported, where it stands, who holds it."""

    incident_id: UUID
    category: str
    description: str | None
    source: str
    reporter_id: str | None = Field(description="the reporting worker; null for other sources")
    reported_at: datetime = Field(description="local time")
    received_at: datetime
    updated_at: datetime = Field(description="the last transition, or the filing")
    status: Status
    version: int = Field(description="bumped by every transition; the ETag")
    assignee: str | None = Field(description="the worker who holds the incident")
    grid_code: str | None
    community_code: str | None
    escalated_to: str | None = Field(
        description="a community (no worker in the grid, or an overdue case handed back), "
        "street or district code"
    )
    flags: list[str]
    due_at: datetime | None = Field(
        description="local time the current stage falls due (docs/DEADLINES.md); null: never"
    )
    overdue: bool = Field(description="past a due moment and not moved on by a person since")
    probable_duplicate_of: UUID | None = Field(
        default=None,
        description="the open case the report was linked to as a probable duplicate, until a "
        "supervisor confirms (confirm_duplicate) or splits (split)",
    )
    duplicate_of: UUID | None = Field(
        default=None, description="the original a supervisor confirmed this report repeats"
    )


class HistoryEntryPublic(BaseModel):
    """One transition: who made it, when, from which status to which, and why."""

    version: int
    action: Action | Literal["overdue"] = Field(
        description="a transition, or `overdue`: the deadlines' mark where no level is higher"
    )
    from_status: Status
    to_status: Status
    assignee: str | None
    escalated_to: str | None
    note: str | None
    actor: str = Field(description="the account's name")
    actor_role: Role | Literal["system"] = Field(description="`system`: the deadlines")
    at: datetime


class IncidentDetailProperties(IncidentProperties):
    """An incident with its history, oldest transition first."""

    history: list[HistoryEntryPublic]
    duplicates: list[UUID] = Field(
        default_factory=list,
        description="the reports confirmed duplicates of this one; their reporters follow it",
    )


class IncidentFeature(BaseModel):
    """An incident as a GeoJSON Feature; `id` is its incident_id."""

    type: Literal["Feature"]
    id: UUID
    geometry: PointGeometry
    properties: IncidentProperties


class IncidentDetailFeature(IncidentFeature):
    """An incident with its history as a GeoJSON Feature."""

    properties: IncidentDetailProperties


class IncidentFeatureCollection(BaseModel):
    """A page of incidents, newest report first."""

    model_config = ConfigDict(populate_by_name=True)

    type: Literal["FeatureCollection"]
    features: list[IncidentFeature]
    number_matched: int = Field(alias="numberMatched", description="matches on all pages")
    number_returned: int = Field(alias="numberReturned")
    links: list[Link]


class IncidentUpdate(BaseModel):
    """A transition: the action, and what it needs (see the route's description)."""

    model_config = ConfigDict(extra="forbid")

    action: StoredText = Field(
        description="what to do", json_schema_extra={"enum": [a.value for a in Action]}
    )
    note: StoredText | None = Field(
        default=None,
        max_length=MAX_NOTE_LENGTH,
        description="required by resolve, reopen, escalate and cancel",
    )
    assignee: StoredText | None = Field(
        default=None, max_length=16, description="dispatch only: the worker id, e.g. W00042"
    )
    level: EscalationLevel | None = Field(
        default=None, description="escalate only: default the next level up"
    )
    version: int | None = Field(
        default=None,
        ge=1,
        le=MAX_VERSION,
        description="the version the transition was decided on, unless If-Match says it",
    )


def _local(moment: datetime) -> str:
    return moment.astimezone(LOCAL_TZ).isoformat()


def _properties(record: IncidentRecord) -> dict[str, Any]:
    state = record.state
    return {
        "incident_id": str(record.incident_id),
        "category": record.category,
        "description": record.description,
        "source": state.source,
        # Only a worker id: another source's reporter id may be a resident's phone number.
        "reporter_id": state.reporter_id if state.source == "worker" else None,
        "reported_at": _local(record.reported_at),
        "received_at": _local(record.received_at),
        "updated_at": _local(record.updated_at),
        "status": state.status.value,
        "version": state.version,
        "assignee": state.assignee,
        "grid_code": state.grid_code,
        "community_code": state.community_code,
        "escalated_to": state.escalated_to,
        "flags": list(record.flags),
        "due_at": _local(record.due_at) if record.due_at is not None else None,
        "overdue": record.overdue,
        "probable_duplicate_of": _text(state.probable_duplicate_of),
        "duplicate_of": _text(record.duplicate_of),
    }


def _text(value: UUID | None) -> str | None:
    return None if value is None else str(value)


def _history(entry: HistoryEntry) -> dict[str, Any]:
    return {
        "version": entry.version,
        "action": entry.action,
        "from_status": entry.from_status,
        "to_status": entry.to_status,
        "assignee": entry.assignee,
        "escalated_to": entry.escalated_to,
        "note": entry.note,
        "actor": entry.actor,
        "actor_role": entry.actor_role,
        "at": _local(entry.at),
    }


def _feature(record: IncidentRecord, properties: dict[str, Any]) -> dict[str, Any]:
    return {
        "type": "Feature",
        "id": str(record.incident_id),
        "geometry": record.geometry,
        "properties": properties,
    }


def _detail_response(detail: IncidentDetail) -> GeoJSONResponse:
    properties = _properties(detail.record)
    properties["history"] = [_history(entry) for entry in detail.history]
    properties["duplicates"] = [str(incident_id) for incident_id in detail.duplicates]
    return GeoJSONResponse(
        _feature(detail.record, properties), headers={"ETag": etag(detail.record.state.version)}
    )


def _page_links(request: Request, page: IncidentPage, limit: int, offset: int) -> list[Any]:
    def link(rel: str, at: int) -> dict[str, str]:
        href = request.url if rel == "self" else request.url.include_query_params(offset=at)
        return {"href": str(href), "rel": rel, "type": GEOJSON_MEDIA_TYPE}

    links = [link("self", offset)]
    if offset + len(page.incidents) < page.number_matched:
        links.append(link("next", offset + limit))
    if offset > 0:
        links.append(link("prev", max(0, offset - limit)))
    return links


# --------------------------------------------------------------------------- versions


def etag(version: int) -> str:
    """The ETag of an incident at `version`."""
    return f'"{version}"'


def expected_version(if_match: str | None, body_version: int | None) -> int:
    """The version a PATCH names: If-Match, the body's `version`, or both agreeing."""
    header_version: int | None = None
    if if_match is not None:
        tag = if_match.strip().removeprefix("W/").strip('"')
        if not tag.isdigit() or not 1 <= int(tag) <= MAX_VERSION:
            raise InvalidTransitionRequest(
                f'If-Match must be one ETag of this API, such as "3", got {if_match[:40]!r}'
            )
        header_version = int(tag)
    if header_version is not None and body_version is not None and header_version != body_version:
        raise InvalidTransitionRequest(
            f"If-Match names version {header_version}, the body {body_version}"
        )
    version = header_version if header_version is not None else body_version
    if version is None:
        raise VersionRequired("a transition needs the version it was decided on (If-Match)")
    return version


# --------------------------------------------------------------------------- routes

IncidentId = Annotated[UUID, Path(description="the incident_id")]
Writer = Annotated[
    Principal, Depends(require_roles(Role.WORKER, Role.SUPERVISOR, Role.ADMIN, limit_rate=True))
]


@router.get(
    "",
    response_model=IncidentFeatureCollection,
    response_class=GeoJSONResponse,
    responses=_READ_ERRORS,
)
def list_incidents_route(
    request: Request,
    engine: EngineDep,
    principal: RequiredPrincipal,
    bbox: Annotated[
        str | None, Query(description="minlon,minlat,maxlon,maxlat (EPSG:4326)")
    ] = None,
    status: Annotated[
        str | None, Query(description="one status or several, comma-separated")
    ] = None,
    code: Annotated[
        str | None, Query(description="area code prefix: district, street, community or grid")
    ] = None,
    category: Annotated[
        str | None, Query(description="a category code, or a class such as `environment`")
    ] = None,
    overdue: Annotated[
        bool | None, Query(description="true: only overdue cases; false: only the others")
    ] = None,
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE, description="page size")] = DEFAULT_PAGE,
    offset: Annotated[int, Query(ge=0, le=MAX_OFFSET, description="incidents to skip")] = 0,
) -> GeoJSONResponse:
    """Incidents as a GeoJSON FeatureCollection, newest report first, paged.

    A supervisor sees those in its area (`code` defaults to it, and may only narrow it); a
    worker those it reported or holds; an admin all. An incident's area is its grid, or
    its community when it has no grid. Errors: 422 `invalid_bbox`, `bbox_too_large`,
    `invalid_code`, `invalid_filter`; 403 `outside_area` for a code beyond the caller's.
    """
    query = IncidentFilter(
        scope=listing_scope(principal, check_code(code, "grid") or None),
        bbox=parse_bbox(bbox) if bbox is not None else None,
        statuses=parse_statuses(status),
        category=check_category(category),
        overdue=overdue,
    )
    with engine.connect().execution_options(**_SNAPSHOT) as conn:
        page = list_incidents(conn, query, limit=limit, offset=offset)
    return GeoJSONResponse(
        {
            "type": "FeatureCollection",
            "features": [_feature(r, _properties(r)) for r in page.incidents],
            "numberMatched": page.number_matched,
            "numberReturned": len(page.incidents),
            "links": _page_links(request, page, limit, offset),
        }
    )


@router.get(
    "/{incident_id}",
    response_model=IncidentDetailFeature,
    response_class=GeoJSONResponse,
    responses=_ONE_ERRORS,
)
def read_incident(
    engine: EngineDep, principal: RequiredPrincipal, incident_id: IncidentId
) -> GeoJSONResponse:
    """One incident as a GeoJSON Feature with its history; its version is the ETag.

    Errors: 404 `incident_not_found`; 403 `outside_area` (a supervisor) or
    `worker_mismatch` (a worker who neither reported nor holds it).
    """
    with engine.connect() as conn:
        detail = readable_incident(conn, incident_id, principal)
    return _detail_response(detail)


def _self_contained(schema: dict[str, Any]) -> dict[str, Any]:
    """A model's JSON Schema with its `$defs` written in place, to embed in OpenAPI."""
    definitions = schema.pop("$defs", {})

    def inline(node: Any) -> Any:
        if isinstance(node, list):
            return [inline(item) for item in node]
        if not isinstance(node, dict):
            return node
        reference = node.get("$ref", "")
        if reference.startswith("#/$defs/"):
            rest = {key: value for key, value in node.items() if key != "$ref"}
            return inline(definitions[reference.removeprefix("#/$defs/")]) | inline(rest)
        return {key: inline(value) for key, value in node.items()}

    resolved: dict[str, Any] = inline(schema)
    return resolved


# The body is read by the route itself, capped (FastAPI would read it whole first).
_UPDATE_BODY: Final[dict[str, Any]] = {
    "requestBody": {
        "required": True,
        "content": {
            "application/json": {"schema": _self_contained(IncidentUpdate.model_json_schema())}
        },
    }
}


def _parse_update(body: bytes) -> IncidentUpdate:
    try:
        return IncidentUpdate.model_validate_json(body)
    except ValidationError as exc:
        # The same 422 `invalid_request` as FastAPI's own body validation.
        errors = [{**error, "loc": ("body", *error["loc"])} for error in exc.errors()]
        raise RequestValidationError(errors) from None


@router.patch(
    "/{incident_id}",
    response_model=IncidentDetailFeature,
    response_class=GeoJSONResponse,
    responses=_PATCH_ERRORS,
    openapi_extra=_UPDATE_BODY,
)
async def move_incident(
    request: Request,
    engine: EngineDep,
    principal: Writer,
    incident_id: IncidentId,
    if_match: Annotated[
        str | None, Header(description='the ETag read, e.g. "3"; or `version` in the body')
    ] = None,
) -> GeoJSONResponse:
    """Move an incident one step; answers the incident as it now stands, with a new ETag.

    | action | from | to | by | needs |
    |---|---|---|---|---|
    | dispatch | reported, dispatched, in_progress, escalated | dispatched | supervisor | `assignee`: a worker with a grid in the incident's community (after a whistle: under its street or district) |
    | start | dispatched | in_progress | the assignee | |
    | resolve | in_progress | resolved | the assignee | `note` |
    | close | resolved | closed | supervisor | |
    | reopen | resolved | in_progress | supervisor | `note` |
    | escalate | reported, dispatched, in_progress, escalated | escalated | supervisor | `note`; `level` street or district |
    | cancel | any but closed, cancelled | cancelled | supervisor | `note` |
    | confirm_duplicate | reported, dispatched, in_progress, escalated; a `probable_duplicate_of` | cancelled (a duplicate: `duplicate_of`, its reporter follows the original) | supervisor | |
    | split | the same | unchanged (the link goes) | supervisor | |

    A supervisor acts within its area; after a whistle, only supervisors covering the
    street or district it went to. An admin may make any of them. The body is JSON
    (application/json, UTF-8), at most 16 KiB. Errors, in the order checked: 415
    `unsupported_media_type`, 413 `payload_too_large`, 422 (`invalid_request`,
    `unknown_action`, `note_required`, `invalid_transition`), 428 `version_required`,
    404 `incident_not_found`, 403 (`forbidden`, `outside_area`, `worker_mismatch`), 412
    `stale_version`, 409 `illegal_transition`, 422 `invalid_assignee`.
    """  # noqa: E501
    update = _parse_update(await read_capped_body(request, MAX_UPDATE_BYTES))
    transition = transition_request(
        update.action,
        note=update.note,
        assignee=update.assignee,
        level=None if update.level is None else update.level.value,
    )
    version = expected_version(if_match, update.version)
    detail = await run_in_threadpool(_move, engine, incident_id, principal, transition, version)
    return _detail_response(detail)


def _move(
    engine: Engine,
    incident_id: UUID,
    principal: Principal,
    transition: TransitionRequest,
    version: int,
) -> IncidentDetail:
    with engine.begin() as conn:
        return transition_incident(
            conn,
            incident_id,
            principal,
            transition,
            expected_version=version,
            now=datetime.now(UTC),
        )
