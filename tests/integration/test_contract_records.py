"""Every record a pipeline run produces, read by readers that share no code with wangge.

A real consumer process turns check-ins and incidents into assignments, compliance changes
and dead letters; each record is then read off its topic and checked with the CloudEvents
SDK's Kafka binary binding (the headers) and `jsonschema` against the schemas of the
published docs/asyncapi.yaml (the bodies, the keys, the dead letters' headers).
"""

import json
import re
import uuid
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml
from cloudevents.core.bindings.kafka import KafkaMessage, from_binary
from cloudevents.core.formats.json import JSONFormat
from kafka import KafkaProducer

from geodata.contract import Topics
from tests.integration.pipeline_support import (
    WEEK_START,
    ConsumerProcess,
    checkin_event,
    count_rows,
    keep_assigned_only,
    placements,
    read_topic,
    wait_until,
)

pytestmark = pytest.mark.integration

ASYNCAPI = Path(__file__).resolve().parents[2] / "docs" / "asyncapi.yaml"
# RFC 3339's date-time, written out here: jsonschema checks the format only with an
# optional package, and the point is not to trust pydantic's reading of it.
RFC3339 = re.compile(r"\d{4}-\d\d-\d\d[Tt]\d\d:\d\d:\d\d(\.\d+)?([Zz]|[+-]\d\d:\d\d)", re.ASCII)
FORMATS = jsonschema.FormatChecker(["uuid"])
FORMATS.checks("date-time")(
    lambda value: not isinstance(value, str) or bool(RFC3339.fullmatch(value))
)

Record = Any  # kafka-python's ConsumerRecord: topic, key, value, headers


class Contract:
    """docs/asyncapi.yaml as a reader outside wangge sees it."""

    def __init__(self) -> None:
        self.document = yaml.safe_load(ASYNCAPI.read_text(encoding="utf-8"))

    def messages(self, channel: str) -> list[dict[str, Any]]:
        """The messages a channel declares, resolved."""
        operation = self.document["channels"][channel]["subscribe"]
        refs = operation["message"].get("oneOf", [operation["message"]])
        return [self.resolve(ref["$ref"]) for ref in refs]

    def message_of_type(self, channel: str, ce_type: str) -> dict[str, Any]:
        """The channel's message whose ce_type is `ce_type`; fails if it declares none."""
        by_type = {
            m["headers"]["properties"]["ce_type"]["const"]: m for m in self.messages(channel)
        }
        assert ce_type in by_type, f"{channel} declares {sorted(by_type)}, not {ce_type}"
        return by_type[ce_type]

    def resolve(self, ref: str) -> dict[str, Any]:
        """A `#/…` reference inside the document."""
        node: Any = self.document
        for part in ref.removeprefix("#/").split("/"):
            node = node[part]
        assert isinstance(node, dict)
        return node

    def validate(self, instance: object, schema: dict[str, Any]) -> None:
        """jsonschema validation with the document's components in reach of `$ref`."""
        root = {**schema, "components": self.document["components"]}
        validator = jsonschema.Draft202012Validator(root, format_checker=FORMATS)
        errors = sorted(validator.iter_errors(instance), key=str)
        assert not errors, f"{instance!r}: {errors[0].message}"


def _text_headers(record: Record) -> dict[str, str]:
    return {name: value.decode("utf-8") for name, value in record.headers}


def _cloudevent(record: Record) -> Any:
    """The record through the CloudEvents SDK's Kafka binary-mode binding."""
    headers = dict(record.headers)
    assert len(headers) == len(record.headers), "a header appears twice"
    return from_binary(KafkaMessage(headers, record.key, record.value), JSONFormat())


def _check_cloudevent(contract: Contract, channel: str, record: Record) -> dict[str, Any]:
    """Validate a record of a CloudEvents channel; return its body."""
    event = _cloudevent(record)
    message = contract.message_of_type(channel, event.get_type())
    contract.validate(_text_headers(record), message["headers"])
    assert event.get_specversion() == "1.0"
    body = event.get_data()
    assert isinstance(body, dict)
    assert event.get_id() == body["event_id"]
    assert event.get_time() is not None
    assert event.get_time().tzinfo is not None
    contract.validate(body, contract.resolve(message["payload"]["$ref"]))
    # The body as raw bytes too: UTF-8 JSON, one object, what the SDK decoded.
    assert json.loads(record.value.decode("utf-8")) == body
    return body


def _produce(bootstrap: str, topic: str, records: list[tuple[bytes, bytes, list[Any]]]) -> None:
    producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all")
    try:
        for key, value, headers in records:
            producer.send(topic, key=key, value=value, headers=headers)
        producer.flush(timeout=60)
    finally:
        producer.close()


def _incident(lon: float, lat: float, category: str, **extra: object) -> dict[str, object]:
    event_id = str(uuid.uuid4())
    return {
        "event_id": event_id,
        "incident_id": event_id,
        "category": category,
        "description": "井盖缺失",
        "lon": lon,
        "lat": lat,
        "reported_at": WEEK_START.isoformat(),
        "source": "resident",
        **extra,
    }


def test_every_output_topic_holds_what_the_published_contract_declares(
    reference_database_url: str,
    kafka_bootstrap: str,
    topic_factory: Callable[..., Topics],
    tmp_path: Path,
) -> None:
    url = reference_database_url
    topics = topic_factory()
    spots = placements(url, per_grid=1, seed=7)
    ours, elsewhere = spots[:3], spots[-1]
    # An incident elsewhere then has nobody to go to, so it is escalated.
    keep_assigned_only(url, (s.worker_id for s in ours))

    checkins = [
        checkin_event(s.worker_id, s.lon, s.lat, minutes=10 * i + 60 * n)
        for n, s in enumerate(ours)
        for i in range(4)
    ]
    first = ours[0]
    checkins += [
        checkin_event(first.worker_id, first.lon, first.lat, 300, battery=0.4, app={"v": [1]}),
        # An extra field named like an assignment field: the assignment's value wins.
        checkin_event(first.worker_id, first.lon, first.lat, 301, grid_code="from the phone"),
        checkin_event(first.worker_id, 100.0, 30.0, 302),  # outside every grid
    ]
    stranger = checkin_event("W99999", first.lon, first.lat, 303)
    refused_checkins = [b'{"event_id": ', json.dumps(stranger).encode()]
    checkin_records: list[tuple[bytes, bytes, list[Any]]] = [
        (str(e["worker_id"]).encode(), json.dumps(e, ensure_ascii=False).encode(), [])
        for e in checkins
    ]
    refused_ce = [("ce_id", str(uuid.uuid4()).encode()), ("ce_type", b"wangge.checkin.v1")]
    checkin_records += [
        (b"W1", refused_checkins[0], refused_ce),
        (b"W99999", refused_checkins[1], []),
    ]
    incidents = [
        _incident(first.lon, first.lat, "environment.garbage"),
        _incident(elsewhere.lon, elsewhere.lat, "no.such.category", ticket=12345),
        _incident(100.0, 30.0, "environment.garbage"),
    ]
    refused_incident = json.dumps({**incidents[0], "source": "drone"}).encode()
    incident_records: list[tuple[bytes, bytes, list[Any]]] = [
        (str(e["incident_id"]).encode(), json.dumps(e, ensure_ascii=False).encode(), [])
        for e in incidents
    ]
    incident_records.append((b"x", refused_incident, []))
    _produce(kafka_bootstrap, topics.checkins, checkin_records)
    _produce(kafka_bootstrap, topics.incidents, incident_records)

    process = ConsumerProcess(url, kafka_bootstrap, topics, "contract", tmp_path).start()
    try:
        wait_until(
            lambda: (
                count_rows(url, "SELECT count(*) FROM checkins") == len(checkins)
                and count_rows(url, "SELECT count(*) FROM incidents") == len(incidents)
                # The compliance stage has folded every check-in in.
                and count_rows(url, "SELECT count(*) FROM patrol_checkins") == len(checkins)
                and len(read_topic(kafka_bootstrap, topics.deadletter)) == 3
            ),
            180,
            "every event stored or refused, and every check-in folded into compliance",
        )
    finally:
        # Stopping publishes what the outbox still holds.
        assert process.stop() == 0, process.log()
    unpublished = "SELECT count(*) FROM compliance_changes WHERE published_at IS NULL"
    assert count_rows(url, unpublished) == 0

    contract = Contract()

    assignments: list[Record] = read_topic(kafka_bootstrap, topics.assignments)
    assert len(assignments) == len(checkins) + len(incidents)
    kinds: Counter[str] = Counter()
    for record in assignments:
        body = _check_cloudevent(contract, "grid.assignments.v1", record)
        kinds[dict(record.headers)["ce_type"].decode()] += 1
        # Keyed by grid_code; outside every grid, no key.
        assert record.key == (body["grid_code"].encode() if body["grid_code"] else None)
    assert kinds == {
        "wangge.assignment.checkin.v1": len(checkins),
        "wangge.assignment.incident.v1": len(incidents),
    }
    bodies = {json.loads(r.value)["event_id"]: json.loads(r.value) for r in assignments}
    assert bodies[checkins[-3]["event_id"]]["app"] == {"v": [1]}
    assert bodies[checkins[-2]["event_id"]]["grid_code"] == first.grid_code
    assert bodies[checkins[-1]["event_id"]]["assignment_rule"] == "outside_area"
    assert bodies[incidents[1]["event_id"]]["escalated_to"] is not None
    assert bodies[incidents[1]["event_id"]]["ticket"] == 12345

    changes: list[Record] = read_topic(kafka_bootstrap, topics.compliance)
    assert len(changes) == count_rows(url, "SELECT count(*) FROM compliance_changes")
    for record in changes:
        body = _check_cloudevent(contract, "grid.compliance.v1", record)
        assert record.key == body["worker_id"].encode()
    assert {json.loads(r.value)["worker_id"] for r in changes} >= {s.worker_id for s in ours}

    (dead_letter_message,) = contract.messages("grid.deadletter.v1")
    letters: list[Record] = read_topic(kafka_bootstrap, topics.deadletter)
    for record in letters:
        contract.validate(_text_headers(record), dead_letter_message["headers"])
    by_value = {r.value: r for r in letters}
    assert set(by_value) == {*refused_checkins, refused_incident}
    invalid_json = _text_headers(by_value[refused_checkins[0]])
    assert invalid_json["error.reason"] == "invalid_json"
    assert invalid_json["source.topic"] == topics.checkins
    # The refused record's CloudEvents headers follow, so its origin can be traced.
    assert list(by_value[refused_checkins[0]].headers)[-2:] == refused_ce
    assert _text_headers(by_value[refused_incident])["source.topic"] == topics.incidents
