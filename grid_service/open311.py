"""Open311 GeoReport v2 (JSON) under /open311/v2: residents' reports through any Open311 app.

A thin adapter over `geodata.open311` (the rules) and `geodata.db.open311_store`:

- `GET services.json`, `GET services/{service_code}.json`: the incident categories.
- `POST requests.json` (form-encoded as the standard has it, or JSON) with an `api_key`
  from `wangge open311 keys add`: the request becomes an incident report produced through
  the gateway's own path (`grid_service.gateway.incident_record`), so the consumers file,
  route and assign it like any report. Its public fields, and the resident's contact
  fields in a table apart, are written in one transaction that commits only once the
  broker has the report: a refused post leaves nothing behind, and the id answered is
  readable at once.
- `GET requests.json`, `GET requests/{service_request_id}.json`: the requests posted
  here, with their incident's status as the standard's open or closed and a note. No
  contact field is ever read.

Every error is the standard's array, `[{"code": 400, "description": "..."}]`, with the
HTTP status as its code: 400 for bad input (whatever wangge's own routes would answer
413, 415 or 422), 403 for a missing or bad api_key, 404 for an unknown service or
request, 429 and 503 with Retry-After. No token is needed; one presented must be valid,
as everywhere in the API.
"""

import json
import logging
import uuid
from collections.abc import Callable, Coroutine, Mapping
from datetime import UTC, datetime
from typing import Annotated, Any, Final
from urllib.parse import parse_qsl

from fastapi import APIRouter, Path, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.routing import APIRoute
from sqlalchemy import Engine
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException

from geodata.db import open311_store
from geodata.events import EventRefused
from geodata.open311 import (
    SERVICE_NOTICE,
    SERVICES,
    InvalidApiKey,
    InvalidServiceRequest,
    Open311Error,
    ServiceNotFound,
    ServiceRequestNotFound,
    ServiceRequestRecord,
    find_service,
    service_request_document,
)
from geodata.open311_input import (
    RequestQuery,
    ServiceRequestInput,
    incident_event,
    parse_request_id,
    request_query,
    service_request_input,
)
from grid_service.auth import AuthConfig, RateLimiter
from grid_service.deps import EngineDep, read_capped_body
from grid_service.errors import BrokerUnavailable, error_response
from grid_service.gateway import ProducerDep, incident_record
from grid_service.open311_documents import (
    FORM_MEDIA_TYPE,
    REQUEST_FIELDS,
    RequestCreated,
    ServiceDefinition,
    ServicePublic,
    ServiceRequestPublic,
    error_responses,
    query_parameter,
)
from grid_service.producer import EventProducer, OutgoingRecord, retry_after_header

logger = logging.getLogger(__name__)

MAX_BODY_BYTES: Final = 64 * 1024
"""Largest posted request: a 4,000-character description in any script fits several times."""
MAX_FORM_FIELDS: Final = 100
_POST_MEDIA_TYPES: Final = (FORM_MEDIA_TYPE, "application/json")

_STATUS_BY_ERROR: Final[Mapping[type[Open311Error], int]] = {
    InvalidServiceRequest: 400,
    InvalidApiKey: 403,
    ServiceNotFound: 404,
    ServiceRequestNotFound: 404,
}
# What wangge's own routes answer for bad input is one 400 here, as the standard has it.
_AS_BAD_REQUEST: Final = frozenset({413, 415, 422})


# --------------------------------------------------------------------------- errors


def _error_array(
    status: int, description: str, headers: Mapping[str, str] | None = None
) -> JSONResponse:
    return JSONResponse(
        [{"code": status, "description": description}], status_code=status, headers=headers
    )


def open311_error_response(exc: Exception) -> JSONResponse:
    """The standard's error array for any exception a route of this facade raised."""
    if isinstance(exc, Open311Error):
        status = next(s for cls, s in _STATUS_BY_ERROR.items() if isinstance(exc, cls))
        return _error_array(status, str(exc))
    if isinstance(exc, EventRefused):
        return _error_array(400, exc.detail)
    if isinstance(exc, RequestValidationError):
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e.get('loc', ()))}: {e.get('msg', '')}"
            for e in exc.errors()
        )
        return _error_array(400, problems)
    if isinstance(exc, StarletteHTTPException):
        return _error_array(exc.status_code, str(exc.detail), exc.headers)
    # Everything else as wangge's own mapping has it (a 5xx logged there, its detail
    # public), reshaped; Retry-After kept.
    mapped = error_response(exc)
    body = json.loads(bytes(mapped.body))
    headers = {k: v for k, v in mapped.headers.items() if k.lower() == "retry-after"}
    if isinstance(exc, BrokerUnavailable):
        headers["Retry-After"] = retry_after_header(exc)
    status = 400 if mapped.status_code in _AS_BAD_REQUEST else mapped.status_code
    return _error_array(status, str(body.get("detail", "")), headers)


class Open311Route(APIRoute):
    """A route whose errors, its dependencies' included, answer as the standard's array."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        """The route's handler, wrapped so that no exception leaves it as another shape."""
        handle = super().get_route_handler()

        async def handle_as_open311(request: Request) -> Response:
            try:
                return await handle(request)
            except Exception as exc:  # every error of this facade has the standard's shape
                return open311_error_response(exc)

        return handle_as_open311


# --------------------------------------------------------------------------- routes

router = APIRouter(prefix="/open311/v2", tags=["open311"], route_class=Open311Route)

_SERVICES_DOCUMENT: Final = [
    {
        "service_code": s.service_code,
        "service_name": s.service_name,
        "description": s.description,
        "metadata": s.metadata,
        "type": s.type,
        "keywords": s.keywords,
        "group": s.group,
    }
    for s in SERVICES
]
_IGNORED: Final = query_parameter("jurisdiction_id", "ignored: this server serves one jurisdiction")


@router.get(
    "/services.json",
    response_model=list[ServicePublic],
    responses=error_responses(400),
    openapi_extra={"parameters": [_IGNORED]},
)
async def list_services() -> JSONResponse:
    """Every service: the incident categories, grouped by class, in Chinese."""
    return JSONResponse(_SERVICES_DOCUMENT)


@router.get(
    "/services/{service_code}.json",
    response_model=ServiceDefinition,
    responses=error_responses(404),
    openapi_extra={"parameters": [_IGNORED]},
)
async def read_service_definition(
    service_code: Annotated[str, Path(description="a service_code of services.json")],
) -> JSONResponse:
    """A service's definition; no service has attributes, so the list is empty."""
    service = find_service(service_code)
    return JSONResponse({"service_code": service.service_code, "attributes": []})


@router.post(
    "/requests.json",
    status_code=201,
    response_model=list[RequestCreated],
    responses=error_responses(400, 403, 429, 503),
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {
                FORM_MEDIA_TYPE: {"schema": REQUEST_FIELDS},
                "application/json": {"schema": REQUEST_FIELDS},
            },
        }
    },
)
async def post_request(request: Request, producer: ProducerDep, engine: EngineDep) -> JSONResponse:
    """Post a service request: it becomes an incident report like any other.

    Form-encoded (the standard) or a JSON object, UTF-8, at most 64 KiB. `lat` and `long`
    are required (WGS84: wangge files a report by its point); `email`, `first_name`,
    `last_name`, `phone`, `device_id` and `account_id` are kept apart for the city and
    returned by nothing. 201 once the broker has the report; the id is the incident's.
    Errors, in the order checked: 400 (the body), 403 (api_key), 429, 400 (the fields),
    503.
    """
    fields = _fields(request, await read_capped_body(request, MAX_BODY_BYTES, _POST_MEDIA_TYPES))
    api_key = fields.get("api_key")
    client_id = await run_in_threadpool(
        _client_of, engine, api_key if isinstance(api_key, str) else ""
    )
    _limiter(request).take(client_id)
    service_request = service_request_input(fields)
    incident_id = uuid.uuid4()
    requested_at = datetime.now(UTC)
    event = incident_event(service_request, incident_id=incident_id, reported_at=requested_at)
    _incident, record = incident_record(request, producer, event)
    await run_in_threadpool(
        _file, engine, producer, client_id, incident_id, service_request, requested_at, record
    )
    created = {
        "service_request_id": str(incident_id),
        "service_notice": SERVICE_NOTICE,
        "account_id": None,
    }
    return JSONResponse([created], status_code=201)


@router.get(
    "/requests.json",
    response_model=list[ServiceRequestPublic],
    responses=error_responses(400),
    openapi_extra={
        "parameters": [
            _IGNORED,
            query_parameter(
                "service_request_id",
                "ids, comma-separated (at most 1,000); when given, the other filters are ignored",
            ),
            query_parameter("service_code", "service codes, comma-separated"),
            query_parameter("start_date", "earliest requested time, W3C with an offset"),
            query_parameter("end_date", "latest requested time; at most 90 days after start_date"),
            query_parameter("status", "open, closed, or both comma-separated"),
        ]
    },
)
async def list_requests(request: Request, engine: EngineDep) -> JSONResponse:
    """The requests posted here, newest first, at most 1,000.

    Without dates, those of the last 90 days; with one date, the 90 days from (or up to)
    it; with both, at most 90 days apart. A parameter given twice counts as one
    comma-separated list.
    """
    params = {name: ",".join(request.query_params.getlist(name)) for name in request.query_params}
    query = request_query(params, datetime.now(UTC))
    records = await run_in_threadpool(_find_requests, engine, query)
    return JSONResponse([service_request_document(record) for record in records])


@router.get(
    "/requests/{service_request_id}.json",
    response_model=list[ServiceRequestPublic],
    responses=error_responses(404),
    openapi_extra={"parameters": [_IGNORED]},
)
async def read_request(
    engine: EngineDep,
    service_request_id: Annotated[str, Path(description="the id POST requests.json answered")],
) -> JSONResponse:
    """One request, as a list of one (the standard's shape)."""
    incident_id = parse_request_id(service_request_id)
    record = await run_in_threadpool(_find_request, engine, incident_id)
    if record is None:
        raise ServiceRequestNotFound(f"no service request has the id {incident_id}")
    return JSONResponse([service_request_document(record)])


# --------------------------------------------------------------------------- helpers


def _fields(request: Request, body: bytes) -> dict[str, object]:
    """The posted fields: a form's values (text) or a JSON object's (any JSON type)."""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        raise InvalidServiceRequest("the body is not UTF-8") from None
    media_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if media_type == FORM_MEDIA_TYPE:
        try:
            pairs = parse_qsl(
                text, keep_blank_values=True, max_num_fields=MAX_FORM_FIELDS, errors="strict"
            )
        except (ValueError, UnicodeDecodeError) as exc:
            raise InvalidServiceRequest(f"the form cannot be read: {exc}") from None
        fields: dict[str, object] = {}
        for name, value in pairs:
            if name in fields:
                raise InvalidServiceRequest(f"{name[:40]} is given more than once")
            fields[name] = value
        return fields
    try:
        document = json.loads(text)
    except ValueError as exc:
        raise InvalidServiceRequest(f"the body is not JSON: {exc}") from None
    if not isinstance(document, dict):
        raise InvalidServiceRequest("the body must be a JSON object")
    return document


def _client_of(engine: Engine, api_key: str) -> int:
    if not api_key:
        raise InvalidApiKey("api_key is required to post; a city admin issues one")
    with engine.connect() as conn:
        client_id = open311_store.client_for_key(conn, api_key)
    if client_id is None:
        raise InvalidApiKey("the api_key is unknown or revoked")
    return client_id


_LIMITER_KEY: Final = "open311_limiter"


def _limiter(request: Request) -> RateLimiter:
    """One bucket per client, at the write rate the app gives a token (AuthConfig)."""
    limiter = getattr(request.app.state, _LIMITER_KEY, None)
    if isinstance(limiter, RateLimiter):
        return limiter
    auth = getattr(request.app.state, "auth", None)
    config: AuthConfig = getattr(auth, "config", None) or AuthConfig()
    limiter = RateLimiter(config.write_rate_per_s, config.write_burst)
    setattr(request.app.state, _LIMITER_KEY, limiter)
    return limiter


def _file(
    engine: Engine,
    producer: EventProducer,
    client_id: int,
    incident_id: uuid.UUID,
    service_request: ServiceRequestInput,
    requested_at: datetime,
    record: OutgoingRecord,
) -> None:
    # The rows commit only once the broker has the report: a refused send rolls them
    # back, so no request is kept that the consumers will never file.
    with engine.begin() as conn:
        open311_store.insert_request(
            conn,
            client_id=client_id,
            incident_id=incident_id,
            request=service_request,
            requested_at=requested_at,
        )
        producer.send_all([record])


def _find_requests(engine: Engine, query: RequestQuery) -> list[ServiceRequestRecord]:
    with engine.connect() as conn:
        return open311_store.find_requests(conn, query)


def _find_request(engine: Engine, incident_id: uuid.UUID) -> ServiceRequestRecord | None:
    with engine.connect() as conn:
        return open311_store.find_request(conn, incident_id)
