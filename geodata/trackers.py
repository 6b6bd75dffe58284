"""The tracking apps workers already have, as check-ins: devices, and the protocols' decoders.

A worker's phone may run a generic tracker instead of wangge's own app. Two protocols are
taken, each turned into the very check-in document a phone would post as JSON, which the
gateway then checks and produces like any other (`parse_checkin`): same rules, same
refusals, same dead letters.

- **OsmAnd protocol**, as the OsmAnd app and Traccar Client send it and as Traccar's
  server reads it: query parameters or a form (`id`, `lat`, `lon`, `timestamp`, `speed`,
  ...), or Traccar Client 9's JSON (`{"location": {...}, "device_id": ...}`).
- **OwnTracks** in HTTP mode: its JSON messages, of which `_type: "location"` is a fix.

Units are the protocols' own (see each decoder) and are converted once, here, into the
check-in's fields: `accuracy_m`, and the extra fields `speed_mps`, `bearing_deg`,
`altitude_m`, `hdop`, `battery_pct`, `charging` and `mock` when the app sends them;
`tracker` and `tracker_device` say which protocol and device it came from.

A device is registered to one worker by an admin or that worker's supervisor and is
known by a secret that its URL carries (stored as its SHA-256 only, as bearer tokens
are: `geodata.accounts`), and by an identifier typed into the app, which every request
must name. A fix has no event id in these protocols, so one is derived from the device,
the fix's time and position: an app that sends the same fix again (after a timeout)
makes a duplicate the pipeline skips, not a second check-in.

Pure: no web framework, no Kafka.
"""

import math
import re
import secrets
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Any, Final

from geodata.accounts import (
    AccountNotFound,
    NotAuthenticated,
    OutsideArea,
    PermissionDenied,
    Role,
)
from geodata.events import EventRefused, RefusalReason

SECRET_PREFIX: Final = "wgd_"
"""Marks a device secret, so that it is told apart from a bearer token (`wg_`)."""
SECRET_BYTES: Final = 32
_SECRET = re.compile(r"wgd_[A-Za-z0-9_-]{43}")  # 32 bytes are 43 URL-safe base64 characters

TRACKERS_PATH: Final = "/api/v1/trackers"
"""Where the HTTP API serves the protocols: `{TRACKERS_PATH}/{kind}/{secret}`."""

EVENT_ID_NAMESPACE: Final = uuid.UUID("4c2b1d0e-6a57-5f0c-9b1e-7d3f2a8c9e41")
"""The UUIDv5 namespace of the event ids derived from a device's fixes."""

KNOTS_TO_MPS: Final = 1852.0 / 3600.0
KMH_TO_MPS: Final = 1.0 / 3.6
_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)
_SECONDS_BELOW: Final = 2**31 - 1
"""OsmAnd timestamps below this are seconds, above it milliseconds (as Traccar reads them)."""
_DECIMAL = re.compile(r"[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?")
_NON_FINITE: Final = {"NaN": math.nan, "Infinity": math.inf, "-Infinity": -math.inf}
_TRUE: Final = frozenset({"true", "1"})
_FALSE: Final = frozenset({"false", "0"})


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


def _check_named(device: Device, named: object, where: str) -> None:
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


# --------------------------------------------------------------------------- the check-in


def _refused(reason: RefusalReason, detail: str) -> EventRefused:
    return EventRefused(reason, detail)


def _iso_time(raw: str, field: str) -> datetime:
    try:
        moment = datetime.fromisoformat(raw)
    except ValueError:
        raise _refused(
            RefusalReason.INVALID_FIELD, f"{field} {raw[:64]!r} is not an ISO 8601 time"
        ) from None
    if moment.tzinfo is None:
        raise _refused(
            RefusalReason.INVALID_FIELD,
            f"{field} {raw[:64]!r} has no UTC offset: send Z or +08:00, or seconds since the epoch",
        )
    return moment


def _epoch_time(count: int, field: str, *, milliseconds: bool) -> datetime:
    try:
        if milliseconds:
            return _EPOCH + timedelta(milliseconds=count)
        return _EPOCH + timedelta(seconds=count)
    except OverflowError:
        raise _refused(
            RefusalReason.INVALID_FIELD, f"{field} {count} is outside any calendar"
        ) from None


def _checkin(
    device: Device,
    protocol: str,
    lat: object,
    lon: object,
    recorded_at: datetime,
    accuracy_m: float | None,
    extras: Mapping[str, object],
) -> dict[str, Any]:
    """The check-in document of one fix, with an event id derived from the fix itself."""
    key = f"{device.identifier}|{recorded_at.astimezone(UTC).isoformat()}|{lat!r}|{lon!r}"
    document: dict[str, Any] = {
        "event_id": str(uuid.uuid5(EVENT_ID_NAMESPACE, key)),
        "worker_id": device.worker_id,
        "lon": lon,
        "lat": lat,
        "recorded_at": recorded_at.isoformat(),
    }
    if accuracy_m is not None:
        document["accuracy_m"] = accuracy_m
    document.update({name: value for name, value in extras.items() if value is not None})
    document["tracker"] = protocol
    document["tracker_device"] = device.identifier
    return document


def _positive(value: float | None) -> float | None:
    # The apps send 0 (Traccar Client for a GPS fix) or -1 (Traccar Client 9) for "unknown".
    return value if value is not None and value > 0 else None


def _not_negative(value: float | None) -> float | None:
    return value if value is not None and value >= 0 else None


def _rounded(value: float | None, digits: int) -> float | None:
    return None if value is None else round(value, digits)


# --------------------------------------------------------------------------- OsmAnd: query


def _query_number(params: Mapping[str, str], name: str) -> float | None:
    return _number_text(params.get(name), name)


def _number_text(raw: str | None, name: str) -> float | None:
    """A number as Traccar reads one (Java's decimal forms, NaN and Infinity); None if
    absent or empty."""
    if raw is None or raw == "":
        return None
    raw = raw.strip()
    if raw in _NON_FINITE:
        return _NON_FINITE[raw]
    if _DECIMAL.fullmatch(raw) is None:
        raise _refused(RefusalReason.INVALID_FIELD, f"{name} {raw[:64]!r} is not a number")
    return float(raw)


def _finite(value: float | None, name: str) -> float | None:
    if value is not None and not math.isfinite(value):
        raise _refused(RefusalReason.INVALID_FIELD, f"{name} must be a finite number")
    return value


def _query_flag(params: Mapping[str, str], name: str) -> bool | None:
    raw = params.get(name)
    if raw is None or raw == "":
        return None
    if raw.lower() in _TRUE:
        return True
    if raw.lower() in _FALSE:
        return False
    raise _refused(RefusalReason.INVALID_FIELD, f"{name} {raw[:64]!r} is not true or false")


def _osmand_time(raw: str | None) -> datetime:
    if raw is None or raw == "":
        raise _refused(
            RefusalReason.MISSING_FIELD, "missing parameter 'timestamp' (when the fix was taken)"
        )
    if re.fullmatch(r"-?[0-9]{1,20}", raw):
        count = int(raw)
        return _epoch_time(count, "timestamp", milliseconds=count >= _SECONDS_BELOW)
    if "T" in raw:
        return _iso_time(raw, "timestamp")
    raise _refused(
        RefusalReason.INVALID_FIELD,
        f"timestamp {raw[:64]!r} is neither seconds since the epoch nor ISO 8601 with an offset",
    )


def osmand_checkin(params: Mapping[str, str], device: Device) -> dict[str, Any]:
    """The check-in of an OsmAnd-protocol request's parameters (the query, or the form).

    As Traccar's decoder reads them: `id` or `deviceid`; `lat` and `lon`, or `location`
    as "lat,lon"; `timestamp` in seconds since the epoch, in milliseconds from 2^31 on
    (the OsmAnd app sends milliseconds), or ISO 8601; `speed` in knots (what Traccar
    Client sends, and Traccar's default); `bearing` or `heading` in degrees; `altitude`
    and `accuracy` in metres; `hdop`; `batt` in percent; `charge` and `mock` as true or
    false. Other parameters (cell towers, Wi-Fi, an app's own) are not kept. Unlike
    Traccar, a request without a timestamp or a position is refused: a check-in's time
    and place are the fix's, never the server's guess.
    """
    _check_named(device, params.get("id", params.get("deviceid")), "id")
    lat, lon = _query_number(params, "lat"), _query_number(params, "lon")
    if "location" in params:
        parts = params["location"].split(",")
        if len(parts) != 2:
            raise _refused(RefusalReason.INVALID_FIELD, "location must be 'latitude,longitude'")
        lat, lon = (_number_text(part, "location") for part in parts)
    if lat is None or lon is None:
        missing = "lat" if lat is None else "lon"
        raise _refused(RefusalReason.MISSING_FIELD, f"missing parameter {missing!r}")
    recorded_at = _osmand_time(params.get("timestamp"))
    knots = _not_negative(_finite(_query_number(params, "speed"), "speed"))
    bearing = _number_text(params.get("bearing", params.get("heading")), "bearing")
    extras = {
        "speed_mps": None if knots is None else round(knots * KNOTS_TO_MPS, 3),
        "bearing_deg": _finite(bearing, "bearing"),
        "altitude_m": _finite(_query_number(params, "altitude"), "altitude"),
        "hdop": _finite(_query_number(params, "hdop"), "hdop"),
        "battery_pct": _finite(_query_number(params, "batt"), "batt"),
        "charging": _query_flag(params, "charge"),
        "mock": _query_flag(params, "mock"),
    }
    accuracy = _positive(_finite(_query_number(params, "accuracy"), "accuracy"))
    return _checkin(device, "osmand", lat, lon, recorded_at, accuracy, extras)


# --------------------------------------------------------------------------- JSON helpers


def _object(value: object, name: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise _refused(RefusalReason.INVALID_FIELD, f"{name} must be a JSON object")
    return value


def _json_number(document: Mapping[str, Any], name: str, where: str) -> float | None:
    value = document.get(name)
    if value is None:
        return None
    # bool is an int in Python, never a number in JSON.
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise _refused(RefusalReason.INVALID_FIELD, f"{where}{name} must be a number")
    if not math.isfinite(value):
        raise _refused(RefusalReason.INVALID_FIELD, f"{where}{name} must be a finite number")
    return float(value)


def _json_flag(document: Mapping[str, Any], name: str, where: str) -> bool | None:
    value = document.get(name)
    if value is None or isinstance(value, bool):
        return value
    raise _refused(RefusalReason.INVALID_FIELD, f"{where}{name} must be true or false")


# --------------------------------------------------------------------------- OsmAnd: JSON


def traccar_json_checkin(document: object, device: Device) -> dict[str, Any]:
    """The check-in of Traccar Client 9's JSON body (Traccar's "JSON format").

    `device_id`; `location.timestamp` in ISO 8601; `location.coords` with `latitude`
    and `longitude` in degrees, `accuracy` and `altitude` in metres, `speed` in m/s and
    `heading` in degrees (a negative speed, heading or accuracy means unknown);
    `location.battery` with `level` from 0 to 1 (-1 unknown) and `is_charging`;
    `location.mock`. A location without coordinates is refused (Traccar would take
    the last known position instead), as is a batch (a list of locations).
    """
    root = _object(document, "the body")
    _check_named(device, root.get("device_id"), "device_id")
    if "location" not in root:
        raise _refused(RefusalReason.MISSING_FIELD, "missing field 'location'")
    if isinstance(root["location"], list):
        raise _refused(
            RefusalReason.INVALID_FIELD, "location must be one object; batches are not taken"
        )
    location = _object(root["location"], "location")
    stamp = location.get("timestamp")
    if stamp is None:
        raise _refused(RefusalReason.MISSING_FIELD, "missing field 'location.timestamp'")
    if not isinstance(stamp, str):
        raise _refused(RefusalReason.INVALID_FIELD, "location.timestamp must be ISO 8601 text")
    recorded_at = _iso_time(stamp, "location.timestamp")
    if "coords" not in location:
        raise _refused(RefusalReason.MISSING_FIELD, "missing field 'location.coords'")
    coords = _object(location["coords"], "location.coords")
    for name in ("latitude", "longitude"):
        if name not in coords:
            raise _refused(RefusalReason.MISSING_FIELD, f"missing field 'location.coords.{name}'")
    where = "location.coords."
    speed = _not_negative(_json_number(coords, "speed", where))
    battery = _object(location.get("battery") or {}, "location.battery")
    level = _not_negative(_json_number(battery, "level", "location.battery."))
    extras = {
        "speed_mps": _rounded(speed, 3),
        "bearing_deg": _not_negative(_json_number(coords, "heading", where)),
        "altitude_m": _json_number(coords, "altitude", where),
        "battery_pct": _rounded(None if level is None else level * 100, 1),
        "charging": _json_flag(battery, "is_charging", "location.battery."),
        "mock": _json_flag(location, "mock", "location."),
    }
    accuracy = _positive(_json_number(coords, "accuracy", where))
    # Latitude and longitude go on as sent: the check-in's own rules judge them.
    return _checkin(
        device, "traccar-json", coords["latitude"], coords["longitude"], recorded_at, accuracy,
        extras,
    )  # fmt: skip


# --------------------------------------------------------------------------- OwnTracks


def _owntracks_device(document: Mapping[str, Any], header_device: str | None) -> object:
    # The apps send their Device ID as X-Limit-D, and the topic owntracks/<user>/<device>.
    if header_device is not None:
        return header_device
    topic = document.get("topic")
    if isinstance(topic, str):
        return topic.rsplit("/", 1)[-1]
    return None


def owntracks_checkin(
    document: object, device: Device, header_device: str | None
) -> dict[str, Any] | None:
    """The check-in of an OwnTracks HTTP message, or None for a message that is no fix.

    Of OwnTracks' JSON (its booklet): `_type` "location" is a fix, with `lat` and `lon`
    in degrees, `tst` the fix's time in seconds since the epoch, `acc` and `alt` in
    metres, `vel` in km/h, `cog` in degrees, `batt` in percent and `bs` the battery
    status (2 charging, 3 full). Other types (transitions, waypoints, cards, ...) and
    empty posts carry no fix and post nothing; an encrypted message is refused, as
    wangge does not hold the app's key. The device is named by the X-Limit-D header or
    the topic's last part (the app's Device ID).
    """
    if document is None:
        return None
    root = _object(document, "the body")
    kind = root.get("_type")
    if kind is None:
        raise _refused(RefusalReason.MISSING_FIELD, "missing field '_type'")
    if kind == "encrypted":
        raise _refused(
            RefusalReason.INVALID_FIELD,
            "encrypted messages are not taken: turn the app's encryption off",
        )
    if kind != "location":
        return None
    _check_named(device, _owntracks_device(root, header_device), "the Device ID (X-Limit-D)")
    for name in ("lat", "lon", "tst"):
        if name not in root:
            raise _refused(RefusalReason.MISSING_FIELD, f"missing field {name!r}")
    tst = root["tst"]
    if isinstance(tst, bool) or not isinstance(tst, int):
        raise _refused(RefusalReason.INVALID_FIELD, "tst must be whole seconds since the epoch")
    recorded_at = _epoch_time(tst, "tst", milliseconds=False)
    velocity = _not_negative(_json_number(root, "vel", ""))
    status = _json_number(root, "bs", "")
    extras = {
        "speed_mps": _rounded(None if velocity is None else velocity * KMH_TO_MPS, 3),
        "bearing_deg": _json_number(root, "cog", ""),
        "altitude_m": _json_number(root, "alt", ""),
        "battery_pct": _json_number(root, "batt", ""),
        "charging": None if status in (None, 0) else status in (2, 3),
    }
    accuracy = _positive(_json_number(root, "acc", ""))
    return _checkin(device, "owntracks", root["lat"], root["lon"], recorded_at, accuracy, extras)
