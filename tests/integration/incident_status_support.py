"""Reading `grid.incident-status.v1` as an outside reader would, and the outbox's state."""

import json
from collections import defaultdict
from typing import Any

from cloudevents.core.bindings.kafka import KafkaMessage, from_binary
from cloudevents.core.formats.json import JSONFormat

from tests.integration.pipeline_support import count_rows, read_topic
from tests.integration.test_contract_records import Contract

CHANNEL = "grid.incident-status.v1"
CE_TYPE = "wangge.incident-status.v1"


def checked_body(contract: Contract, record: Any) -> dict[str, Any]:
    """A record's body once its headers (through the CloudEvents SDK's Kafka binding) and
    its value are checked against docs/asyncapi.yaml, and its key against its body."""
    headers = dict(record.headers)
    assert len(headers) == len(record.headers), "a header appears twice"
    event = from_binary(KafkaMessage(headers, record.key, record.value), JSONFormat())
    message = contract.message_of_type(CHANNEL, event.get_type())
    contract.validate({n: v.decode() for n, v in record.headers}, message["headers"])
    body = event.get_data()
    assert isinstance(body, dict)
    contract.validate(body, contract.resolve(message["payload"]["$ref"]))
    assert json.loads(record.value.decode("utf-8")) == body
    assert event.get_id() == body["change_id"]
    assert record.key == body["incident_id"].encode()
    return body


def published_changes(bootstrap: str, topic: str) -> dict[str, list[dict[str, Any]]]:
    """Every change on the topic, each checked against the contract, by incident in the
    order its partition holds them."""
    contract = Contract()
    by_incident: dict[str, list[dict[str, Any]]] = defaultdict(list)
    partitions: dict[str, int] = {}
    records: list[Any] = read_topic(bootstrap, topic)
    for record in records:
        body = checked_body(contract, record)
        incident = body["incident_id"]
        # Keyed by incident: one incident's changes never spread over two partitions.
        assert partitions.setdefault(incident, record.partition) == record.partition
        by_incident[incident].append(body)
    return dict(by_incident)


def unpublished(database_url: str) -> int:
    """Changes the incident outbox holds that are not on the topic yet."""
    return count_rows(
        database_url, "SELECT count(*) FROM incident_status_changes WHERE published_at IS NULL"
    )


def queued(database_url: str) -> int:
    """Every change the incident outbox ever held."""
    return count_rows(database_url, "SELECT count(*) FROM incident_status_changes")
