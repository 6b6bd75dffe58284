"""The HTTP gateway onto the event topics: check-ins and incident reports.

Each posted event is checked with the very functions the consumers use (geodata.events),
so the gateway never accepts what a consumer would refuse, and it answers 202 only once
the broker has acknowledged every record (acks=all); while the broker is away, 503 with
Retry-After (grid_service.producer).

Both need a bearer token and spend one request of its write allowance (grid_service.auth).
Check-ins take a worker's token, and every check-in's worker_id must be that worker's;
incidents take any role's: a worker reports as itself (source worker), while residents,
the hotline, lockers and sensors come in through a supervisor's or an admin's token.
"""

import logging
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Annotated, Any, Final

import numpy as np
import psycopg
from fastapi import APIRouter, Depends, FastAPI, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field
from pydantic_core import from_json, to_json
from sqlalchemy import Engine
from sqlalchemy.exc import SQLAlchemyError
from starlette.concurrency import run_in_threadpool

from geodata.accounts import Role, SourceNotAllowed, WorkerMismatch
from geodata.contract import CHECKINS_TOPIC, INCIDENTS_TOPIC
from geodata.crs import to_wgs84
from geodata.dataset.layers import LOCAL_TZ
from geodata.db.duplicate_store import ProbableOriginal, probable_originals
from geodata.db.incident_store import psycopg_of, reporting_event_of
from geodata.duplicates import MAX_PROBABLE_ORIGINALS, DuplicateRule
from geodata.errors import WanggeError
from geodata.events import (
    CE_TYPES,
    DEFAULT_TIME_LIMITS,
    MAX_EVENT_BYTES,
    CheckIn,
    EventRefused,
    EventTimeLimits,
    IncidentReport,
    RefusalReason,
    cloudevent_headers,
    parse_checkin,
    parse_incident,
)
from grid_service.auth import Principal, require_roles
from grid_service.deps import EngineDep, read_capped_body
from grid_service.errors import (
    BatchItemRefused,
    BatchTooLarge,
    BrokerUnavailable,
    ErrorBody,
    domain_error_response,
)
from grid_service.producer import (
    EventProducer,
    GatewayClosed,
    OutgoingRecord,
    retry_after_header,
)

logger = logging.getLogger(__name__)

MAX_BATCH_ITEMS: Final = 500
"""Most check-ins in one request: a phone's offline buffer of a long shift."""

MAX_BATCH_BODY_BYTES: Final = MAX_BATCH_ITEMS * 4096
"""Largest batch body; a check-in is ~250 bytes, so 4 KiB each is generous."""

CE_SOURCE: Final = "wangge/gateway"
_CHECKIN_CE_TYPE: Final = CE_TYPES[CHECKINS_TOPIC]
_INCIDENT_CE_TYPE: Final = CE_TYPES[INCIDENTS_TOPIC]


def get_producer(request: Request) -> EventProducer:
    """Dependency: the producer made in the app's lifespan (`app.state.producer`)."""
    producer: EventProducer = request.app.state.producer
    return producer


class IncidentExists(WanggeError):
    """A report reuses the incident_id of another report already stored; nothing produced."""

    code = "incident_exists"


ProducerDep = Annotated[EventProducer, Depends(get_producer)]
WorkerWriter = Annotated[Principal, Depends(require_roles(Role.WORKER, limit_rate=True))]
AnyWriter = Annotated[Principal, Depends(require_roles(*Role, limit_rate=True))]


class CheckInsAccepted(BaseModel):
    """The broker has every posted check-in."""

    accepted: int = Field(description="How many check-ins were stored.")
    event_ids: list[str] = Field(description="Their event_ids, in the order posted.")


class ProbableDuplicateOf(BaseModel):
    """An open case of the same category near the report, which it probably repeats."""

    incident_id: str
    status: str
    category: str
    reported_at: datetime = Field(description="local time")
    distance_m: float = Field(description="metres from the report, on the ellipsoid")


class IncidentAccepted(BaseModel):
    """The broker has the incident report."""

    event_id: str
    incident_id: str
    category: str = Field(description="The platform category the report will be filed under.")
    category_unknown: bool = Field(
        description="True when the posted category is not in the list: it is kept as posted "
        "and filed as other.unclassified."
    )
    probable_duplicate_of: list[ProbableDuplicateOf] = Field(
        default_factory=list,
        description="Open cases of the category within WANGGE_DUPLICATE_RADIUS_M metres and "
        "WANGGE_DUPLICATE_WINDOW_H hours of the report, nearest first (at most 5): the "
        "consumer links the report to the nearest as a probable duplicate, for a supervisor "
        "to confirm or split. Empty while the database is away.",
    )


_ERRORS: Final[dict[int | str, dict[str, Any]]] = {
    401: {"model": ErrorBody, "description": "missing_token or invalid_token"},
    403: {"model": ErrorBody, "description": "forbidden, worker_mismatch or source_not_allowed"},
    413: {"model": ErrorBody, "description": "payload_too_large or batch_too_large"},
    415: {"model": ErrorBody, "description": "unsupported_media_type: not JSON in UTF-8"},
    422: {"model": ErrorBody, "description": "the event breaks the contract; nothing stored"},
    429: {"model": ErrorBody, "description": "rate_limited: retry after Retry-After seconds"},
    503: {
        "model": ErrorBody,
        "description": "broker_unavailable, or stopping (the service is shutting down): retry"
        " the same events after Retry-After seconds",
    },
}
_INCIDENT_ERRORS: Final[dict[int | str, dict[str, Any]]] = {
    **_ERRORS,
    409: {
        "model": ErrorBody,
        "description": "incident_exists: the incident_id is another stored report's",
    },
}

router = APIRouter(prefix="/api/v1", tags=["events"])


def _too_large(size: int, limit: int) -> EventRefused:
    return EventRefused(RefusalReason.PAYLOAD_TOO_LARGE, f"{size} bytes, more than {limit}")


def _json_object(body: bytes) -> dict[str, Any]:
    try:
        # NaN and Infinity tokens parse here so that they are refused, as by the consumers,
        # as coordinate_out_of_range rather than as broken JSON.
        document = from_json(body, allow_inf_nan=True)
    except ValueError as exc:
        raise EventRefused(RefusalReason.INVALID_JSON, f"invalid JSON: {exc}") from None
    if not isinstance(document, dict):
        raise EventRefused(RefusalReason.INVALID_JSON, "the body must be a JSON object")
    return document


def _compact(item: object) -> bytes:
    # The value as received, re-serialised compactly; NaN stays a NaN token so that the
    # shared parser refuses it exactly as a consumer would.
    return to_json(item, inf_nan_mode="constants")


def _checkin_items(document: dict[str, Any], body_size: int) -> tuple[list[Any], bool]:
    if "checkins" not in document:
        if body_size > MAX_EVENT_BYTES:
            raise _too_large(body_size, MAX_EVENT_BYTES)
        return [document], False
    items = document["checkins"]
    if not isinstance(items, list) or not items:
        raise EventRefused(
            RefusalReason.INVALID_FIELD, f"checkins must be a list of 1 to {MAX_BATCH_ITEMS}"
        )
    if len(items) > MAX_BATCH_ITEMS:
        raise BatchTooLarge(f"{len(items)} check-ins, more than {MAX_BATCH_ITEMS} per request")
    return items, True


def _checkin_record(checkin: CheckIn, value: bytes, topic: str) -> OutgoingRecord:
    headers = cloudevent_headers(
        event_id=checkin.event_id,
        ce_type=_CHECKIN_CE_TYPE,
        source=CE_SOURCE,
        time=checkin.recorded_at,
    )
    return OutgoingRecord(topic, checkin.worker_id.encode(), value, headers)


@router.post(
    "/checkins",
    status_code=202,
    response_model=CheckInsAccepted,
    responses=_ERRORS,
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {
                "application/json": {
                    "schema": {
                        "oneOf": [
                            CheckIn.model_json_schema(),
                            {
                                "type": "object",
                                "required": ["checkins"],
                                "properties": {
                                    "checkins": {
                                        "type": "array",
                                        "minItems": 1,
                                        "maxItems": MAX_BATCH_ITEMS,
                                        "items": CheckIn.model_json_schema(),
                                    }
                                },
                            },
                        ]
                    }
                }
            },
        }
    },
)
async def post_checkins(
    request: Request, producer: ProducerDep, principal: WorkerWriter
) -> CheckInsAccepted:
    """Post one GPS check-in, or `{"checkins": [...]}` (1 to 500, a phone's offline buffer).

    Needs the worker's own token: a check-in of another worker_id is 403 `worker_mismatch`.
    All or nothing: if any check-in breaks the contract, the answer is 422 with its `code`
    and `index`, and none is stored. 202 means the broker has acknowledged every one
    (keyed by worker_id on grid.checkins.v1); on 503, post the same events again: event_id
    makes the retry harmless.
    """
    body = await read_capped_body(request, MAX_BATCH_BODY_BYTES)
    items, is_batch = _checkin_items(_json_object(body), len(body))
    assert principal.worker_id is not None  # WorkerWriter: a worker's token has its worker id
    event_ids = await produce_checkins(
        request, producer, items, worker_id=principal.worker_id, is_batch=is_batch
    )
    return CheckInsAccepted(accepted=len(event_ids), event_ids=event_ids)


async def produce_checkins(
    request: Request,
    producer: EventProducer,
    items: Sequence[Any],
    *,
    worker_id: str,
    is_batch: bool = False,
) -> list[str]:
    """The gateway's one way onto grid.checkins.v1: check each item as the consumers
    will (`parse_checkin`), check that it is `worker_id`'s, produce them all; return
    their event_ids once the broker has every one.

    All or nothing: the first refused item raises (EventRefused, or BatchItemRefused with
    its index when `is_batch`; WorkerMismatch) and nothing is produced. Other adapters
    that turn a protocol into check-ins (grid_service.trackers) post through here.
    """
    now = datetime.now(UTC)
    records: list[OutgoingRecord] = []
    event_ids: list[str] = []
    for index, item in enumerate(items):
        value = _compact(item)
        try:
            checkin = parse_checkin(value, now=now, limits=_limits(request))
        except EventRefused as refusal:
            raise (BatchItemRefused(refusal, index) if is_batch else refusal) from None
        if checkin.worker_id != worker_id:
            where = f"item {index}: " if is_batch else ""
            raise WorkerMismatch(
                f"{where}worker_id {checkin.worker_id} is not the token's ({worker_id})"
            )
        records.append(_checkin_record(checkin, value, producer.topics.checkins))
        event_ids.append(str(checkin.event_id))
    await run_in_threadpool(producer.send_all, records)
    return event_ids


@router.post(
    "/incidents",
    status_code=202,
    response_model=IncidentAccepted,
    responses=_INCIDENT_ERRORS,
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {"application/json": {"schema": IncidentReport.model_json_schema()}},
        }
    },
)
async def post_incident(
    request: Request, producer: ProducerDep, principal: AnyWriter, engine: EngineDep
) -> IncidentAccepted:
    """Report an incident; event_id and incident_id are generated when absent.

    Any token: a worker's reports as source `worker` with its own reporter_id; residents,
    the hotline, lockers and sensors are posted with a supervisor's or an admin's token
    (403 `source_not_allowed` otherwise).

    An unknown category is accepted: the report is stored as posted and filed as
    other.unclassified (`category_unknown` says so). 202 means the broker has it, keyed by
    incident_id on grid.incidents.v1.

    An incident_id already stored with another report is 409 `incident_exists` (an update
    of an incident is a PATCH, not a second report); posting the very same event_id again
    is a retry and answers 202.
    """
    body = await read_capped_body(request, MAX_EVENT_BYTES)
    document = _json_object(body)
    # Absent or null ids are generated: a resident's phone or a form has none to give.
    if document.get("event_id") is None:
        document["event_id"] = str(uuid.uuid4())
    if document.get("incident_id") is None:
        # One id for both when the reporter has none: the incident is born with this event.
        document["incident_id"] = document["event_id"]
    incident, record = incident_record(request, producer, document)
    _authorize_report(principal, incident.source, incident.reporter_id)
    await run_in_threadpool(_check_incident_id_is_free, engine, incident)
    await run_in_threadpool(producer.send_all, [record])
    category, unknown = incident.normalized_category
    rule: DuplicateRule = getattr(request.app.state, "duplicate_rule", DuplicateRule())
    originals = await run_in_threadpool(_probable_originals, engine, rule, incident, category)
    return IncidentAccepted(
        event_id=str(incident.event_id),
        incident_id=str(incident.incident_id),
        category=category,
        category_unknown=unknown,
        probable_duplicate_of=[
            ProbableDuplicateOf(
                incident_id=str(original.incident_id),
                status=original.status,
                category=original.category,
                reported_at=original.reported_at.astimezone(LOCAL_TZ),
                distance_m=round(original.distance_m, 1),
            )
            for original in originals
        ],
    )


def _probable_originals(
    engine: Engine, rule: DuplicateRule, incident: IncidentReport, category: str
) -> list[ProbableOriginal]:
    """The open cases the report probably repeats: a read-only query of PostGIS, after the
    report is on its way (the consumer's link at filing is the one that counts)."""
    lon, lat = to_wgs84(np.array([incident.lon]), np.array([incident.lat]), incident.crs)
    try:
        with engine.connect() as connection:
            return probable_originals(
                psycopg_of(connection),
                rule,
                category=category,
                lon=float(lon[0]),
                lat=float(lat[0]),
                reported_at=incident.reported_at,
                excluded=[incident.incident_id],
                limit=MAX_PROBABLE_ORIGINALS,
            )
    except (SQLAlchemyError, psycopg.Error) as exc:
        logger.warning("duplicate check skipped, database unavailable: %s", type(exc).__name__)
        return []


def incident_record(
    request: Request, producer: EventProducer, document: dict[str, Any]
) -> tuple[IncidentReport, OutgoingRecord]:
    """The gateway's one way to an incident record: check the report as the consumers will
    (`parse_incident`, with the app's event-time limits; EventRefused if it breaks the
    contract), then build its record for grid.incidents.v1, keyed by incident_id, with
    CloudEvents headers. Nothing is produced: the caller sends the record
    (`producer.send_all`), after its own checks. The Open311 facade (grid_service.open311)
    files residents' requests through here.
    """
    value = _compact(document)
    incident = parse_incident(value, now=datetime.now(UTC), limits=_limits(request))
    headers = cloudevent_headers(
        event_id=incident.event_id,
        ce_type=_INCIDENT_CE_TYPE,
        source=CE_SOURCE,
        time=incident.reported_at,
    )
    record = OutgoingRecord(
        producer.topics.incidents, str(incident.incident_id).encode(), value, headers
    )
    return incident, record


def _limits(request: Request) -> EventTimeLimits:
    """The event-time limits the app was built with (the consumers apply the same)."""
    limits: EventTimeLimits = getattr(request.app.state, "event_limits", DEFAULT_TIME_LIMITS)
    return limits


def _authorize_report(principal: Principal, source: str, reporter_id: str | None) -> None:
    if principal.may_report_as(source, reporter_id):
        return
    if principal.role is not Role.WORKER:
        raise SourceNotAllowed(
            "a worker's report (source worker) is posted with that worker's own token"
        )
    if source == "worker":
        raise WorkerMismatch(
            f"reporter_id {reporter_id} is not the token's ({principal.worker_id})"
        )
    raise SourceNotAllowed(f"a worker's token reports as source worker, not {source}")


def _check_incident_id_is_free(engine: Engine, incident: IncidentReport) -> None:
    try:
        with engine.connect() as connection:
            owner = reporting_event_of(connection, incident.incident_id)
    except SQLAlchemyError as exc:
        # The consumers refuse a reused incident_id too (dead letter); this check only
        # answers earlier, so a database away skips it rather than stopping the reports.
        logger.warning("incident_id check skipped, database unavailable: %s", type(exc).__name__)
        return
    if owner is not None and owner != incident.event_id:
        raise IncidentExists(
            f"incident_id {incident.incident_id} belongs to another report; post an update"
            " as a PATCH of the incident, or a new report with a new incident_id"
        )


async def _on_broker_unavailable(_request: Request, exc: Exception) -> JSONResponse:
    if not isinstance(exc, BrokerUnavailable):  # registered for BrokerUnavailable only
        raise exc
    if isinstance(exc, GatewayClosed):
        # Expected while stopping, every post of every phone: no warning per request.
        return JSONResponse(
            {"code": exc.code, "detail": "the service is stopping; retry later"},
            status_code=503,
            headers={"Retry-After": retry_after_header(exc)},
        )
    response = domain_error_response(exc)
    response.headers["Retry-After"] = retry_after_header(exc)
    return response


async def _on_incident_exists(_request: Request, exc: Exception) -> JSONResponse:
    if not isinstance(exc, IncidentExists):  # registered for IncidentExists only
        raise exc
    return JSONResponse({"code": exc.code, "detail": str(exc)}, status_code=409)


def close_gateway(app: FastAPI) -> None:
    """Answer every later event post 503 `stopping`; posts under way finish (the stop's
    first step, `wangge serve` on SIGUSR1). Signal-safe: it only sets a flag."""
    producer: EventProducer | None = getattr(app.state, "producer", None)
    if producer is not None:
        producer.close_gate()


def install_gateway_errors(app: FastAPI) -> None:
    """The gateway's own answers: 503 broker_unavailable with Retry-After, 409 incident_exists.

    Registered for these classes, so they take precedence over the generic mapping.
    """
    app.add_exception_handler(BrokerUnavailable, _on_broker_unavailable)
    app.add_exception_handler(IncidentExists, _on_incident_exists)
