"""The tracker protocols' decoders against the examples of the protocols' own documentation
and source, and the check-ins they make against the check-in contract.

Sources of the examples and units (each test names its own):
- Traccar's OsmAnd decoder and its tests: traccar/traccar,
  src/main/java/org/traccar/protocol/OsmAndProtocolDecoder.java and
  src/test/java/org/traccar/protocol/OsmAndProtocolDecoderTest.java; its documentation
  page https://www.traccar.org/osmand/ (the JSON format: speed in m/s, battery level 0-1).
- Traccar Client: traccar/traccar-client-android, app/src/main/java/org/traccar/client/
  Position.kt (speed converted to knots; accuracy 0 for a GPS fix) and ProtocolFormatter.kt
  (the query it sends); traccar/traccar-client-sdk, core/src/commonMain/kotlin/org/traccar/
  client/HttpUploader.kt (Traccar Client 9's form POST, speed in knots).
- The OsmAnd app: osmandapp/OsmAnd, OsmAnd/src/net/osmand/plus/plugins/monitoring/
  LiveMonitoringHelper.java ({2} is the time in milliseconds, {3} the accuracy in metres).
- OwnTracks: owntracks/booklet, docs/tech/json.md (`tst` seconds, `acc`/`alt` metres, `vel`
  km/h, `batt` percent), docs/tech/http.md (the answer `[]`, empty posts), and
  docs/features/traccar.md (the HTTP payload examples).
"""

import json
import logging
import math
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import pytest
from hypothesis import given
from hypothesis import strategies as st

from geodata.accounts import OutsideArea, PermissionDenied, Role
from geodata.events import EventRefused, RefusalReason, parse_checkin
from geodata.tracker_protocols import (
    KNOTS_TO_MPS,
    osmand_checkin,
    owntracks_checkin,
    traccar_json_checkin,
)
from geodata.trackers import (
    Device,
    DeviceMismatch,
    DeviceRevoked,
    TrackerKind,
    UnknownDevice,
    check_device,
    check_may_register,
    device_url,
    is_well_formed_secret,
    new_device_secret,
    osmand_app_template,
)
from grid_service.trackers import SecretRedaction

NOW = datetime(2026, 1, 1, tzinfo=UTC)


def device(identifier: str, kind: TrackerKind = TrackerKind.OSMAND) -> Device:
    """A device of worker W00042 with the identifier an example uses."""
    return Device(id=7, identifier=identifier, kind=kind, worker_id="W00042")


def query(url: str) -> dict[str, str]:
    """The parameters of an example request, as the server reads them (last one wins)."""
    return dict(parse_qsl(urlsplit(url).query, keep_blank_values=True))


def accepted(document: dict[str, Any]) -> dict[str, Any]:
    """The document as the gateway would check it: it must be a valid check-in."""
    checkin = parse_checkin(json.dumps(document).encode(), now=NOW)
    assert checkin.worker_id == "W00042"
    return document


def refusal(call: Any) -> tuple[RefusalReason, str]:
    """The reason and detail of the EventRefused that `call()` raises."""
    with pytest.raises(EventRefused) as caught:
        call()
    return caught.value.reason, caught.value.detail


# --------------------------------------------------------------------------- OsmAnd, query


def test_traccars_query_example_with_iso_time_is_a_checkin_at_that_utc_time() -> None:
    """OsmAndProtocolDecoderTest.testDecodeQuery: ISO 8601 with Z, hdop, altitude, speed."""
    url = (
        "/?id=902064&lat=42.06288&lon=-88.23412&timestamp=2016-01-27T18%3A55%3A47Z"
        "&hdop=6.0&altitude=224.0&speed=0.0"
    )
    document = accepted(osmand_checkin(query(url), device("902064")))
    assert (document["lat"], document["lon"]) == (42.06288, -88.23412)
    assert document["recorded_at"] == "2016-01-27T18:55:47+00:00"
    assert (document["hdop"], document["altitude_m"], document["speed_mps"]) == (6.0, 224.0, 0.0)
    assert "accuracy_m" not in document  # hdop is no distance
    assert (document["tracker"], document["tracker_device"]) == ("osmand", "902064")


@pytest.mark.parametrize(
    ("timestamp", "expected"),
    [
        # testDecodeQuery: seconds, and milliseconds (what the OsmAnd app's {2} sends).
        ("1377177267", "2013-08-22T13:14:27+00:00"),
        ("1442068686579", "2015-09-12T14:38:06.579000+00:00"),
    ],
)
def test_epoch_timestamps_are_seconds_below_two_to_the_31_and_milliseconds_above(
    timestamp: str, expected: str
) -> None:
    """OsmAndProtocolDecoder: a number below Integer.MAX_VALUE is seconds, else ms."""
    params = {"id": "123456", "lat": "60.0", "lon": "30.0", "timestamp": timestamp}
    assert accepted(osmand_checkin(params, device("123456")))["recorded_at"] == expected


def test_location_parameter_is_latitude_then_longitude() -> None:
    """testDecodeQuery: `location=60.0,30.0`, latitude first."""
    document = osmand_checkin(
        query("/?id=123456&timestamp=1377177267&location=60.0,30.0"), device("123456")
    )
    assert (accepted(document)["lat"], document["lon"]) == (60.0, 30.0)


def test_speed_is_knots_as_traccar_reads_it_and_bearing_degrees() -> None:
    """testDecodeQuery's last example: speed=40 (knots by default in the decoder)."""
    url = (
        "/?id=123456789012345&timestamp=1504763810&lat=40.7232948571&lon=-74.0061408571"
        "&bearing=7.19889788244&speed=40&ignition=true&rpm=933&fuel=24"
    )
    document = accepted(osmand_checkin(query(url), device("123456789012345")))
    assert document["speed_mps"] == pytest.approx(40 * 1852 / 3600, abs=1e-3)
    assert document["bearing_deg"] == pytest.approx(7.19889788244)
    # A vehicle tracker's own parameters are not kept in a worker's check-in.
    assert not {"ignition", "rpm", "fuel"} & set(document)


def test_traccar_client_request_keeps_battery_and_takes_zero_accuracy_as_unknown() -> None:
    """Traccar Client (ProtocolFormatter.kt): id, timestamp in seconds, lat, lon, speed in
    knots (Position.kt multiplies m/s by 1.943844), bearing, altitude, accuracy (0.0 for a
    GPS fix, Position.kt), batt; `mock=true` only for a mock location."""
    params = query(
        "/?id=W00042-1&timestamp=1599441300&lat=34.3671&lon=107.1523&speed=2.7215816"
        "&bearing=93.0&altitude=611.0&accuracy=0.0&batt=87.0&mock=true"
    )
    document = accepted(osmand_checkin(params, device("W00042-1")))
    assert document["recorded_at"] == "2020-09-07T01:15:00+00:00"
    assert document["speed_mps"] == pytest.approx(1.4, abs=1e-3)  # 2.72 kn: a brisk walk
    assert "accuracy_m" not in document
    assert (document["battery_pct"], document["mock"]) == (87.0, True)


def test_traccar_client_9_form_post_has_the_same_fields() -> None:
    """Traccar Client 9 (HttpUploader.kt): a form with id, lat, lon, timestamp in seconds,
    accuracy, altitude, speed in knots (rounded to 0.01), bearing, batt, charge."""
    form = (
        "id=W00042-1&lat=34.3671&lon=107.1523&timestamp=1599441300&accuracy=8.0"
        "&altitude=611.0&speed=2.72&bearing=93.0&batt=87&charge=false"
    )
    document = accepted(osmand_checkin(dict(parse_qsl(form)), device("W00042-1")))
    assert document["accuracy_m"] == 8.0
    assert document["speed_mps"] == round(2.72 * KNOTS_TO_MPS, 3)
    assert (document["battery_pct"], document["charging"]) == (87.0, False)


def test_osmand_apps_own_template_fills_accuracy_and_milliseconds() -> None:
    """LiveMonitoringHelper.java: {2} is the time in ms, {3} location.getAccuracy() (m)."""
    template = osmand_app_template("https://wangge.example.cn/api/v1/trackers/osmand/x", "W00042-1")
    filled = template.format("34.3671", "107.1523", "1599441300000", "6.0", "611.0", "", "93.0")
    document = accepted(osmand_checkin(query(filled), device("W00042-1")))
    assert document["recorded_at"] == "2020-09-07T01:15:00+00:00"
    assert (document["accuracy_m"], document["bearing_deg"]) == (6.0, 93.0)


@pytest.mark.parametrize(
    ("params", "reason", "says"),
    [
        # testDecodeQuery's "yyyy-MM-dd HH:mm:ss" example: no offset, so no instant.
        ({"timestamp": "2014-06-04 09:10:11"}, RefusalReason.INVALID_FIELD, "neither"),
        ({"timestamp": "2016-01-27T18:55:47"}, RefusalReason.INVALID_FIELD, "no UTC offset"),
        ({"timestamp": "99999999999999999999"}, RefusalReason.INVALID_FIELD, "calendar"),
        ({"timestamp": ""}, RefusalReason.MISSING_FIELD, "timestamp"),
        ({"lat": ""}, RefusalReason.MISSING_FIELD, "'lat'"),
        ({"lon": "east"}, RefusalReason.INVALID_FIELD, "not a number"),
        ({"speed": "fast"}, RefusalReason.INVALID_FIELD, "speed"),
        ({"speed": "NaN"}, RefusalReason.INVALID_FIELD, "finite"),
        ({"batt": "1_000"}, RefusalReason.INVALID_FIELD, "batt"),
        ({"mock": "maybe"}, RefusalReason.INVALID_FIELD, "true or false"),
        ({"location": "60.0"}, RefusalReason.INVALID_FIELD, "latitude,longitude"),
    ],
)
def test_malformed_osmand_parameters_are_refused_with_the_checkin_codes(
    params: dict[str, str], reason: RefusalReason, says: str
) -> None:
    base = {"id": "123456", "lat": "60.0", "lon": "30.0", "timestamp": "1377177267"}
    got, detail = refusal(lambda: osmand_checkin(base | params, device("123456")))
    assert got is reason
    assert says in detail


def test_coordinates_out_of_range_go_on_for_the_checkin_rules_to_refuse() -> None:
    """What the check-in contract judges (range, NaN, null island) is left to it, so the
    code is the one `POST /api/v1/checkins` and the consumers give."""
    base = {"id": "123456", "timestamp": "1377177267"}
    for lat, lon in (("91", "30.0"), ("NaN", "30.0"), ("0", "0")):
        document = osmand_checkin(base | {"lat": lat, "lon": lon}, device("123456"))
        got, _ = refusal(lambda d=document: parse_checkin(_raw(d), now=NOW))
        assert got is RefusalReason.COORDINATE_OUT_OF_RANGE


def _raw(document: dict[str, Any]) -> bytes:
    # As the gateway serialises it: a NaN stays a NaN token.
    return json.dumps(document).encode()


@pytest.mark.parametrize(
    "params",
    [
        # testDecodeQuery: a request without id is refused (Traccar: 400).
        {"timestamp": "1377177267", "lat": "60.0", "lon": "30.0"},
        {"id": "654321", "timestamp": "1377177267", "lat": "60.0", "lon": "30.0"},
    ],
)
def test_a_request_must_name_its_devices_identifier(params: dict[str, str]) -> None:
    with pytest.raises(DeviceMismatch, match="123456"):
        osmand_checkin(params, device("123456"))


def test_deviceid_names_the_device_as_id_does() -> None:
    """testDecodeQuery: `deviceid=123456` instead of `id`."""
    params = {"deviceid": "123456", "timestamp": "1377177267", "lat": "60.0", "lon": "30.0"}
    assert accepted(osmand_checkin(params, device("123456")))["lat"] == 60.0


# --------------------------------------------------------------------------- Traccar JSON

TRACCAR_JSON_EXAMPLES = [
    # OsmAndProtocolDecoderTest.testDecodeJson, the first, third and fourth bodies.
    '{"location":{"timestamp":"2025-06-15T13:45:12.862Z","coords":{"latitude":37.4219983,'
    '"longitude":-122.084,"accuracy":5,"speed":0,"heading":-1,"altitude":5},"is_moving":false,'
    '"odometer":0,"event":"motionchange","battery":{"level":1,"is_charging":false},'
    '"activity":{"type":"still"},"extras":{},"_":"&id=48241179&lat=37.4219983&lon=-122.084'
    '&timestamp=2025-06-15T13:45:12.862Z&"},"device_id":"48241179"}',
    '{"location":{"extras":{},"mock":true,"coords":{"speed_accuracy":-1,"speed":-1,'
    '"longitude":-122.406417,"ellipsoidal_altitude":0,"floor":null,"heading_accuracy":-1,'
    '"latitude":37.785834000000001,"accuracy":5,"altitude_accuracy":-1,"altitude":0,'
    '"heading":-1},"is_moving":false,"age":188,"odometer":0,"uuid":'
    '"2FB04C65-99CF-42AB-8DD3-EBCB4B108BF8","event":"motionchange","battery":{"level":-1,'
    '"is_charging":false},"activity":{"type":"unknown","confidence":100},'
    '"timestamp":"2025-05-09T04:11:30.579Z"},"device_id":"658765"}',
    '{"location":{"event":"motionchange","is_moving":false,"uuid":'
    '"0e9a2473-a9a7-4c00-997b-fb97d2154e75","timestamp":"2021-07-21T08:06:34.444Z",'
    '"odometer":0,"coords":{"latitude":-6.1148096,"longitude":106.6837015,"accuracy":3.8,'
    '"speed":18.67,"speed_accuracy":0.26,"heading":63,"heading_accuracy":0.28,"altitude":35.7,'
    '"altitude_accuracy":3.8},"activity":{"type":"still","confidence":100},"battery":'
    '{"is_charging":false,"level":0.79},"extras":{}},"device_id":"8737767034"}',
]


def test_traccar_client_9_json_fields_and_units() -> None:
    """testDecodeJson's first body; https://www.traccar.org/osmand/ (speed m/s, level 0-1)."""
    body = json.loads(TRACCAR_JSON_EXAMPLES[0])
    document = accepted(traccar_json_checkin(body, device("48241179")))
    assert (document["lat"], document["lon"]) == (37.4219983, -122.084)
    assert document["recorded_at"] == "2025-06-15T13:45:12.862000+00:00"
    assert (document["accuracy_m"], document["altitude_m"]) == (5.0, 5.0)
    assert document["speed_mps"] == 0.0
    assert "bearing_deg" not in document  # heading -1: unknown
    assert (document["battery_pct"], document["charging"]) == (100.0, False)
    assert document["tracker"] == "traccar-json"


def test_traccar_json_unknowns_are_left_out_and_mock_is_kept() -> None:
    """testDecodeJson's third body: speed, heading and battery level -1, mock true."""
    document = accepted(
        traccar_json_checkin(json.loads(TRACCAR_JSON_EXAMPLES[1]), device("658765"))
    )
    assert not {"speed_mps", "bearing_deg", "battery_pct"} & set(document)
    assert document["mock"] is True


def test_traccar_json_speed_in_metres_per_second_stays_as_is() -> None:
    """testDecodeJson's fourth body: 18.67 m/s, heading 63, battery 0.79."""
    body = json.loads(TRACCAR_JSON_EXAMPLES[2])
    document = accepted(traccar_json_checkin(body, device("8737767034")))
    assert (document["speed_mps"], document["bearing_deg"]) == (18.67, 63.0)
    assert document["battery_pct"] == 79.0


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        (lambda b: b["location"].pop("coords"), RefusalReason.MISSING_FIELD),
        (lambda b: b["location"].pop("timestamp"), RefusalReason.MISSING_FIELD),
        (lambda b: b.pop("location"), RefusalReason.MISSING_FIELD),
        (lambda b: b.update(location=[b["location"]]), RefusalReason.INVALID_FIELD),
        (lambda b: b["location"]["coords"].update(speed="0"), RefusalReason.INVALID_FIELD),
        (lambda b: b["location"].update(timestamp=1750000000), RefusalReason.INVALID_FIELD),
        (lambda b: b["location"].update(mock="yes"), RefusalReason.INVALID_FIELD),
    ],
)
def test_malformed_traccar_json_is_refused(change: Any, reason: RefusalReason) -> None:
    body = json.loads(TRACCAR_JSON_EXAMPLES[0])
    change(body)
    assert refusal(lambda: traccar_json_checkin(body, device("48241179")))[0] is reason


def test_a_latitude_sent_as_text_is_refused_by_the_checkin_rules() -> None:
    body = json.loads(TRACCAR_JSON_EXAMPLES[0])
    body["location"]["coords"]["latitude"] = "37.42"
    document = traccar_json_checkin(body, device("48241179"))
    got, _ = refusal(lambda: parse_checkin(_raw(document), now=NOW))
    assert got is RefusalReason.INVALID_FIELD


def test_traccar_json_names_its_device_in_device_id() -> None:
    with pytest.raises(DeviceMismatch):
        traccar_json_checkin(json.loads(TRACCAR_JSON_EXAMPLES[0]), device("W00042-1"))


# --------------------------------------------------------------------------- OwnTracks

OWNTRACKS_FULL = {
    # docs/features/traccar.md: "an HTTP payload that an OwnTracks app produces".
    "cog": 271,
    "batt": 41,
    "lon": 2.29513,
    "acc": 5,
    "vel": 61,
    "vac": 21,
    "lat": 48.85833,
    "t": "u",
    "tst": 1497508651,
    "alt": 167,
    "_type": "location",
    "topic": "owntracks/jane/iphone",
    "p": 71,
    "tid": "JJ",
}


def test_owntracks_location_fields_and_units() -> None:
    """docs/tech/json.md: tst epoch seconds, acc and alt metres, vel km/h, batt percent;
    docs/features/traccar.md gives this fix's time as 2017-06-15T06:37:31Z."""
    document = accepted(owntracks_checkin(OWNTRACKS_FULL, device("iphone"), None) or {})
    assert (document["lat"], document["lon"]) == (48.85833, 2.29513)
    assert document["recorded_at"] == "2017-06-15T06:37:31+00:00"
    assert (document["accuracy_m"], document["altitude_m"]) == (5.0, 167.0)
    assert document["speed_mps"] == pytest.approx(61 / 3.6, abs=1e-3)
    assert (document["bearing_deg"], document["battery_pct"]) == (271.0, 41.0)
    assert document["tracker"] == "owntracks"


def test_owntracks_minimal_payload_names_the_device_by_its_header() -> None:
    """docs/features/traccar.md's minimal payload (tid, no topic); docs/tech/http.md: the
    app sends its device name as X-Limit-D."""
    minimal = {"lon": 2.29513, "lat": 48.85833, "_type": "location", "tst": 1497476456, "tid": "JJ"}
    phone = device("W00042-2", TrackerKind.OWNTRACKS)
    assert owntracks_checkin(minimal, phone, "W00042-2") is not None
    with pytest.raises(DeviceMismatch, match="names no device"):
        owntracks_checkin(minimal, phone, None)
    with pytest.raises(DeviceMismatch, match="'JJ'"):
        owntracks_checkin(minimal, phone, "JJ")


def test_owntracks_topic_names_the_device_when_no_header_does() -> None:
    """docs/tech/json.md: `topic` (HTTP payloads only) is owntracks/<user>/<device>."""
    payload = {"lon": 2.29513, "lat": 48.85833, "_type": "location", "tst": 1497476456}
    payload["topic"] = "owntracks/jane/phone"
    assert owntracks_checkin(payload, device("phone"), None) is not None


@pytest.mark.parametrize(
    "message",
    [
        None,  # docs/tech/http.md: a zero-length payload may be posted
        {"_type": "transition", "event": "enter", "tst": 1497476456, "lat": 1.0, "lon": 1.0},
        {"_type": "waypoint", "desc": "Home", "tst": 1497476456},
        {"_type": "lwt", "tst": 1497476456},
    ],
)
def test_owntracks_messages_without_a_fix_post_nothing(message: Any) -> None:
    assert owntracks_checkin(message, device("iphone"), "iphone") is None


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        ({"lat": 48.85833, "lon": 2.29513, "tst": 1497476456}, RefusalReason.MISSING_FIELD),
        ({"_type": "encrypted", "data": "c2VjcmV0"}, RefusalReason.INVALID_FIELD),
        ({"_type": "location", "lat": 48.85833, "lon": 2.29513}, RefusalReason.MISSING_FIELD),
        ({**OWNTRACKS_FULL, "tst": "1497508651"}, RefusalReason.INVALID_FIELD),
        ({**OWNTRACKS_FULL, "tst": 1497508651.5}, RefusalReason.INVALID_FIELD),
        ({**OWNTRACKS_FULL, "vel": "61"}, RefusalReason.INVALID_FIELD),
        ({**OWNTRACKS_FULL, "acc": True}, RefusalReason.INVALID_FIELD),
        ([OWNTRACKS_FULL], RefusalReason.INVALID_FIELD),
    ],
)
def test_malformed_owntracks_messages_are_refused(payload: Any, reason: RefusalReason) -> None:
    assert refusal(lambda: owntracks_checkin(payload, device("iphone"), "iphone"))[0] is reason


# --------------------------------------------------------------------------- event ids


def test_the_same_fix_sent_again_gets_the_same_event_id_and_another_fix_another() -> None:
    params = {"id": "W00042-1", "lat": "34.3671", "lon": "107.1523", "timestamp": "1599441300"}
    phone = device("W00042-1")
    first, again = osmand_checkin(params, phone), osmand_checkin(dict(params), phone)
    assert first["event_id"] == again["event_id"]
    assert uuid.UUID(first["event_id"]).version == 5
    moved = osmand_checkin(params | {"lat": "34.3672"}, phone)
    later = osmand_checkin(params | {"timestamp": "1599441301"}, phone)
    other = osmand_checkin(params | {"id": "W00042-2"}, device("W00042-2"))
    assert len({first["event_id"], moved["event_id"], later["event_id"], other["event_id"]}) == 4


def test_the_same_instant_in_another_format_is_the_same_fix() -> None:
    phone = device("W00042-1")
    base = {"id": "W00042-1", "lat": "34.3671", "lon": "107.1523"}
    seconds = osmand_checkin(base | {"timestamp": "1599441300"}, phone)
    iso = osmand_checkin(base | {"timestamp": "2020-09-07T09:15:00+08:00"}, phone)
    assert seconds["event_id"] == iso["event_id"]


@given(
    lat=st.floats(-90, 90, allow_nan=False).filter(lambda v: v != 0),
    lon=st.floats(-180, 180, allow_nan=False),
    seconds=st.integers(946684800, 1_900_000_000),
    knots=st.floats(0, 500, allow_nan=False),
)
def test_any_valid_fix_in_the_query_form_is_the_checkin_of_that_fix(
    lat: float, lon: float, seconds: int, knots: float
) -> None:
    params = {
        "id": "W00042-1",
        "lat": repr(lat),
        "lon": repr(lon),
        "timestamp": str(seconds),
        "speed": repr(knots),
    }
    checkin = parse_checkin(
        _raw(osmand_checkin(params, device("W00042-1"))), now=datetime(2031, 1, 1, tzinfo=UTC)
    )
    assert (checkin.lat, checkin.lon) == (lat, lon)
    assert checkin.recorded_at == datetime(1970, 1, 1, tzinfo=UTC) + timedelta(seconds=seconds)
    extras = checkin.model_extra or {}
    assert math.isclose(extras["speed_mps"], knots * KNOTS_TO_MPS, abs_tol=1e-3)


# --------------------------------------------------------------------------- devices


def test_device_secrets_are_well_formed_and_unlike_tokens() -> None:
    secret = new_device_secret()
    assert is_well_formed_secret(secret)
    assert secret.startswith("wgd_")
    assert secret != new_device_secret()
    assert not is_well_formed_secret("wg_" + secret[4:])
    url = device_url("https://wangge.example.cn/", TrackerKind.OWNTRACKS, secret)
    assert url == f"https://wangge.example.cn/api/v1/trackers/owntracks/{secret}"


def test_check_device_refuses_unknown_revoked_and_other_kinds() -> None:
    phone = device("W00042-1")
    assert check_device(phone, TrackerKind.OSMAND) is phone
    with pytest.raises(UnknownDevice):
        check_device(None, TrackerKind.OSMAND)
    revoked = Device(7, "W00042-1", TrackerKind.OSMAND, "W00042", revoked_at=NOW)
    with pytest.raises(DeviceRevoked):
        check_device(revoked, TrackerKind.OSMAND)
    with pytest.raises(DeviceMismatch, match="registered for osmand"):
        check_device(phone, TrackerKind.OWNTRACKS)


def test_only_an_admin_or_a_supervisor_of_the_workers_area_registers() -> None:
    grids = ["610302001001001"]
    check_may_register(Role.ADMIN, None, "W00042", [])
    check_may_register(Role.SUPERVISOR, "610302001", "W00042", grids)
    with pytest.raises(OutsideArea):
        check_may_register(Role.SUPERVISOR, "610303", "W00042", grids)
    with pytest.raises(PermissionDenied):
        check_may_register(Role.WORKER, None, "W00042", grids)


def test_the_access_log_never_shows_a_device_secret() -> None:
    secret = new_device_secret()
    record = logging.LogRecord(
        "uvicorn.access",
        logging.INFO,
        __file__,
        1,
        '%s - "%s %s HTTP/%s" %d',
        ("127.0.0.1:5000", "GET", f"/api/v1/trackers/osmand/{secret}?id=W00042-1", "1.1", 200),
        None,
    )
    assert SecretRedaction().filter(record)
    line = record.getMessage()
    assert secret[4:] not in line
    assert "/api/v1/trackers/osmand/wgd_…?id=W00042-1" in line
