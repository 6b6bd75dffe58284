"""The tracking apps' own protocols on the gateway: OsmAnd (Traccar Client) and OwnTracks.

`/api/v1/trackers/osmand/{secret}` and `/api/v1/trackers/owntracks/{secret}`: the URL a
worker pastes into the app carries its device's secret (`wangge devices add`). Each
request is turned into one check-in by `geodata.tracker_protocols` and posted through the
gateway's own path (`grid_service.gateway.produce_checkins`): the consumers' checks, the
same refusals with the same codes, produced keyed by worker only once the broker has it.

Answers are what the apps expect: OsmAnd 200 with an empty body (as Traccar answers),
OwnTracks 200 with the JSON array `[]`. An unknown secret is 401 `unknown_device`, a
revoked device 403 `device_revoked`, a request naming another device identifier (or
using another protocol's URL) 403 `device_mismatch`; nothing is produced for any of them.

Devices are looked up once per `AuthConfig.token_cache_ttl_s` (a revoked device may post
until then, as a revoked token may) and spend the same per-credential write allowance as
a token (429 `rate_limited`). The secret is part of the path, so it is cut out of the
HTTP server's access log (`SecretRedaction`); metrics name the route template only.
"""

import logging
import re
import threading
import time
from typing import Annotated, Any, Final
from urllib.parse import parse_qsl

from fastapi import APIRouter, FastAPI, Path, Request
from fastapi.responses import JSONResponse, Response
from pydantic_core import from_json
from sqlalchemy import Engine
from sqlalchemy.exc import ProgrammingError
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool

from geodata.accounts import hash_token
from geodata.db import devices_store
from geodata.errors import SchemaMissing
from geodata.events import MAX_EVENT_BYTES, EventRefused, RefusalReason
from geodata.tracker_protocols import osmand_checkin, owntracks_checkin, traccar_json_checkin
from geodata.trackers import (
    SECRET_PREFIX,
    TRACKERS_PATH,
    Device,
    TrackerKind,
    UnknownDevice,
    check_device,
    is_well_formed_secret,
)
from grid_service.auth import AuthConfig, AuthState, RateLimiter
from grid_service.deps import read_capped_body
from grid_service.errors import ErrorBody
from grid_service.gateway import ProducerDep, produce_checkins
from grid_service.routing import add_routes

logger = logging.getLogger(__name__)

FORM_MEDIA_TYPE: Final = "application/x-www-form-urlencoded"
_PRUNE_ABOVE: Final = 10_000
"""Cached devices kept before expired ones are dropped: ~2,400 workers fit many times."""

DeviceSecret = Annotated[
    str, Path(description="The device's secret, as its URL from `wangge devices add` carries it.")
]

_ERRORS: Final[dict[int | str, dict[str, Any]]] = {
    401: {"model": ErrorBody, "description": "unknown_device: no device has this URL"},
    403: {
        "model": ErrorBody,
        "description": "device_revoked, or device_mismatch: the request names another device"
        " identifier, or the device is another protocol's",
    },
    413: {"model": ErrorBody, "description": "payload_too_large"},
    415: {"model": ErrorBody, "description": "unsupported_media_type"},
    422: {
        "model": ErrorBody,
        "description": "the fix breaks the check-in contract (the code says how); nothing stored",
    },
    429: {"model": ErrorBody, "description": "rate_limited: retry after Retry-After seconds"},
    503: {
        "model": ErrorBody,
        "description": "broker_unavailable (the app should send it again) or schema_missing",
    },
}


class DeviceCache:
    """Devices by their secret's hash for `ttl_s` seconds, so most requests skip the database.

    Revoked devices are kept too (so that they are refused as revoked); unknown secrets
    are not, so that guessed ones cannot fill the memory.
    """

    def __init__(self, ttl_s: float) -> None:
        self.ttl_s = ttl_s
        self._lock = threading.Lock()
        self._entries: dict[str, tuple[Device, float]] = {}

    def get(self, secret_hash: str) -> Device | None:
        """The device looked up less than `ttl_s` ago, else None."""
        with self._lock:
            entry = self._entries.get(secret_hash)
            if entry is None or time.monotonic() >= entry[1]:
                return None
            return entry[0]

    def put(self, secret_hash: str, device: Device) -> None:
        """Remember a device the database just gave."""
        if self.ttl_s <= 0:
            return
        with self._lock:
            now = time.monotonic()
            if len(self._entries) > _PRUNE_ABOVE:
                self._entries = {h: e for h, e in self._entries.items() if e[1] > now}
            self._entries[secret_hash] = (device, now + self.ttl_s)


class DeviceGate:
    """Who a tracker URL speaks for: its device, checked and rate-limited (`app.state`)."""

    def __init__(self, config: AuthConfig) -> None:
        self.cache = DeviceCache(config.token_cache_ttl_s)
        self.limiter = RateLimiter(config.write_rate_per_s, config.write_burst)

    async def device(self, engine: Engine, secret: str, kind: TrackerKind) -> Device:
        """The device of `secret` if it may post as `kind`; else UnknownDevice, ...
        DeviceRevoked, DeviceMismatch, or RateLimited once its allowance is spent."""
        if not is_well_formed_secret(secret):
            raise UnknownDevice("this is not a device URL; register one with `wangge devices add`")
        secret_hash = hash_token(secret)
        device = self.cache.get(secret_hash)
        if device is None:
            device = await run_in_threadpool(_lookup, engine, secret_hash)
            if device is not None:
                self.cache.put(secret_hash, device)
        checked = check_device(device, kind)
        self.limiter.take(checked.id)
        return checked


def _lookup(engine: Engine, secret_hash: str) -> Device | None:
    try:
        with Session(engine) as session:
            return devices_store.device_by_secret_hash(session, secret_hash)
    except ProgrammingError as exc:
        # An undefined table: the database was not migrated to revision 0009 yet.
        raise SchemaMissing(
            "the tracker_devices table is missing; run `wangge db upgrade`"
        ) from exc


_GATE_LOCK = threading.Lock()


def _gate(request: Request) -> DeviceGate:
    gate = getattr(request.app.state, "device_gate", None)
    if isinstance(gate, DeviceGate):
        return gate
    with _GATE_LOCK:
        gate = getattr(request.app.state, "device_gate", None)
        if not isinstance(gate, DeviceGate):
            auth = getattr(request.app.state, "auth", None)
            gate = DeviceGate(auth.config if isinstance(auth, AuthState) else AuthConfig())
            request.app.state.device_gate = gate
        return gate


async def _device(request: Request, secret: str, kind: TrackerKind) -> Device:
    return await _gate(request).device(request.app.state.engine, secret, kind)


def _json_document(body: bytes) -> Any:
    try:
        # NaN and Infinity parse, so that a coordinate holding one is refused as the
        # gateway refuses it (coordinate_out_of_range), not as broken JSON.
        return from_json(body, allow_inf_nan=True)
    except ValueError as exc:
        raise EventRefused(RefusalReason.INVALID_JSON, f"invalid JSON: {exc}") from None


def _is_json(request: Request) -> bool:
    declared = request.headers.get("content-type", "")
    return declared.split(";")[0].strip().lower() == "application/json"


router = APIRouter(prefix=TRACKERS_PATH, tags=["trackers"])


_OSMAND_RESPONSES: Final[dict[int | str, dict[str, Any]]] = {
    200: {"description": "The fix is on grid.checkins.v1 (an empty body)."},
    **_ERRORS,
}


# The apps send GET (OsmAnd, Traccar Client up to 8) or POST (Traccar Client 9): both taken.
@router.get(
    "/osmand/{device_secret}",
    response_class=Response,
    responses=_OSMAND_RESPONSES,
    operation_id="get_osmand_fix",
)
@router.post(
    "/osmand/{device_secret}",
    response_class=Response,
    responses=_OSMAND_RESPONSES,
    operation_id="post_osmand_fix",
)
async def post_osmand(
    request: Request, device_secret: DeviceSecret, producer: ProducerDep
) -> Response:
    """One fix in the OsmAnd protocol, as Traccar Client and the OsmAnd app send it.

    Query parameters (GET or POST) or a form: `id` (the device identifier), `lat`, `lon`,
    `timestamp` (seconds or milliseconds since the epoch, or ISO 8601 with an offset),
    `speed` (knots), `bearing`, `altitude` and `accuracy` (metres), `hdop`, `batt` (%),
    `charge`, `mock`. Or Traccar Client 9's JSON (`Content-Type: application/json`):
    `{"location": {"timestamp", "coords": {...}, "battery": {...}}, "device_id"}`.

    200 with an empty body once the broker has the check-in; a refusal is a 4xx with the
    check-in's refusal code, as `POST /api/v1/checkins` answers it.
    """
    device = await _device(request, device_secret, TrackerKind.OSMAND)
    if _is_json(request):
        body = await read_capped_body(request, MAX_EVENT_BYTES)
        checkin = traccar_json_checkin(_json_document(body), device)
    else:
        # As Traccar reads it: the query's parameters, or the body's when the query has none.
        params: dict[str, str] = dict(request.query_params)
        if not params and request.method == "POST":
            body = await read_capped_body(request, MAX_EVENT_BYTES, (FORM_MEDIA_TYPE,))
            params = dict(parse_qsl(body.decode("utf-8", "replace"), keep_blank_values=True))
        checkin = osmand_checkin(params, device)
    await produce_checkins(request, producer, [checkin], worker_id=device.worker_id)
    return Response(status_code=200)


@router.post(
    "/owntracks/{device_secret}",
    response_class=JSONResponse,
    responses={
        200: {
            "description": "The fix is on grid.checkins.v1, or the message carried none: `[]`.",
            "content": {"application/json": {"example": []}},
        },
        **_ERRORS,
    },
)
async def post_owntracks(
    request: Request, device_secret: DeviceSecret, producer: ProducerDep
) -> JSONResponse:
    """One OwnTracks message, as the app posts it in HTTP mode (JSON).

    A `_type: "location"` message is a fix: `lat`, `lon`, `tst` (seconds since the epoch),
    `acc` and `alt` (metres), `vel` (km/h), `cog`, `batt` (%). The app's Device ID (the
    `X-Limit-D` header, or the topic's last part) must be the device identifier. Other
    messages (transitions, waypoints, ...) and empty posts carry no fix: `[]`, nothing
    produced. 200 with `[]` once the broker has the check-in, as OwnTracks expects.
    """
    device = await _device(request, device_secret, TrackerKind.OWNTRACKS)
    document = None
    if request.headers.get("content-length") != "0":
        body = await read_capped_body(request, MAX_EVENT_BYTES)
        # The app may post an empty message (a deleted friend): nothing to take.
        document = _json_document(body) if body.strip() else None
    checkin = owntracks_checkin(document, device, request.headers.get("x-limit-d"))
    if checkin is not None:
        await produce_checkins(request, producer, [checkin], worker_id=device.worker_id)
    return JSONResponse([])


# --------------------------------------------------------------------------- the access log

_SECRET_IN_PATH = re.compile(rf"({re.escape(TRACKERS_PATH)}/[a-z]+/){SECRET_PREFIX}[A-Za-z0-9_-]*")


class SecretRedaction(logging.Filter):
    """Cuts device secrets out of access-log lines (uvicorn logs each request's path)."""

    def filter(self, record: logging.LogRecord) -> bool:
        """Rewrite the record's arguments; keep the record."""
        if isinstance(record.args, tuple):
            record.args = tuple(
                _SECRET_IN_PATH.sub(rf"\g<1>{SECRET_PREFIX}…", arg) if isinstance(arg, str) else arg
                for arg in record.args
            )
        return True


def install_trackers(app: FastAPI) -> None:
    """Mount the tracker protocols on `app`, and keep their secrets out of the access log."""
    add_routes(app, router)
    access_log = logging.getLogger("uvicorn.access")
    if not any(isinstance(f, SecretRedaction) for f in access_log.filters):
        access_log.addFilter(SecretRedaction())
