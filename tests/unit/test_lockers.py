"""Cloud lockers' rules: the drop-off's checks, the report it becomes, the registry's CSV,
and the Open311 notes of a task and of a confirmed duplicate."""

import io
import json
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from geodata.db.locker_store import read_csv
from geodata.events import DEFAULT_TIME_LIMITS, EventRefused, RefusalReason, parse_incident
from geodata.lockers import (
    InvalidLocker,
    Locker,
    LockerDropOff,
    check_against,
    checked_locker,
    locker_report,
)
from geodata.open311 import ServiceRequestRecord, service_request_document

NOW = datetime(2020, 9, 8, 12, 0, tzinfo=UTC)
LOCKER = Locker("P01234", "渭光花园智慧云柜", 107.25, 34.35, 24, "610371001001001")


def raw(**changes: Any) -> bytes:
    """A drop-off's bytes, a minute before NOW, with `changes`."""
    event = {
        "event_id": str(uuid.uuid4()),
        "locker_id": "P01234",
        "compartment": 7,
        "document_kind": "residence_certificate",
        "dropped_at": (NOW - timedelta(minutes=1)).isoformat(),
    } | changes
    return json.dumps({k: v for k, v in event.items() if v is not None}).encode()


def parse(value: bytes) -> LockerDropOff:
    return LockerDropOff.parse(value, now=NOW, limits=DEFAULT_TIME_LIMITS)


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        (b"[1]", RefusalReason.INVALID_JSON),
        (b"{not json", RefusalReason.INVALID_JSON),
        (raw(locker_id=None), RefusalReason.MISSING_FIELD),
        (raw(compartment="7"), RefusalReason.INVALID_FIELD),
        (raw(compartment=0), RefusalReason.INVALID_FIELD),
        (raw(document_kind="passport_photo"), RefusalReason.INVALID_FIELD),
        (raw(locker_id="P 1"), RefusalReason.INVALID_FIELD),
        (raw(event_id="drop-1"), RefusalReason.INVALID_FIELD),
        (raw(dropped_at="2020-09-08T12:00:00"), RefusalReason.INVALID_FIELD),
        (raw(dropped_at=(NOW + timedelta(hours=1)).isoformat()), RefusalReason.FUTURE_TIMESTAMP),
        (raw(dropped_at="1999-12-31T23:00:00+00:00"), RefusalReason.STALE_TIMESTAMP),
        (raw(note="a\u0000b"), RefusalReason.INVALID_FIELD),
        (raw(padding="x" * 70_000), RefusalReason.PAYLOAD_TOO_LARGE),
    ],
)
def test_a_malformed_dropoff_is_refused_with_its_reason(
    value: bytes, reason: RefusalReason
) -> None:
    with pytest.raises(EventRefused) as refused:
        parse(value)
    assert refused.value.reason is reason


def test_an_unknown_locker_or_a_missing_compartment_is_refused() -> None:
    dropoff = parse(raw(compartment=25))
    with pytest.raises(EventRefused, match="no locker 'P01234'"):
        check_against(dropoff, None)
    with pytest.raises(EventRefused, match="has 24 compartments") as refused:
        check_against(dropoff, LOCKER)
    assert refused.value.reason is RefusalReason.INVALID_FIELD
    check_against(parse(raw(compartment=24)), LOCKER)


def test_the_report_is_a_valid_incident_whose_ids_are_the_dropoffs_and_nothing_personal() -> None:
    dropoff = parse(raw(phone="13900001234", name="张三"))
    report = locker_report(dropoff, LOCKER)
    incident = parse_incident(json.dumps(report).encode(), now=NOW)
    assert incident.event_id == incident.incident_id == dropoff.event_id
    assert (incident.source, incident.category) == ("locker", "locker.documents")
    assert (incident.lon, incident.lat, incident.reported_at) == (107.25, 34.35, dropoff.dropped_at)
    assert incident.description == "渭光花园智慧云柜 7 号格：居住证明"
    assert "13900001234" not in json.dumps(report)
    assert "张三" not in json.dumps(report, ensure_ascii=False)
    # The same drop-off again makes the same report: the incident consumer stores it once.
    assert locker_report(parse(raw(**json.loads(dropoff.model_dump_json()))), LOCKER) == report


def test_the_registry_csv_is_checked_line_by_line() -> None:
    good = "locker_id,name,lon,lat,compartments\nGX-1,和谐路智慧云柜,107.2,34.35,24\n"
    assert [locker.locker_id for locker in read_csv(io.StringIO(good))] == ["GX-1"]
    for text, problem in [
        ("locker_id,name,lon\nGX-1,a,1\n", "lacks the column"),
        (good + "GX-1,again,107.2,34.35,24\n", "line 3: the id GX-1 comes twice"),
        (good + "GX-2,b,107.2,34.35,0\n", "line 3: a locker has 1 to 200"),
        (good + "GX-2,b,east,34.35,2\n", "line 3"),
        (good + "GX 2,b,107.2,34.35,2\n", "line 3: a locker id"),
    ]:
        with pytest.raises(InvalidLocker, match=problem):
            read_csv(io.StringIO(text))
    with pytest.raises(InvalidLocker, match="missing position"):
        checked_locker("GX-3", "c", 0.0, 0.0, 4)


def record(**changes: Any) -> ServiceRequestRecord:
    """A request as the store reads it, with `changes`."""
    base: dict[str, Any] = {
        "incident_id": uuid.uuid4(),
        "service_code": "environment.garbage",
        "description": None,
        "lat": 34.35,
        "long": None,
        "lon": 107.2,
        "address_string": None,
        "media_url": None,
        "requested_at": NOW,
        "status": "reported",
        "updated_at": NOW,
        "agency": None,
    }
    del base["long"]
    return ServiceRequestRecord(**(base | changes))


def test_a_lockers_task_reads_with_notes_about_the_locker() -> None:
    notes = {
        status: service_request_document(record(status=status, locker=True))["status_notes"]
        for status in (None, "reported", "in_progress", "closed")
    }
    assert notes == {
        None: "已存入云柜，正在登记",
        "reported": "已存入云柜，已通知网格员取件",
        "in_progress": "网格员已取件，正在社区办理",
        "closed": "办理结果已放回云柜，请凭取件码取回",
    }
    assert service_request_document(record(status="closed", locker=True))["status"] == "closed"


def test_a_confirmed_duplicate_reads_as_its_original_with_a_note_naming_it() -> None:
    original = uuid.uuid4()
    later = NOW + timedelta(hours=2)
    document = service_request_document(
        record(
            status="cancelled",
            duplicate_of=original,
            original_status="in_progress",
            original_updated_at=later,
        )
    )
    assert document["status"] == "open"
    assert document["status_notes"] == f"重复上报，已并入请求 {original} 处置：正在处置"
    assert document["updated_datetime"] == "2020-09-08T22:00:00+08:00"
    alone = service_request_document(record(status="cancelled"))
    assert (alone["status"], alone["status_notes"]) == ("closed", "已撤销：重复上报或无需处置")
