"""The live map's rules: what a message holds, and which caller receives which message."""

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from geodata.accounts import OutsideArea, PermissionDenied, Principal, Role
from geodata.crs import wgs84_to_gcj02
from geodata.errors import InvalidAreaCode
from geodata.live import (
    ALL_KINDS,
    InvalidStreamTypes,
    LiveKind,
    MapMessage,
    StreamFilter,
    assignment_message,
    compliance_message,
    parse_kinds,
    stream_filter,
)
from tests.live_events import (
    as_bytes,
    checkin_assignment,
    compliance_change,
    incident_assignment,
)

GRID_X = "610302001001001"
GRID_Y = "610303002004005"


def principal(role: Role, area: str | None = None) -> Principal:
    """A caller of `role` (a supervisor of `area`)."""
    worker = "W00042" if role is Role.WORKER else None
    return Principal(1, 1, f"a {role}", role, area_prefix=area, worker_id=worker)


def test_checkin_message_carries_codes_rounded_position_and_nothing_personal_beyond() -> None:
    event = checkin_assignment(GRID_X, lon=107.152345678, lat=34.367149, accuracy_m=4.5)
    message = assignment_message(as_bytes(event))
    body = json.loads(message.data)
    assert message.kind is LiveKind.CHECKIN
    assert message.event_id == event["event_id"]
    assert message.area_code == GRID_X
    assert body == {
        "kind": "checkin",
        "event_id": event["event_id"],
        "worker_id": "W00042",
        "grid_code": GRID_X,
        "community_code": GRID_X[:12],
        "lon": 107.1523,
        "lat": 34.3671,
        "recorded_at": "2020-09-07T09:15:00+08:00",
        "in_assigned_grid": True,
    }


def test_gcj02_checkin_is_drawn_at_its_wgs84_position() -> None:
    lon, lat = wgs84_to_gcj02(107.15, 34.36)
    event = checkin_assignment(GRID_X, lon=lon, lat=lat, crs="GCJ-02")
    body = json.loads(assignment_message(as_bytes(event)).data)
    assert (body["lon"], body["lat"]) == (107.15, 34.36)


def test_incident_message_leaves_out_description_and_reporter() -> None:
    event = incident_assignment(GRID_X, category="no.such.category")
    message = assignment_message(as_bytes(event))
    body = json.loads(message.data)
    assert message.kind is LiveKind.INCIDENT
    assert body["incident_id"] == event["incident_id"]
    assert body["category"] == "other.unclassified"
    assert "description" not in body
    assert "reporter_id" not in body
    assert (body["lon"], body["lat"]) == (107.1498, 34.3652)


def test_outside_area_assignment_has_no_area_code() -> None:
    assert assignment_message(as_bytes(checkin_assignment(None))).area_code is None


def test_compliance_message_carries_the_status_change() -> None:
    message = compliance_message(as_bytes(compliance_change(GRID_Y, new_status="at_risk")))
    body = json.loads(message.data)
    assert message.kind is LiveKind.COMPLIANCE
    assert message.area_code == GRID_Y
    assert body["new_status"] == "at_risk"
    assert body["community_code"] == GRID_Y[:12]


@pytest.mark.parametrize(
    "raw",
    [b"not json", b"{}", as_bytes({**checkin_assignment(GRID_X), "lat": 95.0})],
)
def test_malformed_records_raise_value_error(raw: bytes) -> None:
    with pytest.raises(ValueError):  # noqa: PT011 - ValidationError is one
        assignment_message(raw)
    with pytest.raises(ValidationError):
        compliance_message(raw)


def _message(area_code: str | None, kind: LiveKind = LiveKind.CHECKIN) -> MapMessage:
    return MapMessage(kind, "e", area_code, "{}")


def test_supervisor_receives_its_area_only() -> None:
    chosen = stream_filter(principal(Role.SUPERVISOR, GRID_X[:6]), None, None)
    assert chosen.admits(_message(GRID_X))
    assert not chosen.admits(_message(GRID_Y))
    assert not chosen.admits(_message(None))


def test_admin_receives_everything_even_outside_every_area() -> None:
    chosen = stream_filter(principal(Role.ADMIN), None, None)
    assert chosen.admits(_message(GRID_X))
    assert chosen.admits(_message(None))


def test_code_narrows_within_the_callers_area() -> None:
    chosen = stream_filter(principal(Role.SUPERVISOR, GRID_X[:6]), GRID_X[:12], None)
    assert chosen.area_prefix == GRID_X[:12]
    assert not chosen.admits(_message("610302001002001"))


@pytest.mark.parametrize("code", [GRID_Y[:6], "6103"])
def test_code_outside_or_above_the_supervisors_area_is_outside_area(code: str) -> None:
    with pytest.raises(OutsideArea):
        stream_filter(principal(Role.SUPERVISOR, GRID_X[:6]), code, None)


def test_worker_may_not_stream() -> None:
    with pytest.raises(PermissionDenied):
        stream_filter(principal(Role.WORKER), None, None)


@pytest.mark.parametrize("code", ["61030a", "6" * 16, "610302%"])
def test_malformed_code_is_invalid_code(code: str) -> None:
    with pytest.raises(InvalidAreaCode):
        stream_filter(principal(Role.ADMIN), code, None)


def test_types_pick_kinds_and_unknown_types_are_refused() -> None:
    assert parse_kinds(None) == ALL_KINDS
    assert parse_kinds(" checkin, compliance ,") == {LiveKind.CHECKIN, LiveKind.COMPLIANCE}
    with pytest.raises(InvalidStreamTypes, match="unknown types tracks"):
        parse_kinds("checkin,tracks")
    chosen = stream_filter(principal(Role.ADMIN), None, "incident")
    assert not chosen.admits(_message(GRID_X, LiveKind.CHECKIN))
    assert chosen.admits(_message(GRID_X, LiveKind.INCIDENT))


codes = st.text(alphabet="0123456789", min_size=1, max_size=15)


@given(prefix=codes, area_code=st.none() | codes, kind=st.sampled_from(list(LiveKind)))
def test_a_filter_admits_exactly_the_messages_under_its_prefix(
    prefix: str, area_code: str | None, kind: LiveKind
) -> None:
    admitted = StreamFilter(prefix).admits(_message(area_code, kind))
    assert admitted == (area_code is not None and area_code.startswith(prefix))


@given(area=codes, code=codes)
def test_a_supervisor_never_gets_a_filter_wider_than_its_area(area: str, code: str) -> None:
    try:
        chosen = stream_filter(principal(Role.SUPERVISOR, area), code, None)
    except OutsideArea:
        assert not code.startswith(area)
    else:
        assert chosen.area_prefix.startswith(area)
