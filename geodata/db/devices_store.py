"""Tracker devices in PostGIS (geodata.trackers); functions flush, the caller commits."""

from sqlalchemy import func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from geodata.accounts import AccountNotFound, Role, hash_token
from geodata.db.models import Account, TrackerDevice, Worker
from geodata.errors import WorkerNotFound
from geodata.trackers import (
    Device,
    DeviceNotFound,
    TrackerKind,
    device_identifier,
    new_device_secret,
)

_TRIES = 5
"""Identifiers tried before giving up when concurrent registrations take the next one."""


def _device(device: TrackerDevice) -> Device:
    return Device(
        id=device.id,
        identifier=device.identifier,
        kind=TrackerKind(device.kind),
        worker_id=device.worker_id,
        registered_by=device.registered_by,
        created_at=device.created_at,
        revoked_at=device.revoked_at,
    )


def register_device(
    session: Session, worker_id: str, kind: TrackerKind, registered_by: str | None
) -> tuple[Device, str]:
    """Register a device to the worker; return it and its secret, which is stored nowhere."""
    if session.get(Worker, worker_id) is None:
        raise WorkerNotFound(f"no worker has the id {worker_id!r}")
    secret = new_device_secret()
    # Revoked devices count too: an identifier is never given twice.
    taken = session.execute(
        select(func.count()).where(TrackerDevice.worker_id == worker_id)
    ).scalar_one()
    for ordinal in range(taken + 1, taken + 1 + _TRIES):
        device = TrackerDevice(
            identifier=device_identifier(worker_id, ordinal),
            kind=kind.value,
            worker_id=worker_id,
            secret_hash=hash_token(secret),
            registered_by=registered_by,
        )
        try:
            # A savepoint, so that an identifier taken meanwhile leaves the session usable.
            with session.begin_nested():
                session.add(device)
        except IntegrityError:
            continue
        session.refresh(device)
        return _device(device), secret
    raise RuntimeError(f"no free device identifier for {worker_id} after {_TRIES} tries")


def device_by_secret_hash(session: Session, secret_hash: str) -> Device | None:
    """The device whose secret has this hash, revoked or not; None if there is none."""
    found = session.execute(
        select(TrackerDevice).where(TrackerDevice.secret_hash == secret_hash)
    ).scalar_one_or_none()
    return None if found is None else _device(found)


def device_by_identifier(session: Session, identifier: str) -> Device:
    """The device with this identifier; DeviceNotFound if there is none."""
    found = session.execute(
        select(TrackerDevice).where(TrackerDevice.identifier == identifier)
    ).scalar_one_or_none()
    if found is None:
        raise DeviceNotFound(f"no device has the identifier {identifier!r}")
    return _device(found)


def list_devices(session: Session, worker_id: str | None = None) -> list[Device]:
    """Every device (of one worker when given), revoked ones included, oldest first."""
    query = select(TrackerDevice).order_by(TrackerDevice.worker_id, TrackerDevice.id)
    if worker_id is not None:
        query = query.where(TrackerDevice.worker_id == worker_id)
    return [_device(device) for device in session.execute(query).scalars()]


def revoke_device(session: Session, identifier: str) -> Device:
    """Revoke a device (again is harmless); return it as it now stands."""
    session.execute(
        update(TrackerDevice)
        .where(TrackerDevice.identifier == identifier, TrackerDevice.revoked_at.is_(None))
        .values(revoked_at=func.now())
    )
    return device_by_identifier(session, identifier)


def registrar(session: Session, name: str) -> tuple[Role, str | None]:
    """The role and area of the account named `name`, who registers a device."""
    row = session.execute(
        select(Account.role, Account.area_prefix).where(Account.name == name)
    ).one_or_none()
    if row is None:
        raise AccountNotFound(f"no account is named {name!r}")
    return Role(row.role), row.area_prefix
