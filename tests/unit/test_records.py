"""The records wangge produces: the fast path's bytes, the generic builder's, the headers."""

import json
import uuid
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from geodata.events import (
    ASSIGNMENT_FIELDS,
    CHECKIN_EXAMPLE,
    INCIDENT_EXAMPLE,
    CheckIn,
    CheckInAssignment,
    ComplianceChange,
    EventRefused,
    IncidentAssignment,
    RefusalReason,
    parse_assignment,
    parse_checkin,
    parse_compliance_change,
    parse_incident,
)
from geodata.hierarchy import lineage_of
from geodata.records import (
    MAX_DETAIL_BYTES,
    CheckinAssignments,
    DeadLetterHeaders,
    assignment_record,
    compliance_change_record,
    dead_letter_record,
    record_event_id,
)

TOPIC = "ns.grid.assignments.v1"
NOW = datetime(2020, 9, 7, 1, 20, tzinfo=UTC)
GRID = "610302001001001"
RULES = ("contains", "boundary_tiebreak", "nearest_within_tolerance")
IN_GRID: dict[str, Any] = {
    "grid_code": GRID,
    "in_assigned_grid": True,
    "rule": "contains",
    "flags": [],
    "assigned_at": NOW,
}


def _compact(event: dict[str, Any]) -> bytes:
    return json.dumps(event, ensure_ascii=False, separators=(",", ":")).encode()


def _fast(raw: bytes, checkin: CheckIn, **fields: Any) -> Any:
    (record,) = CheckinAssignments(TOPIC).records(
        [raw],
        [checkin],
        event_ids=[str(checkin.event_id)],
        grid_codes=[fields["grid_code"]],
        in_assigned_grid=[fields["in_assigned_grid"]],
        rules=[fields["rule"]],
        flags=[fields["flags"]],
        assigned_at=fields["assigned_at"],
    )
    return record


def _generic(raw: bytes, checkin: CheckIn, **fields: Any) -> Any:
    return assignment_record(
        TOPIC, json.loads(raw), kind="checkin", staff_id=checkin.worker_id, **fields
    )


def _incident(event: dict[str, Any], **fields: Any) -> Any:
    """An incident's assignment: outside every area unless `fields` say otherwise."""
    unassigned: dict[str, Any] = {
        "grid_code": None,
        "staff_id": None,
        "in_assigned_grid": None,
        "rule": "outside_area",
        "flags": [],
        "assigned_at": NOW,
    }
    return assignment_record(TOPIC, event, kind="incident", **{**unassigned, **fields})


# --- strategies ---------------------------------------------------------------------------

texts = st.text(st.characters(exclude_categories=["Cs"]), max_size=12)
worker_ids = st.text(st.characters(exclude_categories=["Cs"]), min_size=1, max_size=64)
grid_codes = st.from_regex(r"\A[0-9]{15}\Z")
# Whole minutes and never zero: pydantic writes +00:00 as Z, which the wire never does.
offsets = st.integers(-14 * 60, 14 * 60).filter(bool).map(lambda m: timezone(timedelta(minutes=m)))
times = st.builds(
    lambda base, micros, tz: (base + timedelta(microseconds=micros)).astimezone(tz),
    st.sampled_from([NOW, datetime(2026, 1, 1, tzinfo=UTC)]),
    st.integers(0, 10**12),
    offsets,
)
checkins = st.builds(
    CheckIn,
    event_id=st.uuids(),
    worker_id=worker_ids,
    lon=st.floats(-180, 180).filter(bool),
    lat=st.floats(-90, 90).filter(bool),
    recorded_at=times,
    accuracy_m=st.none() | st.floats(0, 1e6),
    crs=st.sampled_from(["EPSG:4326", "EPSG:4490", "GCJ-02"]),
)
placements = st.one_of(
    st.fixed_dictionaries(
        {"grid_code": grid_codes, "rule": st.sampled_from(RULES)},
    ),
    st.just({"grid_code": None, "rule": "outside_area"}),
)
flag_lists = st.lists(st.sampled_from(["low_accuracy", "implausible_speed", 'odd "é"']))
json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**63), 2**63 - 1) | st.floats(allow_nan=False,
    allow_infinity=False) | texts,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(texts, inner, max_size=3),
    max_leaves=8,
)  # fmt: skip
extras = st.dictionaries(
    texts.filter(lambda name: name not in CheckInAssignment.model_fields and name != "incident_id"),
    json_values,
    max_size=4,
)


# --- the fast path against the model and against the generic builder ---------------------


@given(checkin=checkins, place=placements, assigned=st.booleans(), flags=flag_lists, at=times)
def test_fast_path_is_the_models_serialisation_byte_for_byte(
    checkin: CheckIn, place: dict[str, Any], assigned: bool, flags: list[str], at: datetime
) -> None:
    raw = checkin.model_dump_json().encode()
    record = _fast(
        raw,
        checkin,
        grid_code=place["grid_code"],
        in_assigned_grid=assigned,
        rule=place["rule"],
        flags=flags,
        assigned_at=at,
    )
    lineage = lineage_of(place["grid_code"]) if place["grid_code"] else None
    model = CheckInAssignment.model_validate(
        {
            **checkin.model_dump(),
            "grid_code": place["grid_code"],
            "community_code": lineage.community_code if lineage else None,
            "street_code": lineage.street_code if lineage else None,
            "district_code": lineage.district_code if lineage else None,
            "staff_id": checkin.worker_id,
            "in_assigned_grid": assigned,
            "assignment_rule": place["rule"],
            "assigned_at": at,
            "flags": flags,
        }
    )
    assert record.value == model.model_dump_json().encode()
    assert parse_assignment(record.value) == model


@given(
    checkin=checkins,
    extra=extras,
    place=placements,
    assigned=st.booleans(),
    flags=flag_lists,
    at=times,
)
def test_fast_path_is_the_generic_builders_bytes_for_compact_json_with_extras(
    checkin: CheckIn,
    extra: dict[str, Any],
    place: dict[str, Any],
    assigned: bool,
    flags: list[str],
    at: datetime,
) -> None:
    raw = _compact({**json.loads(checkin.model_dump_json()), **extra})
    parsed = CheckIn.model_validate_json(raw)
    fields = {
        "grid_code": place["grid_code"],
        "in_assigned_grid": assigned,
        "rule": place["rule"],
        "flags": flags,
        "assigned_at": at,
    }
    assert _fast(raw, parsed, **fields) == _generic(raw, parsed, **fields)


@pytest.mark.parametrize("name", ASSIGNMENT_FIELDS)
def test_an_extra_field_named_like_an_assignment_field_is_overwritten_in_place(
    name: str,
) -> None:
    raw = _compact({**CHECKIN_EXAMPLE, name: "from the phone"})
    checkin = parse_checkin(raw, now=NOW)
    fields = {**IN_GRID, "flags": ["low_accuracy"]}
    record = _fast(raw, checkin, **fields)
    assert record == _generic(raw, checkin, **fields)
    body = json.loads(record.value)
    assert body[name] != "from the phone"
    assert list(body)[: len(CHECKIN_EXAMPLE) + 1] == [*CHECKIN_EXAMPLE, name]


def test_assignment_is_the_input_event_unchanged_then_the_assignment_fields() -> None:
    raw = (
        b'{"battery":0.5, "event_id":"%s", "lon":107.15230,"lat":34.3671,'
        % (CHECKIN_EXAMPLE["event_id"].encode())
        + b'"worker_id":"W00042","recorded_at":"2020-09-07T09:15:00+08:00"}  \n'
    )
    checkin = parse_checkin(raw, now=NOW)
    record = _fast(raw, checkin, **IN_GRID)
    assert record.value.startswith(raw.rstrip()[:-1] + b',"grid_code":"610302001001001",')
    assert record.value.endswith(b',"assigned_at":"2020-09-07T01:20:00+00:00","flags":[]}')
    assert list(json.loads(record.value)) == [
        "battery",
        "event_id",
        "lon",
        "lat",
        "worker_id",
        "recorded_at",
        *ASSIGNMENT_FIELDS,
    ]
    assert record.key == GRID.encode()


def test_assignment_headers_name_the_kind_the_event_and_when_it_was_assigned() -> None:
    checkin = parse_checkin(_compact(CHECKIN_EXAMPLE), now=NOW)
    fields = {"in_assigned_grid": False, "rule": "outside_area", "flags": [], "assigned_at": NOW}
    record = _fast(_compact(CHECKIN_EXAMPLE), checkin, grid_code=None, **fields)
    assert record.key is None
    assert dict(record.headers) == {
        "ce_specversion": b"1.0",
        "ce_id": CHECKIN_EXAMPLE["event_id"].encode(),
        "ce_source": b"wangge/consumers",
        "ce_type": b"wangge.assignment.checkin.v1",
        "ce_time": b"2020-09-07T01:20:00+00:00",
    }
    incident = _incident(
        INCIDENT_EXAMPLE,
        grid_code=GRID,
        rule="contains",
        extra={"escalated_to": "610302001001", "category_normalized": "other.unclassified"},
    )
    assert dict(incident.headers)["ce_type"] == b"wangge.assignment.incident.v1"
    assert list(json.loads(incident.value))[-2:] == ["escalated_to", "category_normalized"]


def test_assignment_round_trips_through_json_as_its_kind() -> None:
    checkin = parse_checkin(_compact({**CHECKIN_EXAMPLE, "battery": 0.5}), now=NOW)
    record = _fast(checkin.model_dump_json().encode(), checkin, **IN_GRID)
    parsed = parse_assignment(record.value)
    assert isinstance(parsed, CheckInAssignment)
    assert parsed.model_extra == {"battery": 0.5}
    assert parse_assignment(parsed.model_dump_json().encode()) == parsed
    incident = parse_incident(_compact(INCIDENT_EXAMPLE), now=NOW + timedelta(hours=1))
    record = _incident(json.loads(incident.model_dump_json()), flags=["category_unknown"])
    parsed_incident = parse_assignment(record.value)
    assert isinstance(parsed_incident, IncidentAssignment)
    assert parse_assignment(parsed_incident.model_dump_json().encode()) == parsed_incident


def test_assignment_without_grid_must_be_outside_area() -> None:
    record = assignment_record(
        TOPIC,
        CHECKIN_EXAMPLE,
        kind="checkin",
        grid_code=None,
        staff_id="W00042",
        in_assigned_grid=False,
        rule="contains",
        flags=[],
        assigned_at=NOW,
    )
    with pytest.raises(ValueError, match="grid_code"):
        parse_assignment(record.value)


# --- compliance changes --------------------------------------------------------------------

CHANGE = ComplianceChange(
    event_id=uuid.UUID("7c7e1d7c-55f4-4a84-9a44-2d3f2a1b0c01"),
    worker_id="W00042",
    grid_code=GRID,
    week="2020-W37",
    old_status=None,
    new_status="on_track",
    counted_patrols=1,
    required_patrols=3,
    changed_at=datetime(2020, 9, 8, 2, 0, 0, 5, tzinfo=UTC),
)


def test_compliance_change_keeps_the_bytes_the_topic_has_always_carried() -> None:
    record = compliance_change_record("grid.compliance.v1", CHANGE)
    assert record.key == b"W00042"
    assert record.value == (
        b'{"event_id":"7c7e1d7c-55f4-4a84-9a44-2d3f2a1b0c01","worker_id":"W00042",'
        b'"grid_code":"610302001001001","week":"2020-W37","old_status":null,'
        b'"new_status":"on_track","counted_patrols":1,"required_patrols":3,'
        b'"changed_at":"2020-09-08T02:00:00.000005+00:00"}'
    )
    assert record.headers == [
        ("ce_specversion", b"1.0"),
        ("ce_id", b"7c7e1d7c-55f4-4a84-9a44-2d3f2a1b0c01"),
        ("ce_source", b"wangge/compliance"),
        ("ce_type", b"wangge.compliance.v1"),
        ("ce_time", b"2020-09-08T02:00:00.000005+00:00"),
    ]
    assert parse_compliance_change(record.value) == CHANGE
    assert record_event_id(record.headers, record.value) == str(CHANGE.event_id)
    assert record_event_id([], record.value) == str(CHANGE.event_id)


# --- dead letters --------------------------------------------------------------------------


def _letter(detail: str, headers: list[tuple[str, bytes]] | None = None) -> Any:
    return dead_letter_record(
        "grid.deadletter.v1",
        key=b"W1",
        value=b"\xff not json",
        reason=RefusalReason.INVALID_JSON,
        detail=detail,
        source_topic="grid.checkins.v1",
        source_partition=3,
        source_offset=42,
        headers=headers or [],
    )


def test_dead_letter_is_the_raw_record_with_why_and_where_then_its_own_ce_headers() -> None:
    letter = _letter("not JSON", [("ce_id", b"x"), ("traceparent", b"00-ab"), ("ce_type", b"t")])
    assert (letter.key, letter.value) == (b"W1", b"\xff not json")
    assert letter.headers == [
        ("error.reason", b"invalid_json"),
        ("error.detail", b"not JSON"),
        ("source.topic", b"grid.checkins.v1"),
        ("source.partition", b"3"),
        ("source.offset", b"42"),
        ("ce_id", b"x"),
        ("ce_type", b"t"),
    ]
    read = DeadLetterHeaders.from_kafka_headers(letter.headers)
    assert read == DeadLetterHeaders(
        reason=RefusalReason.INVALID_JSON,
        detail="not JSON",
        source_topic="grid.checkins.v1",
        source_partition=3,
        source_offset=42,
    )


@pytest.mark.parametrize(
    ("detail", "kept"),
    [
        ("x" * 2000, "x" * MAX_DETAIL_BYTES),
        ("é" * 600, "é" * (MAX_DETAIL_BYTES // 2)),
        ("x" * (MAX_DETAIL_BYTES - 1) + "é", "x" * (MAX_DETAIL_BYTES - 1)),
        ("lone \ud800 surrogate", "lone \\ud800 surrogate"),
    ],
)
def test_dead_letter_detail_is_cut_to_whole_characters_of_valid_utf8(
    detail: str, kept: str
) -> None:
    (_reason, (_name, value), *_rest) = _letter(detail).headers
    assert value.decode("utf-8") == kept


def test_dead_letter_headers_round_trip_through_kafka_headers() -> None:
    refusal = EventRefused(RefusalReason.UNKNOWN_WORKER, "W99999 is not a worker " + "x" * 2000)
    headers = DeadLetterHeaders.from_refusal(refusal)
    kafka_headers = headers.to_kafka_headers()
    assert [name for name, _ in kafka_headers] == ["error.reason", "error.detail"]
    assert kafka_headers[0][1] == b"unknown_worker"
    assert DeadLetterHeaders.from_kafka_headers([("ce_id", b"x"), *kafka_headers]) == headers
    assert len(headers.detail) == 1000
