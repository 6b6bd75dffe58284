"""Open311's rules without I/O: services, statuses, what a request must hold, the window."""

import json
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from geodata.categories import CATEGORIES, CATEGORY_NAMES_ZH, TASK_CATEGORY_NAMES_ZH
from geodata.events import parse_incident
from geodata.incidents import FINAL_STATUSES, Status
from geodata.open311 import (
    PUBLIC_STATES,
    RECEIVED,
    SERVICES,
    InvalidServiceRequest,
    ServiceNotFound,
    ServiceRequestNotFound,
    ServiceRequestRecord,
    find_service,
    hash_api_key,
    incident_statuses,
    is_well_formed_api_key,
    new_api_key,
    public_state,
    service_request_document,
)
from geodata.open311_input import (
    CONTACT_FIELDS,
    MAX_SPAN,
    incident_event,
    parse_request_id,
    request_query,
    service_request_input,
)

NOW = datetime(2026, 12, 3, 10, 0, tzinfo=UTC)
VALID: dict[str, Any] = {
    "service_code": "environment.garbage",
    "lat": "34.3652",
    "long": "107.1498",
    "description": "垃圾堆放在楼道口",
}


def test_every_category_is_one_service_with_its_chinese_name_and_no_attributes() -> None:
    # The categories people report, then the lockers' tasks (followed, never posted).
    assert [s.service_code for s in SERVICES] == [*CATEGORIES, "locker.documents"]
    names = CATEGORY_NAMES_ZH | TASK_CATEGORY_NAMES_ZH
    for service in SERVICES:
        assert service.service_name == names[service.service_code]
        assert service.metadata is False
        assert service.type == "realtime"
        assert service.group
        assert service.service_name in service.description
    assert find_service("environment.garbage").group == "市容环境"
    assert "119" in find_service("emergency.fire").description
    assert "119" not in find_service("environment.garbage").description
    with pytest.raises(ServiceNotFound):
        find_service("environment")


def test_api_keys_are_long_random_recognisable_and_stored_as_sha256() -> None:
    key = new_api_key()
    assert key.startswith("wg311_")
    assert is_well_formed_api_key(key)
    assert key != new_api_key()
    assert len(hash_api_key(key)) == 64
    assert key not in hash_api_key(key)
    assert not is_well_formed_api_key("wg_" + key[6:])
    assert not is_well_formed_api_key(key + "x")


def test_every_status_is_open_or_closed_with_a_note_and_only_final_ones_close() -> None:
    assert set(PUBLIC_STATES) == set(Status)
    closed = {s for s, state in PUBLIC_STATES.items() if state.status == "closed"}
    assert closed == set(FINAL_STATUSES)
    assert set(incident_statuses("closed")) == set(FINAL_STATUSES)
    assert set(incident_statuses("open")) | set(incident_statuses("closed")) == set(Status)
    assert len({state.notes for state in PUBLIC_STATES.values()}) == len(Status)
    assert public_state(None) == RECEIVED
    assert RECEIVED.status == "open"
    assert public_state("cancelled").notes.startswith("已撤销")


def test_a_form_post_is_read_into_the_report_with_its_contact_apart() -> None:
    request = service_request_input(
        {
            **VALID,
            "email": " li@example.cn ",
            "first_name": "李",
            "phone": "+86 139-1234-5678",
            "media_url": "https://img.example.cn/a.jpg",
            "address_string": "经二路 12 号",
            "attribute[foo]": "ignored",
            "jurisdiction_id": "baoji",
            "last_name": "",
        }
    )
    assert (request.lat, request.lon) == (34.3652, 107.1498)
    assert request.contact.email == "li@example.cn"
    assert request.contact.last_name is None
    assert not request.contact.is_empty()
    assert service_request_input(VALID).contact.is_empty()


def test_json_numbers_are_taken_as_coordinates() -> None:
    request = service_request_input({**VALID, "lat": 34.5, "long": 107})
    assert (request.lat, request.lon) == (34.5, 107.0)


@pytest.mark.parametrize(
    ("changes", "says"),
    [
        ({"service_code": None}, "service_code is required"),
        ({"service_code": "environment"}, "is not a service"),
        ({"lat": None}, "lat and long are required"),
        ({"long": ""}, "lat and long are required"),
        ({"lat": "north"}, "lat must be a number"),
        ({"lat": "91"}, "lat must be a number from -90 to 90"),
        ({"long": "-180.5"}, "long must be a number from -180 to 180"),
        ({"lat": "nan"}, "lat must be a number from"),
        ({"lat": True}, "lat must be a number"),
        ({"lat": [34]}, "lat must be a number"),
        ({"description": 42}, "description must be text"),
        ({"description": "x" * 4001}, "longer than 4000"),
        ({"description": "a\x00b"}, "NUL"),
        ({"email": "not-an-address"}, "email is not an email address"),
        ({"phone": "call me"}, "phone holds digits"),
        ({"media_url": "ftp://example.cn/a.jpg"}, "media_url must be an absolute http"),
        ({"media_url": "/a.jpg"}, "media_url must be an absolute http"),
        ({"first_name": "\ud800"}, "surrogate"),
    ],
)
def test_a_malformed_request_is_refused_with_what_is_wrong(
    changes: dict[str, Any], says: str
) -> None:
    fields = {**VALID, **changes}
    with pytest.raises(InvalidServiceRequest, match=says):
        service_request_input(fields)


# Marked, so that a value is never found in the event by chance (a name "rep" would be).
contact_text = st.text(alphabet=st.characters(blacklist_categories=("Cs", "Cc")), max_size=30).map(
    lambda text: f"☎{text.strip()}☎"
)


@given(first=contact_text, last=contact_text, device=contact_text, account=contact_text)
def test_no_contact_field_reaches_the_incident_report(
    first: str, last: str, device: str, account: str
) -> None:
    request = service_request_input(
        {
            **VALID,
            "first_name": first,
            "last_name": last,
            "device_id": device,
            "account_id": account,
            "email": "resident-7@example.cn",
            "phone": "13912345678",
        }
    )
    incident_id = uuid.uuid4()
    event = incident_event(request, incident_id=incident_id, reported_at=NOW)
    value = json.dumps(event, ensure_ascii=False)
    for name in CONTACT_FIELDS:
        assert name not in event
        assert getattr(request.contact, name) not in value
    # The report is one the consumers take: the contract's own parser accepts it.
    report = parse_incident(value.encode(), now=NOW)
    assert (report.incident_id, report.event_id) == (incident_id, incident_id)
    assert (report.source, report.reporter_id) == ("resident", None)
    assert report.model_extra == {"channel": "open311"}


def test_media_and_address_ride_along_as_extra_fields() -> None:
    request = service_request_input(
        {**VALID, "media_url": "http://img.example.cn/1.jpg", "address_string": "经二路"}
    )
    event = incident_event(request, incident_id=uuid.uuid4(), reported_at=NOW)
    report = parse_incident(json.dumps(event).encode(), now=NOW)
    assert report.model_extra == {
        "channel": "open311",
        "media_url": "http://img.example.cn/1.jpg",
        "address_string": "经二路",
    }


def test_without_dates_the_window_is_the_last_90_days() -> None:
    query = request_query({}, NOW)
    assert (query.start, query.end, query.limit) == (NOW - MAX_SPAN, NOW, 1000)


def test_one_date_opens_a_90_day_window_from_or_up_to_it() -> None:
    start = datetime(2026, 1, 1, tzinfo=UTC)
    assert request_query({"start_date": "2026-01-01T00:00:00Z"}, NOW).end == start + MAX_SPAN
    assert request_query({"end_date": "2026-01-01T08:00:00+08:00"}, NOW).start == start - MAX_SPAN


@pytest.mark.parametrize(
    ("params", "says"),
    [
        ({"start_date": "2026-01-01T00:00:00Z", "end_date": "2026-04-02T00:00:00Z"}, "90 days"),
        ({"start_date": "2026-01-02T00:00:00Z", "end_date": "2026-01-01T00:00:00Z"}, "before"),
        ({"start_date": "2026-01-01T00:00:00"}, "offset"),
        ({"start_date": "yesterday"}, "W3C"),
        ({"start_date": "1900-01-01T00:00:00Z"}, "start_date must be from"),
        ({"status": "open,pending"}, "not open or closed"),
        ({"service_code": "environment.garbage,nope"}, "not a service"),
        ({"service_request_id": "abc"}, "not one of this server's ids"),
        ({"service_request_id": ",".join(str(uuid.uuid4()) for _ in range(1001))}, "at most"),
    ],
)
def test_a_bad_query_is_refused(params: dict[str, str], says: str) -> None:
    with pytest.raises(InvalidServiceRequest, match=says):
        request_query(params, NOW)


def test_ids_override_every_other_filter() -> None:
    first, second = uuid.uuid4(), uuid.uuid4()
    query = request_query(
        {"service_request_id": f"{first}, {second},{first}", "status": "bogus"}, NOW
    )
    assert query.ids == (first, second)
    assert (query.start, query.end, query.statuses) == (None, None, ())


def test_an_id_that_is_no_uuid_is_not_found() -> None:
    with pytest.raises(ServiceRequestNotFound):
        parse_request_id("12345")


def test_a_document_has_the_standards_fields_in_local_time_and_no_contact() -> None:
    incident_id = uuid.uuid4()
    record = ServiceRequestRecord(
        incident_id=incident_id,
        service_code="public_facilities.street_light",
        description="路灯不亮",
        lat=34.36,
        lon=107.15,
        address_string="经二路",
        media_url=None,
        requested_at=NOW,
        status="resolved",
        updated_at=NOW + timedelta(hours=2),
        agency="渭滨区 永宁街道 宏文苑社区",
    )
    document = service_request_document(record)
    assert document == {
        "service_request_id": str(incident_id),
        "status": "open",
        "status_notes": "已处置，等待核查",
        "service_name": "路灯损坏",
        "service_code": "public_facilities.street_light",
        "description": "路灯不亮",
        "agency_responsible": "渭滨区 永宁街道 宏文苑社区",
        "service_notice": None,
        "requested_datetime": "2026-12-03T18:00:00+08:00",
        "updated_datetime": "2026-12-03T20:00:00+08:00",
        "expected_datetime": None,
        "address": "经二路",
        "address_id": None,
        "zipcode": None,
        "lat": 34.36,
        "long": 107.15,
        "media_url": None,
    }
    assert not set(CONTACT_FIELDS) & set(document)
