"""The tracking apps workers already have: their devices, and who may register them.

A worker's phone may run a generic tracker (Traccar Client, the OsmAnd app, OwnTracks)
instead of wangge's own app; what it posts is turned into check-ins by
`geodata.tracker_protocols`. A device is registered to one worker by an admin or that
worker's supervisor and is known by a secret that its URL carries (stored as its SHA-256
only, as bearer tokens are: `geodata.accounts`), and by an identifier typed into the app,
which every request must name.

Pure: no web framework, no Kafka.
"""

import re
import secrets
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Final

from geodata.accounts import (
    AccountNotFound,
    NotAuthenticated,
    OutsideArea,
    PermissionDenied,
    Role,
)

SECRET_PREFIX: Final = "wgd_"
"""Marks a device secret, so that it is told apart from a bearer token (`wg_`)."""
SECRET_BYTES: Final = 32
_SECRET = re.compile(r"wgd_[A-Za-z0-9_-]{43}")  # 32 bytes are 43 URL-safe base64 characters

TRACKERS_PATH: Final = "/api/v1/trackers"
"""Where the HTTP API serves the protocols: `{TRACKERS_PATH}/{kind}/{secret}`."""


class TrackerKind(StrEnum):
    """The protocol a device speaks; each has its own URL."""

    OSMAND = "osmand"
    OWNTRACKS = "owntracks"


# --------------------------------------------------------------------------- errors


class UnknownDevice(NotAuthenticated):
    """A tracker URL whose secret is malformed or belongs to no device."""

    code = "unknown_device"


class DeviceRevoked(PermissionDenied):
    """A device whose registration was revoked: its requests are refused, nothing produced."""

    code = "device_revoked"


class DeviceMismatch(PermissionDenied):
    """A request that does not name its device's identifier, or uses another kind's URL."""

    code = "device_mismatch"


class DeviceNotFound(AccountNotFound):
    """No device has the identifier."""

    code = "device_not_found"


# --------------------------------------------------------------------------- devices


@dataclass(frozen=True, slots=True)
class Device:
    """A tracking app registered to a worker."""

    id: int
    identifier: str
    kind: TrackerKind
    worker_id: str
    registered_by: str | None = None
    created_at: datetime | None = None
    revoked_at: datetime | None = None

    @property
    def revoked(self) -> bool:
        """Whether the registration was revoked."""
        return self.revoked_at is not None


def new_device_secret() -> str:
    """A fresh device secret: the prefix and 256 bits from the CSPRNG, URL-safe."""
    return SECRET_PREFIX + secrets.token_urlsafe(SECRET_BYTES)


def is_well_formed_secret(secret: str) -> bool:
    """Whether `secret` could be a device's; anything else is refused without a lookup."""
    return _SECRET.fullmatch(secret) is not None


def device_identifier(worker_id: str, ordinal: int) -> str:
    """The identifier of a worker's `ordinal`-th device, e.g. W00042-1: short to type."""
    return f"{worker_id}-{ordinal}"


def device_url(base_url: str, kind: TrackerKind, secret: str) -> str:
    """The URL to paste into the app: the API's public base, the protocol, the secret."""
    return f"{base_url.rstrip('/')}{TRACKERS_PATH}/{kind.value}/{secret}"


def osmand_app_template(url: str, identifier: str) -> str:
    """The OsmAnd app's own "online tracking" address for a device.

    The app fills {0} latitude, {1} longitude, {2} time in milliseconds, {3} the fix's
    accuracy in metres (it calls it hdop), {4} altitude and {6} bearing; its speed {5}
    is in m/s where the protocol's `speed` is knots, so it is left out.
    """
    query = "lat={0}&lon={1}&timestamp={2}&accuracy={3}&altitude={4}&bearing={6}"
    return f"{url}?id={identifier}&{query}"


def check_device(device: Device | None, kind: TrackerKind) -> Device:
    """The device a URL's secret found, if it may post with this protocol; else raise."""
    if device is None:
        raise UnknownDevice("no device has this URL; register one with `wangge devices add`")
    if device.revoked:
        raise DeviceRevoked(f"device {device.identifier} was revoked; register a new one")
    if device.kind is not kind:
        raise DeviceMismatch(
            f"device {device.identifier} is registered for {device.kind.value}, not {kind.value}:"
            " use the URL it was registered with"
        )
    return device


def check_named(device: Device, named: object, where: str) -> None:
    """Raise DeviceMismatch unless a request names the device's identifier (in `where`)."""
    if named is None:
        raise DeviceMismatch(
            f"the request names no device ({where}); set the app's device identifier to"
            f" {device.identifier}"
        )
    if named != device.identifier:
        shown = str(named)[:64] if isinstance(named, str) else type(named).__name__
        raise DeviceMismatch(
            f"{where} {shown!r} is not this URL's device; set it to {device.identifier}"
        )


def check_may_register(
    role: Role, area_prefix: str | None, worker_id: str, worker_grid_codes: Iterable[str]
) -> None:
    """Raise unless an admin, or a supervisor of an area the worker works in, registers."""
    if role is Role.ADMIN:
        return
    if role is Role.SUPERVISOR and area_prefix:
        if any(code.startswith(area_prefix) for code in worker_grid_codes):
            return
        raise OutsideArea(f"worker {worker_id} has no grid in the area {area_prefix}")
    raise PermissionDenied("a device is registered by an admin or the worker's supervisor")
