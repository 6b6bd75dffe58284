"""The one mapping from domain exceptions to HTTP statuses and stable error codes.

Every error body is `{"code": ..., "detail": ...}` (plus `index` for a refused batch item,
`problems` for a refused boundary file). A 401 carries `WWW-Authenticate: Bearer`, a 429
and a 503 `Retry-After`. A 5xx body carries a fixed public sentence; the exception itself
goes to the log only.

Database errors are mapped here too: a database that cannot be reached (restarting, down,
its pool exhausted) is 503 `database_unavailable`, and a value PostgreSQL refuses
(a DataError: NUL in text, a time out of its range...) is 422 `invalid_request`, since
only a request's input can make a read or a rolled-back write fail that way.
"""

import logging
import math
from collections.abc import Mapping
from http import HTTPStatus
from typing import Any, Final

import psycopg
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field
from sqlalchemy import exc as sa_exc
from starlette.exceptions import HTTPException as StarletteHTTPException

from geodata.accounts import (
    AccountExists,
    AccountNotFound,
    InvalidAccount,
    InvalidToken,
    NotAuthenticated,
    PermissionDenied,
)
from geodata.attachments import (
    AttachmentNotFound,
    InvalidContentId,
    InvalidImage,
    UnsupportedImage,
)
from geodata.cql2 import InvalidFilter, UnknownProperty
from geodata.crs import UnsupportedCrs
from geodata.db.tiles import InvalidTile, UnknownLayer
from geodata.errors import (
    GridNotFound,
    ImportRefused,
    InvalidAreaCode,
    InvalidGeometry,
    InvalidWeek,
    SchemaMissing,
    WanggeError,
    WorkerNotFound,
)
from geodata.events import EventRefused, RefusalReason
from geodata.incidents import (
    IllegalTransition,
    IncidentNotFound,
    InvalidIncidentFilter,
    InvalidTransitionRequest,
    StaleVersion,
    VersionRequired,
)
from geodata.live import InvalidStreamTypes
from geodata.query_limits import (
    BboxTooLarge,
    CoordinateOutOfRange,
    GeometryTooComplex,
    InvalidBbox,
    InvalidGeoJson,
    InvalidJson,
    InvalidRadius,
    PayloadTooLarge,
    PointOutsideArea,
)
from geodata.track import InvalidCursor, InvalidInterval

logger = logging.getLogger(__name__)


class ErrorBody(BaseModel):
    """An error: a stable machine code and a human detail."""

    code: str
    detail: str
    index: int | None = Field(default=None, description="The refused item of a batch.")


class BatchTooLarge(WanggeError):
    """A posted batch holds more events than one request may carry."""

    code = "batch_too_large"


class BrokerUnavailable(WanggeError):
    """The broker did not acknowledge the records in time; the client should retry."""

    code = "broker_unavailable"


class UnsupportedMediaType(WanggeError):
    """A body declared as something other than what the route reads (JSON, UTF-8)."""

    code = "unsupported_media_type"


class DatabaseUnavailable(WanggeError):
    """The database cannot be reached or gave no connection in time; the client should retry."""

    code = "database_unavailable"


class BatchItemRefused(WanggeError):
    """One event of a posted batch was refused, so the whole batch was."""

    code = "event_refused"

    def __init__(self, refusal: EventRefused, index: int) -> None:
        super().__init__(f"item {index}: {refusal}")
        self.refusal = refusal
        self.index = index


class RateLimited(WanggeError):
    """The token spent its allowance of write requests; retry after `retry_after_s`."""

    code = "rate_limited"

    def __init__(self, retry_after_s: float) -> None:
        super().__init__(f"too many requests with this token; retry in {retry_after_s:.1f} s")
        self.retry_after_s = retry_after_s


STATUS_BY_ERROR: Final[Mapping[type[WanggeError], int]] = {
    GridNotFound: 404,
    InvalidGeometry: 422,
    ImportRefused: 422,
    UnsupportedCrs: 422,
    EventRefused: 422,
    BatchItemRefused: 422,
    BatchTooLarge: 413,
    SchemaMissing: 503,
    BrokerUnavailable: 503,
    DatabaseUnavailable: 503,
    InvalidWeek: 422,
    InvalidInterval: 422,
    InvalidCursor: 422,
    InvalidAreaCode: 422,
    InvalidStreamTypes: 422,
    WorkerNotFound: 404,
    NotAuthenticated: 401,
    PermissionDenied: 403,
    RateLimited: 429,
    InvalidAccount: 422,
    AccountExists: 409,
    AccountNotFound: 404,
    UnknownLayer: 404,
    InvalidTile: 422,
    PointOutsideArea: 404,
    CoordinateOutOfRange: 422,
    InvalidBbox: 422,
    BboxTooLarge: 422,
    InvalidRadius: 422,
    InvalidJson: 422,
    InvalidGeoJson: 422,
    GeometryTooComplex: 422,
    PayloadTooLarge: 413,
    UnsupportedMediaType: 415,
    IncidentNotFound: 404,
    IllegalTransition: 409,
    StaleVersion: 412,
    VersionRequired: 428,
    InvalidTransitionRequest: 422,
    InvalidIncidentFilter: 422,
    AttachmentNotFound: 404,
    UnsupportedImage: 415,
    InvalidImage: 422,
    InvalidContentId: 422,
    # OGC API - Features asks for 400 for any invalid query parameter.
    InvalidFilter: 400,
    UnknownProperty: 400,
}
"""Domain error class to HTTP status; subclasses inherit their nearest listed base."""

_PUBLIC_5XX_DETAIL: Final[Mapping[str, str]] = {
    "broker_unavailable": "the event broker did not acknowledge in time; retry later",
    "stopping": "the service is stopping; retry later",
    "database_unavailable": "the database is not reachable right now; retry later",
    "schema_missing": "the service is not ready; retry later",
}

DATABASE_RETRY_AFTER_S: Final = 5
"""Retry-After of a 503 `database_unavailable`: about what a PostgreSQL restart takes."""
_INTERNAL_ERROR: Final = {"code": "internal_error", "detail": "internal error"}

_CODE_BY_HTTP_STATUS: Final[Mapping[int, str]] = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    409: "conflict",
    413: "payload_too_large",
    415: "unsupported_media_type",
    422: "invalid_request",
    429: "too_many_requests",
}


def _status_of(exc: WanggeError) -> int | None:
    for cls in type(exc).__mro__:
        if cls in STATUS_BY_ERROR:
            return STATUS_BY_ERROR[cls]
    return None


def _headers_of(exc: WanggeError) -> dict[str, str] | None:
    if isinstance(exc, NotAuthenticated):
        # RFC 6750: a bare challenge when no token came, the error when a bad one did.
        error = ', error="invalid_token"' if isinstance(exc, InvalidToken) else ""
        return {"WWW-Authenticate": f'Bearer realm="wangge"{error}'}
    if isinstance(exc, RateLimited):
        return {"Retry-After": str(max(1, math.ceil(exc.retry_after_s)))}
    if isinstance(exc, DatabaseUnavailable):
        return {"Retry-After": str(DATABASE_RETRY_AFTER_S)}
    return None


def _problems_of(exc: ImportRefused) -> list[dict[str, str | None]]:
    # Problems are geodata's dataclasses (layer, feature, reason, detail); read by name so
    # that this module needs nothing from the importer.
    problems: list[dict[str, str | None]] = []
    for problem in exc.problems:
        reason = getattr(problem, "reason", "")
        feature = getattr(problem, "feature", None)
        problems.append(
            {
                "layer": str(getattr(problem, "layer", "")),
                "feature": None if feature is None else str(feature),
                "reason": str(getattr(reason, "value", reason)),
                "detail": str(getattr(problem, "detail", problem)),
            }
        )
    return problems


def domain_error_response(exc: WanggeError) -> JSONResponse:
    """The HTTP answer to a domain error, by STATUS_BY_ERROR."""
    refusal = exc.refusal if isinstance(exc, BatchItemRefused) else exc
    if isinstance(refusal, EventRefused):
        too_large = refusal.reason is RefusalReason.PAYLOAD_TOO_LARGE
        body: dict[str, Any] = {"code": refusal.reason.value, "detail": refusal.detail}
        if isinstance(exc, BatchItemRefused):
            body["index"] = exc.index
        return JSONResponse(body, status_code=413 if too_large else 422)
    status = _status_of(exc)
    if status is None:
        logger.error("unmapped domain error (add it to STATUS_BY_ERROR)", exc_info=exc)
        return JSONResponse(_INTERNAL_ERROR, status_code=500)
    if status >= 500:
        logger.warning("%s: %s", exc.code, exc, exc_info=exc)
        detail = _PUBLIC_5XX_DETAIL.get(exc.code, _INTERNAL_ERROR["detail"])
        return JSONResponse(
            {"code": exc.code, "detail": detail}, status_code=status, headers=_headers_of(exc)
        )
    body = {"code": exc.code, "detail": str(exc)}
    if isinstance(exc, ImportRefused):
        body["problems"] = _problems_of(exc)
    return JSONResponse(body, status_code=status, headers=_headers_of(exc))


_UNAVAILABLE: Final = (
    sa_exc.OperationalError,  # connection refused or lost, server shutting down
    sa_exc.InterfaceError,  # a connection psycopg already knows to be closed
    sa_exc.TimeoutError,  # no pooled connection within the pool timeout
    psycopg.OperationalError,
    psycopg.InterfaceError,
)
_BAD_VALUE: Final = (sa_exc.DataError, psycopg.DataError)


def is_database_unavailable(exc: BaseException) -> bool:
    """Whether `exc` says the database is away (so: retry later), not that a query is wrong."""
    if isinstance(exc, sa_exc.DBAPIError) and exc.connection_invalidated:
        return True
    return isinstance(exc, _UNAVAILABLE)


def database_error_response(exc: Exception) -> JSONResponse:
    """The HTTP answer to an error of SQLAlchemy or psycopg: 503, 422, else 500."""
    if is_database_unavailable(exc):
        # Logged briefly: during an outage every request lands here.
        logger.warning("database unavailable: %s", type(exc).__name__)
        return domain_error_response(DatabaseUnavailable(str(exc)))
    if isinstance(exc, _BAD_VALUE):
        # A warning, not an error: the input was bad, not the server. The driver's own
        # message (not the statement with its parameters) says which check is missing.
        orig = exc.orig if isinstance(exc, sa_exc.DBAPIError) else exc
        logger.warning("PostgreSQL refused a value of the request: %r", orig)
        detail = "a value of the request is outside what the database can hold or compare"
        return JSONResponse({"code": "invalid_request", "detail": detail}, status_code=422)
    logger.error("database error", exc_info=exc)
    return JSONResponse(_INTERNAL_ERROR, status_code=500)


def error_response(exc: Exception) -> JSONResponse:
    """The HTTP answer to any exception, for code outside the routes (middleware)."""
    if isinstance(exc, WanggeError):
        return domain_error_response(exc)
    if isinstance(exc, sa_exc.SQLAlchemyError | psycopg.Error):
        return database_error_response(exc)
    logger.error("unhandled error", exc_info=exc)
    return JSONResponse(_INTERNAL_ERROR, status_code=500)


async def _on_database_error(_request: Request, exc: Exception) -> JSONResponse:
    return database_error_response(exc)


async def _on_domain_error(_request: Request, exc: Exception) -> JSONResponse:
    if not isinstance(exc, WanggeError):  # registered for WanggeError only
        raise exc
    return domain_error_response(exc)


async def _on_request_validation(_request: Request, exc: Exception) -> JSONResponse:
    if not isinstance(exc, RequestValidationError):  # registered for RequestValidationError only
        raise exc
    problems = [
        f"{'.'.join(str(part) for part in error.get('loc', ()))}: {error.get('msg', '')}"
        for error in exc.errors()
    ]
    return JSONResponse({"code": "invalid_request", "detail": "; ".join(problems)}, 422)


async def _on_http_exception(_request: Request, exc: Exception) -> JSONResponse:
    if not isinstance(exc, StarletteHTTPException):  # registered for StarletteHTTPException only
        raise exc
    # Routes may raise HTTPException(status, detail={"code": ..., "detail": ...}) to pick
    # their own code; a plain string detail gets the status's generic code.
    if isinstance(exc.detail, dict) and "code" in exc.detail:
        body = {"code": str(exc.detail["code"]), "detail": str(exc.detail.get("detail", ""))}
    else:
        code = _CODE_BY_HTTP_STATUS.get(exc.status_code, "http_error")
        detail = exc.detail if exc.status_code < 500 else HTTPStatus(exc.status_code).phrase
        body = {"code": code, "detail": str(detail)}
    return JSONResponse(body, status_code=exc.status_code, headers=exc.headers)


async def _on_unexpected(_request: Request, exc: Exception) -> JSONResponse:
    logger.error("unhandled error", exc_info=exc)
    return JSONResponse(_INTERNAL_ERROR, status_code=500)


def install_error_handlers(app: FastAPI) -> None:
    """Register the one error mapping on `app`; call it once in the app factory."""
    app.add_exception_handler(WanggeError, _on_domain_error)
    app.add_exception_handler(RequestValidationError, _on_request_validation)
    app.add_exception_handler(StarletteHTTPException, _on_http_exception)
    app.add_exception_handler(sa_exc.SQLAlchemyError, _on_database_error)
    app.add_exception_handler(psycopg.Error, _on_database_error)
    app.add_exception_handler(Exception, _on_unexpected)
