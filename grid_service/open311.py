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
from typing import Annotated, Any, Final, Literal
from urllib.parse import parse_qsl

from fastapi import APIRouter, Path, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.routing import APIRoute
from pydantic import BaseModel, Field
from sqlalchemy import Engine
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException

from geodata.db import open311_store
from geodata.events import EventRefused
from geodata.open311 import (
    CONTACT_FIELDS,
    SERVICE_NOTICE,
    SERVICES,
    InvalidApiKey,
    InvalidServiceRequest,
    Open311Error,
    RequestQuery,
    ServiceNotFound,
    ServiceRequestInput,
    ServiceRequestNotFound,
    ServiceRequestRecord,
    find_service,
    incident_event,
    parse_request_id,
    request_query,
    service_request_document,
    service_request_input,
)
from grid_service.auth import AuthConfig, RateLimiter
from grid_service.deps import EngineDep, read_capped_body
from grid_service.errors import BrokerUnavailable, ErrorBody, error_response
from grid_service.gateway import ProducerDep, incident_record
from grid_service.producer import EventProducer, OutgoingRecord, retry_after_header

logger = logging.getLogger(__name__)

MAX_BODY_BYTES: Final = 64 * 1024
"""Largest posted request: a 4,000-character description in any script fits several times."""
MAX_FORM_FIELDS: Final = 100
FORM_MEDIA_TYPE: Final = "application/x-www-form-urlencoded"
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


# --------------------------------------------------------------------------- documents


class Open311ErrorItem(BaseModel):
    """One error of the standard's error array."""

    code: int = Field(description="the HTTP status")
    description: str


class ServicePublic(BaseModel):
    """A service: an incident category residents may report."""

    service_code: str = Field(description="the category's code, e.g. environment.garbage")
    service_name: str
    description: str
    metadata: bool = Field(description="always false: no service has attributes")
    type: Literal["realtime", "batch", "blackbox"]
    keywords: str
    group: str


class ServiceAttributeValue(BaseModel):
    """One choice of a list attribute."""

    key: str
    name: str


class ServiceAttribute(BaseModel):
    """An attribute of a service definition (no service has one yet)."""

    variable: bool
    code: str
    datatype: Literal["string", "number", "datetime", "text", "singlevaluelist", "multivaluelist"]
    required: bool
    datatype_description: str | None
    order: int
    description: str
    values: list[ServiceAttributeValue] = []


class ServiceDefinition(BaseModel):
    """A service's definition: its attributes (none)."""

    service_code: str
    attributes: list[ServiceAttribute]


class ServiceRequestPublic(BaseModel):
    """A service request as the standard has it; no contact field is ever among these."""

    service_request_id: str = Field(description="the incident's id")
    status: Literal["open", "closed"]
    status_notes: str = Field(description="where the case stands (docs/INTERFACES.md)")
    service_name: str | None
    service_code: str
    description: str | None
    agency_responsible: str | None = Field(
        description="the community, or the street office or district a case went up to"
    )
    service_notice: str | None
    requested_datetime: str
    updated_datetime: str
    expected_datetime: str | None
    address: str | None
    address_id: str | None
    zipcode: str | None
    lat: float
    long: float
    media_url: str | None


class RequestCreated(BaseModel):
    """A posted request: its id, readable at once with GET requests/{id}.json."""

    service_request_id: str = Field(description="the incident's id")
    service_notice: str | None
    account_id: str | None = Field(description="always null: wangge keeps no resident accounts")


def _errors(*statuses: int) -> dict[int | str, dict[str, Any]]:
    texts = {
        400: "a parameter is missing, malformed or out of range",
        403: "api_key missing, unknown or revoked",
        404: "no such service or service request",
        429: "the client's api_key posted too often: retry after Retry-After seconds",
        503: "the broker or the database is away: retry after Retry-After seconds",
    }
    responses: dict[int | str, dict[str, Any]] = {
        status: {"model": list[Open311ErrorItem], "description": texts[status]}
        for status in statuses
    }
    # Refused by the edge before any route runs, so in wangge's own error shape.
    responses[422] = {"model": ErrorBody, "description": "invalid_request: a NUL in the URL"}
    return responses


def _query(name: str, description: str) -> dict[str, Any]:
    return {
        "name": name,
        "in": "query",
        "required": False,
        "schema": {"type": "string"},
        "description": description,
    }


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
_IGNORED: Final = _query("jurisdiction_id", "ignored: this server serves one jurisdiction")


@router.get(
    "/services.json",
    response_model=list[ServicePublic],
    responses=_errors(400),
    openapi_extra={"parameters": [_IGNORED]},
)
async def list_services() -> JSONResponse:
    """Every service: the incident categories, grouped by class, in Chinese."""
    return JSONResponse(_SERVICES_DOCUMENT)


@router.get(
    "/services/{service_code}.json",
    response_model=ServiceDefinition,
    responses=_errors(404),
    openapi_extra={"parameters": [_IGNORED]},
)
async def read_service_definition(
    service_code: Annotated[str, Path(description="a service_code of services.json")],
) -> JSONResponse:
    """A service's definition; no service has attributes, so the list is empty."""
    service = find_service(service_code)
    return JSONResponse({"service_code": service.service_code, "attributes": []})


_REQUEST_FIELDS: Final[dict[str, Any]] = {
    "type": "object",
    "required": ["api_key", "service_code", "lat", "long"],
    "properties": {
        "api_key": {"type": "string", "description": "from `wangge open311 keys add`"},
        "service_code": {"type": "string"},
        "lat": {"type": "number", "minimum": -90, "maximum": 90, "description": "WGS84"},
        "long": {"type": "number", "minimum": -180, "maximum": 180, "description": "WGS84"},
        "description": {"type": "string", "maxLength": 4000},
        "address_string": {"type": "string", "maxLength": 500},
        "media_url": {"type": "string", "format": "uri", "maxLength": 2048},
        "jurisdiction_id": {"type": "string", "description": "ignored"},
        **{
            name: {"type": "string", "description": "personal: stored apart, never returned"}
            for name in CONTACT_FIELDS
        },
    },
}


@router.post(
    "/requests.json",
    status_code=201,
    response_model=list[RequestCreated],
    responses=_errors(400, 403, 429, 503),
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {
                FORM_MEDIA_TYPE: {"schema": _REQUEST_FIELDS},
                "application/json": {"schema": _REQUEST_FIELDS},
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
    responses=_errors(400),
    openapi_extra={
        "parameters": [
            _IGNORED,
            _query(
                "service_request_id",
                "ids, comma-separated (at most 1,000); when given, the other filters are ignored",
            ),
            _query("service_code", "service codes, comma-separated"),
            _query("start_date", "earliest requested time, W3C with an offset"),
            _query("end_date", "latest requested time; at most 90 days after start_date"),
            _query("status", "open, closed, or both comma-separated"),
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
    responses=_errors(404),
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
