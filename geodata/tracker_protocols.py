"""The tracking apps' protocols, each turned into the check-in a phone would post.

Two protocols are taken, each request turned into the very check-in document a phone
would post as JSON, which the gateway then checks and produces like any other
(`parse_checkin`): same rules, same refusals, same dead letters.

- **OsmAnd protocol**, as the OsmAnd app and Traccar Client send it and as Traccar's
  server reads it: query parameters or a form (`id`, `lat`, `lon`, `timestamp`, `speed`,
  ...), or Traccar Client 9's JSON (`{"location": {...}, "device_id": ...}`).
- **OwnTracks** in HTTP mode: its JSON messages, of which `_type: "location"` is a fix.

Units are the protocols' own (see each decoder) and are converted once, here, into the
check-in's fields: `accuracy_m`, and the extra fields `speed_mps`, `bearing_deg`,
`altitude_m`, `hdop`, `battery_pct`, `charging` and `mock` when the app sends them;
`tracker` and `tracker_device` say which protocol and device it came from. What the
check-in contract judges (coordinates, times, text) is left to it, so that the refusal
codes are the contract's own.

A fix has no event id in these protocols, so one is derived from the device, the fix's
time and position: an app that sends the same fix again (after a timeout) makes a
duplicate the pipeline skips, not a second check-in.

Pure: no web framework, no Kafka.
"""

import math
import re
import uuid
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any, Final

from geodata.events import EventRefused, RefusalReason
from geodata.trackers import Device, check_named

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
    check_named(device, params.get("id", params.get("deviceid")), "id")
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
    check_named(device, root.get("device_id"), "device_id")
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
    check_named(device, _owntracks_device(root, header_device), "the Device ID (X-Limit-D)")
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
