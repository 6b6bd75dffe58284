"""The published AsyncAPI document is generated from the models and kept in step with them."""

import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from geodata.asyncapi import asyncapi_document, render_asyncapi_yaml
from geodata.contract import ALL_TOPICS, DEADLETTER_TOPIC
from geodata.events import (
    CE_HEADERS,
    CE_TYPES,
    CheckIn,
    ComplianceChange,
    IncidentReport,
    RefusalReason,
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


def _message(topic: str) -> dict[str, Any]:
    document = asyncapi_document()
    channel = document["channels"][topic]
    operation = channel.get("publish") or channel["subscribe"]
    name = operation["message"]["$ref"].rsplit("/", 1)[1]
    message: dict[str, Any] = document["components"]["messages"][name]
    return message


@pytest.mark.parametrize("topic", [t for t in ALL_TOPICS if t != DEADLETTER_TOPIC])
def test_wangge_messages_describe_cloudevent_headers_and_their_key(topic: str) -> None:
    message = _message(topic)
    assert tuple(message["headers"]["properties"]) == CE_HEADERS
    assert "required" not in message["headers"]  # plain JSON from any client is accepted
    assert message["headers"]["properties"]["ce_type"]["const"] == CE_TYPES[topic]
    assert message["bindings"]["kafka"]["key"]["type"] == "string"


def test_dead_letters_carry_the_reason_headers_and_the_raw_bytes() -> None:
    message = _message(DEADLETTER_TOPIC)
    headers = message["headers"]
    assert headers["required"] == ["error.reason", "error.detail"]
    assert headers["properties"]["error.reason"]["enum"] == [r.value for r in RefusalReason]
    assert message["contentType"] == "application/octet-stream"


def test_contract_examples_are_valid_events() -> None:
    messages = asyncapi_document()["components"]["messages"]
    for name, model in (("CheckIn", CheckIn), ("IncidentReport", IncidentReport)):
        (example,) = messages[name]["examples"]
        model.model_validate_json(json.dumps(example["payload"]))
