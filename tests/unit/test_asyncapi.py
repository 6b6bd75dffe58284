"""The published AsyncAPI document is generated from the models and kept in step with them."""

import json
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import yaml

from geodata.asyncapi import asyncapi_document, render_asyncapi_yaml
from geodata.contract import (
    ALL_TOPICS,
    ASSIGNMENTS_TOPIC,
    CHECKINS_TOPIC,
    COMPLIANCE_TOPIC,
    DEADLETTER_TOPIC,
    INCIDENT_STATUS_TOPIC,
    INCIDENTS_TOPIC,
    LOCKER_DROPOFFS_TOPIC,
)
from geodata.events import (
    CE_HEADERS,
    CHECKIN_EXAMPLE,
    INCIDENT_EXAMPLE,
    CheckIn,
    ComplianceChange,
    IncidentReport,
    RefusalReason,
    parse_checkin,
)
from geodata.records import (
    CheckinAssignments,
    OutboundRecord,
    assignment_record,
    compliance_change_record,
)

COMMITTED = Path(__file__).resolve().parents[2] / "docs" / "asyncapi.yaml"


def test_committed_document_is_the_generated_one() -> None:
    assert COMMITTED.read_bytes() == render_asyncapi_yaml().encode(), (
        "docs/asyncapi.yaml is stale; regenerate it with "
        "`.venv/bin/python -m geodata.asyncapi > docs/asyncapi.yaml`"
    )


def test_document_is_deterministic_and_valid_yaml() -> None:
    assert render_asyncapi_yaml() == render_asyncapi_yaml()
    assert yaml.safe_load(render_asyncapi_yaml()) == asyncapi_document()


def test_every_topic_of_the_contract_is_a_channel() -> None:
    document = asyncapi_document()
    assert document["asyncapi"] == "2.6.0"
    assert tuple(document["channels"]) == ALL_TOPICS


def _refs(node: Any) -> list[str]:
    if isinstance(node, dict):
        found = [node["$ref"]] if isinstance(node.get("$ref"), str) else []
        return found + [ref for value in node.values() for ref in _refs(value)]
    if isinstance(node, list):
        return [ref for value in node for ref in _refs(value)]
    return []


def test_every_reference_resolves_inside_the_document() -> None:
    document = asyncapi_document()
    refs = _refs(document)
    assert refs
    for ref in refs:
        node: Any = document
        assert ref.startswith("#/"), ref
        for part in ref[2:].split("/"):
            assert part in node, ref
            node = node[part]


@pytest.mark.parametrize("model", [CheckIn, IncidentReport, ComplianceChange])
def test_payload_schemas_are_the_models_json_schemas(
    model: type[CheckIn] | type[IncidentReport] | type[ComplianceChange],
) -> None:
    schemas = asyncapi_document()["components"]["schemas"]
    expected = model.model_json_schema(ref_template="#/components/schemas/{model}")
    assert schemas[model.__name__] == expected


def _messages(topic: str) -> list[dict[str, Any]]:
    document = asyncapi_document()
    channel = document["channels"][topic]
    operation = channel.get("publish") or channel["subscribe"]
    refs = operation["message"].get("oneOf", [operation["message"]])
    names = [ref["$ref"].rsplit("/", 1)[1] for ref in refs]
    return [document["components"]["messages"][name] for name in names]


def _ce_types(topic: str) -> set[str]:
    return {m["headers"]["properties"]["ce_type"]["const"] for m in _messages(topic)}


#: Written out, not taken from the constants the producers use, so that a renamed type
#: fails here instead of changing the document and the producers together.
PUBLISHED_CE_TYPES = {
    CHECKINS_TOPIC: {"wangge.checkin.v1"},
    INCIDENTS_TOPIC: {"wangge.incident.v1"},
    ASSIGNMENTS_TOPIC: {"wangge.assignment.checkin.v1", "wangge.assignment.incident.v1"},
    COMPLIANCE_TOPIC: {"wangge.compliance.v1"},
    INCIDENT_STATUS_TOPIC: {"wangge.incident-status.v1"},
    LOCKER_DROPOFFS_TOPIC: {"wangge.locker-dropoff.v1"},
}


@pytest.mark.parametrize("topic", [t for t in ALL_TOPICS if t != DEADLETTER_TOPIC])
def test_wangge_messages_describe_cloudevent_headers_and_their_key(topic: str) -> None:
    for message in _messages(topic):
        assert tuple(message["headers"]["properties"]) == CE_HEADERS
        assert "required" not in message["headers"]  # plain JSON from any client is accepted
        assert message["bindings"]["kafka"]["key"]["type"] == "string"
    assert _ce_types(topic) == PUBLISHED_CE_TYPES[topic]


def _ce_type(record: OutboundRecord) -> str:
    return dict(record.headers)["ce_type"].decode()


def test_the_consumers_records_carry_ce_types_the_document_declares() -> None:
    now = datetime(2020, 9, 7, 2, 0, tzinfo=UTC)
    checkin = parse_checkin(json.dumps(CHECKIN_EXAMPLE).encode(), now=now)
    (checkin_record,) = CheckinAssignments(ASSIGNMENTS_TOPIC).records(
        [json.dumps(CHECKIN_EXAMPLE).encode()],
        [checkin],
        event_ids=[str(checkin.event_id)],
        grid_codes=[None],
        in_assigned_grid=[False],
        rules=["outside_area"],
        flags=[[]],
        assigned_at=now,
    )
    incident_record = assignment_record(
        ASSIGNMENTS_TOPIC,
        INCIDENT_EXAMPLE,
        kind="incident",
        grid_code=None,
        staff_id=None,
        in_assigned_grid=None,
        rule="outside_area",
        flags=[],
        assigned_at=now,
    )
    change = ComplianceChange(
        event_id=uuid.uuid4(),
        worker_id="W00042",
        grid_code="610302001001001",
        week="2020-W37",
        new_status="at_risk",
        counted_patrols=0,
        required_patrols=3,
        changed_at=now,
    )
    assert {_ce_type(checkin_record), _ce_type(incident_record)} == _ce_types(ASSIGNMENTS_TOPIC)
    change_record = compliance_change_record(COMPLIANCE_TOPIC, change)
    assert {_ce_type(change_record)} == _ce_types(COMPLIANCE_TOPIC)


def test_dead_letters_carry_the_reason_headers_and_the_raw_bytes() -> None:
    (message,) = _messages(DEADLETTER_TOPIC)
    headers = message["headers"]
    assert headers["required"] == ["error.reason", "error.detail"]
    assert headers["properties"]["error.reason"]["enum"] == [r.value for r in RefusalReason]
    assert message["contentType"] == "application/octet-stream"


def test_contract_examples_are_valid_events() -> None:
    messages = asyncapi_document()["components"]["messages"]
    for name, model in (("CheckIn", CheckIn), ("IncidentReport", IncidentReport)):
        (example,) = messages[name]["examples"]
        model.model_validate_json(json.dumps(example["payload"]))
