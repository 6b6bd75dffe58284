"""What the compliance engine takes from `grid.assignments.v1`, and what it refuses."""

import json
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from event_consumers.compliance import decode_assignment
from geodata.compliance import CheckinRecord
from geodata.events import EventRefused, RefusalReason

NOW = datetime(2020, 9, 7, 2, 0, tzinfo=UTC)
TZ = ZoneInfo("Asia/Shanghai")
EVENT_ID = uuid.UUID("0b6f3c1e-3a59-4f36-9d55-0c3b3e2b8f10")
LINEAGE = {
    "grid_code": "610302001001001",
    "community_code": "610302001001",
    "street_code": "610302001",
    "district_code": "610302",
}
CHECKIN_ASSIGNMENT: dict[str, Any] = {
    "event_id": str(EVENT_ID),
    "worker_id": "W00042",
    "lon": 107.1523,
    "lat": 34.3671,
    "recorded_at": "2020-09-07T09:15:00+08:00",
    "accuracy_m": 8.0,
    **LINEAGE,
    "staff_id": "W00042",
    "in_assigned_grid": True,
    "assignment_rule": "contains",
    "assigned_at": "2020-09-07T01:15:01+00:00",
    "flags": [],
}


def _raw(**changes: Any) -> bytes:
    return json.dumps({**CHECKIN_ASSIGNMENT, **changes}).encode()


def _refusal(raw: bytes) -> RefusalReason:
    with pytest.raises(EventRefused) as refused:
        decode_assignment(raw, NOW, TZ)
    return refused.value.reason


def test_a_checkin_assignment_gives_its_checkin_and_whether_it_is_in_the_own_grid() -> None:
    expected = CheckinRecord(
        EVENT_ID, "W00042", "610302001001001", datetime(2020, 9, 7, 1, 15, tzinfo=UTC), 8.0
    )
    assert decode_assignment(_raw(in_assigned_grid=False), NOW, TZ) == (expected, False)
    assert decode_assignment(_raw(), NOW, TZ) == (expected, True)


def test_the_checkin_time_is_the_same_instant_in_the_rules_zone() -> None:
    decoded = decode_assignment(_raw(), NOW, TZ)
    assert decoded is not None
    assert decoded[0].recorded_at.tzinfo is TZ
    assert decoded[0].recorded_at == datetime(2020, 9, 7, 1, 15, tzinfo=UTC)


def test_an_incident_assignment_is_no_patrol_and_is_skipped() -> None:
    incident: dict[str, Any] = {
        "event_id": str(uuid.uuid4()),
        "incident_id": str(uuid.uuid4()),
        "category": "environment.garbage",
        "lon": 107.1498,
        "lat": 34.3652,
        "reported_at": "2020-09-07T10:02:00+08:00",
        "source": "hotline",
        **LINEAGE,
        "staff_id": "W00042",
        "in_assigned_grid": None,
        "assignment_rule": "contains",
        "assigned_at": "2020-09-07T02:02:01+00:00",
        "flags": [],
    }
    assert decode_assignment(json.dumps(incident).encode(), NOW, TZ) is None


@pytest.mark.parametrize("raw", [b"[1, 2]", b'"text"', b"  null", b"12", b"", b"not json"])
def test_a_body_that_is_no_json_object_is_invalid_json(raw: bytes) -> None:
    assert _refusal(raw) is RefusalReason.INVALID_JSON


def test_the_contract_decides_what_is_missing_or_invalid() -> None:
    without_lineage = {k: v for k, v in CHECKIN_ASSIGNMENT.items() if k != "district_code"}
    assert _refusal(json.dumps(without_lineage).encode()) is RefusalReason.MISSING_FIELD
    assert _refusal(_raw(recorded_at="2020-09-07T09:15:00")) is RefusalReason.INVALID_FIELD
    assert _refusal(_raw(assignment_rule="guessed")) is RefusalReason.INVALID_FIELD


def test_event_times_out_of_bounds_are_refused() -> None:
    ahead = (NOW + timedelta(hours=1)).isoformat()
    assert _refusal(_raw(recorded_at=ahead)) is RefusalReason.FUTURE_TIMESTAMP
    assert _refusal(_raw(recorded_at="1999-12-31T23:59:59+00:00")) is (
        RefusalReason.STALE_TIMESTAMP
    )
