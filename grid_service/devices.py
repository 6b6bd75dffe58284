"""A worker's tracking apps: registered, listed and revoked by an admin or its supervisor.

The HTTP side of `wangge devices`: a supervisor registers a device for a worker of its
area and hands the worker the URL and identifier to type into the app (docs/INTERFACES.md).
"""

from datetime import datetime
from typing import Annotated, Any, Final

from fastapi import APIRouter, Depends, Path, Request
from pydantic import BaseModel, Field
from sqlalchemy import Engine
from starlette.concurrency import run_in_threadpool

from geodata.accounts import OutsideArea, Principal, Role, WorkerMismatch
from geodata.db import accounts_store, devices_store
from geodata.db.engine import unit_of_work
from geodata.trackers import (
    Device,
    DeviceNotFound,
    TrackerKind,
    check_may_register,
    device_url,
    osmand_app_template,
)
from grid_service.auth import RequiredPrincipal, require_roles
from grid_service.deps import EngineDep
from grid_service.errors import ErrorBody

WorkerIdPath = Annotated[str, Path(pattern=r"^W[0-9]{5}$", description="e.g. W00042")]
IdentifierPath = Annotated[
    str, Path(pattern=r"^W[0-9]{5}-[0-9]{1,9}$", description="e.g. W00042-1")
]
RegistrarWriter = Annotated[
    Principal, Depends(require_roles(Role.SUPERVISOR, Role.ADMIN, limit_rate=True))
]

_ERRORS: Final[dict[int | str, dict[str, Any]]] = {
    400: {"model": ErrorBody, "description": "bad_request: the body is not JSON"},
    401: {"model": ErrorBody, "description": "missing_token or invalid_token"},
    403: {"model": ErrorBody, "description": "forbidden or outside_area"},
    404: {"model": ErrorBody, "description": "worker_not_found or device_not_found"},
    422: {"model": ErrorBody, "description": "invalid_request: a bad worker id, identifier, kind"},
    429: {"model": ErrorBody, "description": "rate_limited: retry after Retry-After seconds"},
}


class DeviceRegistration(BaseModel):
    """The app to register: its protocol."""

    kind: TrackerKind = Field(
        description="osmand (Traccar Client, OsmAnd) or owntracks (OwnTracks in HTTP mode)."
    )


class DevicePublic(BaseModel):
    """A registered device, without its secret."""

    identifier: str = Field(description="What the app's device identifier (Device ID) is set to.")
    kind: TrackerKind
    worker_id: str
    registered_by: str | None = Field(description="The account that registered it; null: console.")
    created_at: datetime | None
    revoked_at: datetime | None


class DeviceRegistered(DevicePublic):
    """A device just registered, with its URL: shown this once, stored nowhere."""

    url: str = Field(description="The server URL to paste into the app; it carries the secret.")
    osmand_app_url: str | None = Field(
        description="For the OsmAnd app itself: its online tracking address, placeholders included."
    )


def _public(device: Device) -> dict[str, Any]:
    return {
        "identifier": device.identifier,
        "kind": device.kind,
        "worker_id": device.worker_id,
        "registered_by": device.registered_by,
        "created_at": device.created_at,
        "revoked_at": device.revoked_at,
    }


def _check_registrar(engine: Engine, principal: Principal, worker_id: str) -> None:
    with unit_of_work(engine) as session:
        grids = accounts_store.worker_grid_codes(session, worker_id)
    check_may_register(principal.role, principal.area_prefix, worker_id, grids)


def _register(
    engine: Engine, principal: Principal, worker_id: str, kind: TrackerKind
) -> tuple[Device, str]:
    _check_registrar(engine, principal, worker_id)
    with unit_of_work(engine) as session:
        return devices_store.register_device(session, worker_id, kind, principal.name)


def _revoke(engine: Engine, principal: Principal, worker_id: str, identifier: str) -> Device:
    _check_registrar(engine, principal, worker_id)
    with unit_of_work(engine) as session:
        device = devices_store.device_by_identifier(session, identifier)
        if device.worker_id != worker_id:
            raise DeviceNotFound(f"worker {worker_id} has no device {identifier}")
        return devices_store.revoke_device(session, identifier)


def _list(engine: Engine, principal: Principal, worker_id: str) -> list[Device]:
    with unit_of_work(engine) as session:
        grids = accounts_store.worker_grid_codes(session, worker_id)
        if not principal.can_read_worker(worker_id, grids):
            if principal.role is Role.WORKER:
                raise WorkerMismatch(f"the token is {principal.worker_id}'s, not {worker_id}'s")
            raise OutsideArea(f"worker {worker_id} has no grid in the area {principal.area_prefix}")
        return devices_store.list_devices(session, worker_id)


router = APIRouter(prefix="/api/v1/workers/{worker_id}/devices", tags=["devices"])


@router.post("", status_code=201, response_model=DeviceRegistered, responses=_ERRORS)
async def register_device(
    request: Request,
    worker_id: WorkerIdPath,
    registration: DeviceRegistration,
    principal: RegistrarWriter,
    engine: EngineDep,
) -> DeviceRegistered:
    """Register a tracking app to the worker (an admin, or a supervisor of its area).

    The answer's `url` (it carries the device's secret, shown this once) and
    `identifier` are what the worker types into the app: Traccar Client's server URL
    and device identifier, or OwnTracks' URL (HTTP mode) and Device ID.
    """
    device, secret = await run_in_threadpool(
        _register, engine, principal, worker_id, registration.kind
    )
    url = device_url(str(request.base_url), device.kind, secret)
    template = (
        osmand_app_template(url, device.identifier) if device.kind is TrackerKind.OSMAND else None
    )
    return DeviceRegistered(**_public(device), url=url, osmand_app_url=template)


@router.get("", response_model=list[DevicePublic], responses=_ERRORS)
async def list_devices(
    worker_id: WorkerIdPath, principal: RequiredPrincipal, engine: EngineDep
) -> list[DevicePublic]:
    """The worker's devices, revoked ones included (the worker, its supervisor, admin)."""
    devices = await run_in_threadpool(_list, engine, principal, worker_id)
    return [DevicePublic(**_public(device)) for device in devices]


@router.delete("/{identifier}", response_model=DevicePublic, responses=_ERRORS)
async def revoke_device(
    worker_id: WorkerIdPath,
    identifier: IdentifierPath,
    principal: RegistrarWriter,
    engine: EngineDep,
) -> DevicePublic:
    """Revoke one of the worker's devices: its requests are refused from now on (within
    the API's token cache time, 5 s), and nothing it sends is produced."""
    device = await run_in_threadpool(_revoke, engine, principal, worker_id, identifier)
    return DevicePublic(**_public(device))
