"""The event contract: what is accepted, and the reason for everything that is refused."""

import json
import pickle
import uuid
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from geodata.categories import CATEGORIES, UNCLASSIFIED, normalize_category
from geodata.errors import WanggeError
from geodata.events import (
    CE_HEADERS,
    CHECKIN_EXAMPLE,
    INCIDENT_EXAMPLE,
    CheckIn,
    ComplianceChange,
    EventRefused,
    EventTimeLimits,
    IncidentReport,
    RefusalReason,
    cloudevent_headers,
    parse_checkin,
    parse_incident,
)

# 09:20 in Baoji, five minutes after the example check-in was recorded.
NOW = datetime(2020, 9, 7, 1, 20, tzinfo=UTC)
_ABSENT = object()


def checkin_bytes(**changes: Any) -> bytes:
    """The docs/EVENTS.md check-in with fields changed (or removed, given _ABSENT), as JSON."""
    event = {**CHECKIN_EXAMPLE, **changes}
    return json.dumps({k: v for k, v in event.items() if v is not _ABSENT}).encode()


def incident_bytes(**changes: Any) -> bytes:
    """The docs/EVENTS.md incident with fields changed (or removed, given _ABSENT), as JSON."""
    event = {**INCIDENT_EXAMPLE, **changes}
    return json.dumps({k: v for k, v in event.items() if v is not _ABSENT}).encode()


def refusal_of(raw: bytes, *, now: datetime = NOW, **kwargs: Any) -> EventRefused:
    with pytest.raises(EventRefused) as refused:
        parse_checkin(raw, now=now, **kwargs)
    return refused.value


def test_refusal_reasons_are_the_published_codes() -> None:
    assert [reason.value for reason in RefusalReason] == [
        "invalid_json",
        "missing_field",
        "invalid_field",
        "coordinate_out_of_range",
        "unknown_worker",
        "future_timestamp",
        "payload_too_large",
        "unsupported_crs",
        "stale_timestamp",
        "incident_exists",
        "unprocessable",
    ]


def test_event_refused_is_a_domain_error_with_reason_and_detail() -> None:
    refusal = EventRefused(RefusalReason.MISSING_FIELD, "missing field 'lat'")
    assert isinstance(refusal, WanggeError)
    assert (refusal.reason, refusal.detail) == ("missing_field", "missing field 'lat'")
    copy = pickle.loads(pickle.dumps(refusal))
    assert (copy.reason, copy.detail, str(copy)) == (refusal.reason, refusal.detail, str(refusal))


def test_contract_example_checkin_parses_with_aware_event_time() -> None:
    checkin = parse_checkin(checkin_bytes(), now=NOW)
    assert checkin.worker_id == "W00042"
    assert (checkin.lon, checkin.lat, checkin.accuracy_m) == (107.1523, 34.3671, 8.0)
    assert checkin.recorded_at == datetime(2020, 9, 7, 1, 15, tzinfo=UTC)
    assert checkin.recorded_at.utcoffset() == timedelta(hours=8)
    assert str(checkin.event_id) == CHECKIN_EXAMPLE["event_id"]


def test_optional_fields_default_to_wgs84_and_no_accuracy() -> None:
    checkin = parse_checkin(checkin_bytes(accuracy_m=_ABSENT, crs=_ABSENT), now=NOW)
    assert (checkin.crs, checkin.accuracy_m) == ("EPSG:4326", None)


def test_extra_fields_are_preserved_in_the_model_and_its_dump() -> None:
    raw = checkin_bytes(battery=0.61, app={"version": "2.3.1", "os": "android"})
    checkin = parse_checkin(raw, now=NOW)
    assert checkin.model_extra == {"battery": 0.61, "app": {"version": "2.3.1", "os": "android"}}
    dumped = json.loads(checkin.model_dump_json())
    assert dumped["battery"] == 0.61
    assert dumped["app"] == {"version": "2.3.1", "os": "android"}


@pytest.mark.parametrize("field", ["event_id", "worker_id", "lon", "lat", "recorded_at"])
def test_missing_required_field_is_missing_field_naming_it(field: str) -> None:
    refusal = refusal_of(checkin_bytes(**{field: _ABSENT}))
    assert refusal.reason is RefusalReason.MISSING_FIELD
    assert field in refusal.detail


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("worker_id", 42),
        ("worker_id", ""),
        ("event_id", "not-a-uuid"),
        ("lon", "107.1523"),
        ("lat", True),
        ("recorded_at", 1599441300),
        ("recorded_at", "2020-09-07T09:15:00"),  # no offset: not RFC 3339
        ("recorded_at", "yesterday"),
        ("accuracy_m", "8"),
        ("accuracy_m", -1.0),
    ],
)
def test_mistyped_field_is_invalid_field(field: str, value: object) -> None:
    refusal = refusal_of(checkin_bytes(**{field: value}))
    assert refusal.reason is RefusalReason.INVALID_FIELD
    assert field in refusal.detail


@pytest.mark.parametrize("token", [b"NaN", b"Infinity", b"-Infinity", b"1e400"])
def test_non_finite_coordinate_token_is_out_of_range(token: bytes) -> None:
    raw = checkin_bytes().replace(b"107.1523", token)
    assert refusal_of(raw).reason is RefusalReason.COORDINATE_OUT_OF_RANGE


@pytest.mark.parametrize(
    ("lon", "lat"),
    [(180.0000001, 34.0), (-180.0000001, 34.0), (107.0, 90.0000001), (107.0, -90.0000001)],
)
def test_coordinate_just_past_its_range_is_out_of_range(lon: float, lat: float) -> None:
    refusal = refusal_of(checkin_bytes(lon=lon, lat=lat))
    assert refusal.reason is RefusalReason.COORDINATE_OUT_OF_RANGE


@pytest.mark.parametrize(("lon", "lat"), [(180.0, 90.0), (-180.0, -90.0), (0.0, 34.0), (107, 0)])
def test_coordinate_on_its_range_limits_is_accepted(lon: float, lat: float) -> None:
    checkin = parse_checkin(checkin_bytes(lon=lon, lat=lat), now=NOW)
    assert (checkin.lon, checkin.lat) == (lon, lat)


@pytest.mark.parametrize(("lon", "lat"), [(0, 0), (0.0, 0.0), (-0.0, 0.0)])
def test_null_island_is_a_missing_fix_and_out_of_range(lon: float, lat: float) -> None:
    assert refusal_of(checkin_bytes(lon=lon, lat=lat)).reason is (
        RefusalReason.COORDINATE_OUT_OF_RANGE
    )


@pytest.mark.parametrize("raw", [b"", b"{", b"not json", b"\xff\xfe", b"[]", b'"x"', b"null", b"1"])
def test_not_a_json_object_is_invalid_json(raw: bytes) -> None:
    assert refusal_of(raw).reason is RefusalReason.INVALID_JSON


def _padded_to(size: int) -> bytes:
    base = checkin_bytes(note="")
    raw = checkin_bytes(note="x" * (size - len(base)))
    assert len(raw) == size
    return raw


def test_payload_of_64_kib_is_accepted_and_one_byte_more_is_too_large() -> None:
    assert parse_checkin(_padded_to(65536), now=NOW).model_extra is not None
    refusal = refusal_of(_padded_to(65537))
    assert refusal.reason is RefusalReason.PAYLOAD_TOO_LARGE
    assert "65537" in refusal.detail


def test_payload_size_is_checked_before_parsing() -> None:
    refusal = refusal_of(b"{" * 101, max_bytes=100)
    assert refusal.reason is RefusalReason.PAYLOAD_TOO_LARGE


def test_recorded_more_than_five_minutes_ahead_is_future_timestamp() -> None:
    recorded = NOW + timedelta(minutes=5, seconds=1)
    refusal = refusal_of(checkin_bytes(recorded_at=recorded.isoformat()))
    assert refusal.reason is RefusalReason.FUTURE_TIMESTAMP


@pytest.mark.parametrize("ahead", [timedelta(minutes=4, seconds=59), timedelta(minutes=5)])
def test_recorded_up_to_five_minutes_ahead_is_clock_skew_and_accepted(ahead: timedelta) -> None:
    recorded = (NOW + ahead).astimezone(timezone(timedelta(hours=8)))
    checkin = parse_checkin(checkin_bytes(recorded_at=recorded.isoformat()), now=NOW)
    assert checkin.recorded_at == NOW + ahead


def test_a_naive_clock_is_a_programming_error() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        parse_checkin(checkin_bytes(), now=datetime(2020, 9, 7, 9, 20))


@pytest.mark.parametrize("crs", ["EPSG:3857", "gcj02", "BD-09", 4326, None])
def test_other_crs_is_unsupported_crs(crs: object) -> None:
    assert refusal_of(checkin_bytes(crs=crs)).reason is RefusalReason.UNSUPPORTED_CRS


@pytest.mark.parametrize("crs", ["EPSG:4326", "EPSG:4490", "GCJ-02"])
def test_the_three_crs_are_accepted_unconverted(crs: str) -> None:
    checkin = parse_checkin(checkin_bytes(crs=crs), now=NOW)
    assert (checkin.crs, checkin.lon) == (crs, 107.1523)


def test_structural_problem_is_reported_before_a_bad_coordinate() -> None:
    raw = checkin_bytes(worker_id=_ABSENT).replace(b"107.1523", b"NaN")
    refusal = refusal_of(raw)
    assert refusal.reason is RefusalReason.MISSING_FIELD
    assert "and 1 more" in refusal.detail


def test_contract_example_incident_parses() -> None:
    incident = parse_incident(incident_bytes(), now=NOW + timedelta(hours=1))
    assert (incident.source, incident.reporter_id) == ("worker", "W00042")
    assert incident.description == "垃圾堆放在楼道口"
    assert incident.normalized_category == ("environment.garbage", False)


@pytest.mark.parametrize("reporter", [_ABSENT, None])
def test_worker_incident_without_reporter_is_missing_field(reporter: object) -> None:
    with pytest.raises(EventRefused) as refused:
        parse_incident(incident_bytes(reporter_id=reporter), now=NOW + timedelta(hours=1))
    assert refused.value.reason is RefusalReason.MISSING_FIELD
    assert "reporter_id" in refused.value.detail


@pytest.mark.parametrize("source", ["resident", "hotline", "locker", "sensor"])
def test_other_sources_need_no_reporter(source: str) -> None:
    raw = incident_bytes(source=source, reporter_id=_ABSENT)
    assert parse_incident(raw, now=NOW + timedelta(hours=1)).reporter_id is None


def test_unknown_incident_source_is_invalid_field() -> None:
    with pytest.raises(EventRefused) as refused:
        parse_incident(incident_bytes(source="drone"), now=NOW + timedelta(hours=1))
    assert refused.value.reason is RefusalReason.INVALID_FIELD


def test_unknown_category_is_accepted_as_posted_and_flagged_unclassified() -> None:
    incident = parse_incident(incident_bytes(category="noise.karaoke"), now=NOW + timedelta(1))
    assert incident.category == "noise.karaoke"
    assert incident.normalized_category == (UNCLASSIFIED, True)


def test_incident_reported_in_the_future_is_future_timestamp() -> None:
    with pytest.raises(EventRefused) as refused:
        parse_incident(incident_bytes(), now=NOW)  # reported 10:02 local, now 09:20
    assert refused.value.reason is RefusalReason.FUTURE_TIMESTAMP


def test_incident_id_is_a_uuid_and_a_ticket_number_goes_in_an_extra_field() -> None:
    ticket = "12345-2020-000123"
    incident_id = uuid.uuid5(uuid.NAMESPACE_URL, f"hotline:{ticket}")
    raw = incident_bytes(incident_id=str(incident_id), ticket=ticket, source="hotline")
    incident = parse_incident(raw, now=NOW + timedelta(hours=1))
    assert (incident.incident_id, incident.model_extra) == (incident_id, {"ticket": ticket})
    with pytest.raises(EventRefused) as refused:
        parse_incident(incident_bytes(incident_id=ticket), now=NOW + timedelta(hours=1))
    assert refused.value.reason is RefusalReason.INVALID_FIELD


def test_categories_cover_the_seven_gbt_30428_classes_with_unique_dotted_codes() -> None:
    classes = {code.split(".")[0] for code in CATEGORIES}
    assert classes == {
        "environment",
        "public_facilities",
        "street_order",
        "construction",
        "emergency",
        "advertising",
        "other",
    }
    assert len(CATEGORIES) == len(set(CATEGORIES)) >= 30
    assert all(code.count(".") == 1 and code == code.lower() for code in CATEGORIES)
    assert UNCLASSIFIED in CATEGORIES


@pytest.mark.parametrize(
    ("posted", "expected"),
    [
        ("environment.garbage", ("environment.garbage", False)),
        (" Emergency.Gas_Leak ", ("emergency.gas_leak", False)),
        ("other.unclassified", ("other.unclassified", False)),
        ("garbage", ("other.unclassified", True)),
        ("", ("other.unclassified", True)),
    ],
)
def test_normalize_category(posted: str, expected: tuple[str, bool]) -> None:
    assert normalize_category(posted) == expected


def test_compliance_change_names_an_iso_week_and_a_status() -> None:
    change = {
        "event_id": "7c7e1d7c-55f4-4a84-9a44-2d3f2a1b0c01",
        "worker_id": "W00042",
        "grid_code": "610302001001",
        "week": "2020-W37",
        "old_status": None,
        "new_status": "on_track",
        "counted_patrols": 1,
        "required_patrols": 3,
        "changed_at": "2020-09-08T10:00:00+08:00",
    }
    assert ComplianceChange.model_validate_json(json.dumps(change)).new_status == "on_track"
    for bad in ({"week": "2020-W54"}, {"week": "2020-37"}, {"new_status": "late"}):
        with pytest.raises(ValueError, match=r"week|new_status"):
            ComplianceChange.model_validate_json(json.dumps({**change, **bad}))


def test_cloudevent_headers_are_binary_mode_with_the_event_time() -> None:
    checkin = parse_checkin(checkin_bytes(), now=NOW)
    headers = cloudevent_headers(
        event_id=checkin.event_id,
        ce_type="wangge.checkin.v1",
        source="wangge/gateway",
        time=checkin.recorded_at,
    )
    assert dict(headers) == {
        "ce_specversion": b"1.0",
        "ce_id": CHECKIN_EXAMPLE["event_id"].encode(),
        "ce_source": b"wangge/gateway",
        "ce_type": b"wangge.checkin.v1",
        "ce_time": b"2020-09-07T09:15:00+08:00",
    }
    assert tuple(dict(headers)) == CE_HEADERS


@pytest.mark.parametrize(
    ("model", "required"),
    [
        (CheckIn, ["event_id", "worker_id", "lon", "lat", "recorded_at"]),
        (
            IncidentReport,
            ["event_id", "incident_id", "category", "lon", "lat", "reported_at", "source"],
        ),
    ],
)
def test_json_schema_requires_the_contract_fields_and_allows_extensions(
    model: type[CheckIn] | type[IncidentReport], required: list[str]
) -> None:
    schema = model.model_json_schema()
    assert schema["required"] == required
    assert schema["additionalProperties"] is True
    assert schema["properties"]["crs"]["enum"] == ["EPSG:4326", "EPSG:4490", "GCJ-02"]


_FIELDS = frozenset(CheckIn.model_fields)
# Text the database can hold: no NUL, no lone surrogate (UTF-8 cannot encode one, and
# hypothesis draws them once exclude_characters is given).
_CHARACTERS = st.characters(exclude_categories=["Cs"], exclude_characters="\x00")


def _text(**bounds: int) -> st.SearchStrategy[str]:
    return st.text(_CHARACTERS, **bounds)


_json_leaf: st.SearchStrategy[Any] = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**53), 2**53),
    st.floats(allow_nan=False, allow_infinity=False),
    _text(max_size=20),
)
_json_value = st.recursive(
    _json_leaf,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(_text(max_size=8), inner),
    max_leaves=8,
)
_offsets = st.integers(-12 * 60, 14 * 60).map(lambda m: timezone(timedelta(minutes=m)))


@st.composite
def valid_checkins(draw: st.DrawFn) -> dict[str, Any]:
    """Any check-in that the contract accepts, extensions included, as a JSON object."""
    lon = draw(st.floats(-180, 180))
    lat = draw(st.floats(-90, 90).filter(lambda v: lon != 0 or v != 0))
    recorded = draw(st.datetimes(datetime(2000, 1, 2), datetime(2099, 12, 31), timezones=_offsets))
    event: dict[str, Any] = {
        "event_id": str(draw(st.uuids())),
        "worker_id": draw(_text(min_size=1, max_size=64)),
        "lon": lon,
        "lat": lat,
        "recorded_at": recorded.isoformat(),
    }
    if draw(st.booleans()):
        event["accuracy_m"] = draw(st.none() | st.floats(0, 1e6))
    if draw(st.booleans()):
        event["crs"] = draw(st.sampled_from(["EPSG:4326", "EPSG:4490", "GCJ-02"]))
    extras = _text(min_size=1, max_size=12).filter(lambda k: k not in _FIELDS)
    event.update(draw(st.dictionaries(extras, _json_value, max_size=3)))
    return event


# too_slow: on a fresh checkout the first draw builds Hypothesis's Unicode tables (~2 s).
@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(valid_checkins())
def test_any_valid_checkin_serialised_and_parsed_back_is_equal(event: dict[str, Any]) -> None:
    far_future = datetime(2100, 1, 1, tzinfo=UTC)
    checkin = parse_checkin(json.dumps(event, ensure_ascii=False).encode(), now=far_future)
    assert (checkin.lon, checkin.lat, checkin.worker_id) == (
        event["lon"],
        event["lat"],
        event["worker_id"],
    )
    again = parse_checkin(checkin.model_dump_json().encode(), now=far_future)
    assert again == checkin


# --- what the database could not hold -------------------------------------------------


@pytest.mark.parametrize(
    "recorded_at",
    [
        "0001-01-01T00:00:00+14:00",  # before year 1 in UTC: overflowed astimezone()
        "1900-01-01T00:00:00Z",
        "1999-12-31T23:59:59Z",
        "2000-01-01T07:59:59+08:00",
    ],
)
def test_times_before_the_fixed_floor_are_stale_timestamp(recorded_at: str) -> None:
    assert refusal_of(checkin_bytes(recorded_at=recorded_at)).reason == "stale_timestamp"


@pytest.mark.parametrize("recorded_at", ["9999-12-31T23:59:59-12:00", "9999-12-31T23:59:59Z"])
def test_times_at_the_end_of_the_calendar_are_future_timestamp(recorded_at: str) -> None:
    assert refusal_of(checkin_bytes(recorded_at=recorded_at)).reason == "future_timestamp"


def test_the_floor_itself_is_accepted_without_an_age_limit() -> None:
    checkin = parse_checkin(checkin_bytes(recorded_at="2000-01-01T00:00:00Z"), now=NOW)
    assert checkin.recorded_at == datetime(2000, 1, 1, tzinfo=UTC)


def test_an_event_older_than_the_age_limit_is_stale_and_one_just_inside_is_not() -> None:
    limits = EventTimeLimits(max_age=timedelta(days=30))
    inside = (NOW - timedelta(days=30)).isoformat()
    outside = (NOW - timedelta(days=30, seconds=1)).isoformat()
    assert parse_checkin(checkin_bytes(recorded_at=inside), now=NOW, limits=limits)
    refused = refusal_of(checkin_bytes(recorded_at=outside), limits=limits)
    assert refused.reason == "stale_timestamp"
    assert "30 days" in refused.detail


@pytest.mark.parametrize("field", ["category", "description", "reporter_id"])
@pytest.mark.parametrize("text", ["a\x00b", "\x00"])
def test_nul_in_any_incident_text_is_invalid_field(field: str, text: str) -> None:
    with pytest.raises(EventRefused) as refused:
        parse_incident(incident_bytes(**{field: text}), now=NOW + timedelta(hours=1))
    assert refused.value.reason == "invalid_field"
    assert field in refused.value.detail


def test_nul_in_a_worker_id_is_invalid_field() -> None:
    assert refusal_of(checkin_bytes(worker_id="W\x0000042")).reason == "invalid_field"


@pytest.mark.parametrize(
    "extra",
    [
        {"note": "a\x00b"},
        {"a\x00b": 1},
        {"nested": {"deeper": ["ok", "\x00"]}},
        {"nested": {"k\x00": True}},
        {"big": 2**63},
        {"small": -(2**63)},
        {"deep": json.loads("[" * 40 + "]" * 40)},
    ],
)
def test_extra_fields_the_database_could_not_hold_are_invalid_field(
    extra: dict[str, Any],
) -> None:
    refused = refusal_of(checkin_bytes(**extra))
    assert refused.reason == "invalid_field"
    assert "\x00" not in refused.detail  # the detail names the field escaped


@pytest.mark.parametrize("token", [b"1e400", b"-1e400", b"NaN", b"Infinity"])
def test_non_finite_numbers_in_extra_fields_are_refused(token: bytes) -> None:
    raw = checkin_bytes()[:-1] + b', "note": ' + token + b"}"
    assert refusal_of(raw).reason in {"invalid_field", "invalid_json"}


def test_lone_surrogate_is_refused() -> None:
    raw = checkin_bytes()[:-1] + b', "note": "\\ud800"}'
    assert refusal_of(raw).reason in {"invalid_field", "invalid_json"}


def test_ordinary_extra_fields_and_control_characters_other_than_nul_are_kept() -> None:
    raw = checkin_bytes(note="tab\there\u2028", count=2**63 - 1, nested={"a": [1, 2.5, None]})
    checkin = parse_checkin(raw, now=NOW)
    assert checkin.model_extra == {
        "note": "tab\there\u2028",
        "count": 2**63 - 1,
        "nested": {"a": [1, 2.5, None]},
    }


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(
    when=st.datetimes(min_value=datetime(1, 1, 2), max_value=datetime(9999, 12, 30)),
    offset_minutes=st.integers(min_value=-(23 * 60 + 59), max_value=23 * 60 + 59),
)
def test_any_accepted_time_converts_to_utc_and_fits_postgresql(
    when: datetime, offset_minutes: int
) -> None:
    aware = when.replace(tzinfo=timezone(timedelta(minutes=offset_minutes)))
    raw = checkin_bytes(recorded_at=aware.isoformat())
    if datetime(2000, 1, 1, tzinfo=UTC) <= aware <= NOW + timedelta(minutes=5):
        assert parse_checkin(raw, now=NOW).recorded_at.astimezone(UTC) == aware
    else:
        assert refusal_of(raw).reason in {"stale_timestamp", "future_timestamp"}
