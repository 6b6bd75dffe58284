"""The AsyncAPI 2.6 document of the event contract, built from the models themselves.

docs/asyncapi.yaml is this module's output, so the published contract cannot drift from
the code that enforces it: `.venv/bin/python -m geodata.asyncapi > docs/asyncapi.yaml`.
"""

import sys
from typing import Any, Final

import yaml
from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

from geodata.contract import (
    ASSIGNMENTS_TOPIC,
    CHECKINS_TOPIC,
    COMPLIANCE_TOPIC,
    DEADLETTER_TOPIC,
    INCIDENT_STATUS_TOPIC,
    INCIDENTS_TOPIC,
    LOCKER_DROPOFFS_TOPIC,
)
from geodata.events import (
    ASSIGNMENT_CE_TYPES,
    CE_SPECVERSION,
    CE_TYPES,
    CHECKIN_EXAMPLE,
    INCIDENT_EXAMPLE,
    MAX_EVENT_BYTES,
    CheckIn,
    CheckInAssignment,
    ComplianceChange,
    IncidentAssignment,
    IncidentReport,
    RefusalReason,
)
from geodata.incident_status import (
    INCIDENT_STATUS_CE_TYPE,
    INCIDENT_STATUS_EXAMPLE,
    IncidentStatusChange,
)
from geodata.lockers import LOCKER_DROPOFF_CE_TYPE, LOCKER_DROPOFF_EXAMPLE, LockerDropOff
from geodata.records import (
    DEADLETTER_DETAIL_HEADER,
    DEADLETTER_REASON_HEADER,
    DEADLETTER_SOURCE_HEADERS,
    MAX_DETAIL_BYTES,
)

ASYNCAPI_VERSION: Final = "2.6.0"
CONTRACT_VERSION: Final = "1.0.0"
_KAFKA_BINDING_VERSION: Final = "0.4.0"
_SCHEMAS_REF: Final = "#/components/schemas/{model}"

_MODELS: Final[tuple[type[BaseModel], ...]] = (
    CheckIn,
    IncidentReport,
    CheckInAssignment,
    IncidentAssignment,
    ComplianceChange,
    IncidentStatusChange,
    LockerDropOff,
)


def _ref(name: str, kind: str = "schemas") -> dict[str, str]:
    return {"$ref": f"#/components/{kind}/{name}"}


def _key_binding(description: str) -> dict[str, Any]:
    return {
        "kafka": {
            "key": {"type": "string", "description": description},
            "bindingVersion": _KAFKA_BINDING_VERSION,
        }
    }


def _cloudevent_headers(ce_type: str) -> dict[str, Any]:
    # Not required: consumers accept a plain JSON value from any client (docs/EVENTS.md).
    return {
        "type": "object",
        "description": "CloudEvents 1.0 binary-mode headers, UTF-8; set on what wangge "
        "produces, never required of other producers.",
        "properties": {
            "ce_specversion": {"type": "string", "const": CE_SPECVERSION},
            "ce_id": {
                "type": "string",
                "format": "uuid",
                "description": "The event_id (a status change's change_id).",
            },
            "ce_source": {
                "type": "string",
                "description": "Who produced it, e.g. wangge/gateway, wangge/consumers or "
                "wangge/incidents.",
            },
            "ce_type": {"type": "string", "const": ce_type},
            "ce_time": {
                "type": "string",
                "format": "date-time",
                "description": "The event's time, RFC 3339: recorded_at, reported_at, "
                "assigned_at, changed_at or at.",
            },
        },
    }


def _deadletter_headers() -> dict[str, Any]:
    source_topic, source_partition, source_offset = DEADLETTER_SOURCE_HEADERS
    return {
        "type": "object",
        "description": "UTF-8. The refused record's own CloudEvents headers (ce_*), if it "
        "had any, follow these.",
        "required": [DEADLETTER_REASON_HEADER, DEADLETTER_DETAIL_HEADER],
        "properties": {
            DEADLETTER_REASON_HEADER: {
                "type": "string",
                "enum": [reason.value for reason in RefusalReason],
                "description": "Stable machine code of the refusal.",
            },
            DEADLETTER_DETAIL_HEADER: {
                "type": "string",
                "description": f"Human explanation, at most {MAX_DETAIL_BYTES} bytes; "
                "never parse it.",
            },
            source_topic: {"type": "string", "description": "The topic it was read from."},
            source_partition: {
                "type": "string",
                "pattern": "^[0-9]+$",
                "description": "Its partition there, in decimal.",
            },
            source_offset: {
                "type": "string",
                "pattern": "^[0-9]+$",
                "description": "Its offset there, in decimal.",
            },
        },
    }


def _messages() -> dict[str, Any]:
    events: dict[str, tuple[dict[str, Any] | None, str, str, str]] = {
        "CheckIn": (CHECKIN_EXAMPLE, CE_TYPES[CHECKINS_TOPIC], "worker_id", "A worker's GPS fix."),
        "IncidentReport": (
            INCIDENT_EXAMPLE,
            CE_TYPES[INCIDENTS_TOPIC],
            "incident_id",
            "An incident reported by a worker, a resident, the 12345 hotline, a locker or "
            "a sensor.",
        ),
        "ComplianceChange": (
            None,
            CE_TYPES[COMPLIANCE_TOPIC],
            "worker_id",
            "A change of a worker's weekly patrol status in one grid, published once.",
        ),
        "IncidentStatusChange": (
            INCIDENT_STATUS_EXAMPLE,
            INCIDENT_STATUS_CE_TYPE,
            "incident_id",
            "A change of an incident's status (its filing, then each transition), published "
            "once, in version order per incident.",
        ),
        "LockerDropOff": (
            LOCKER_DROPOFF_EXAMPLE,
            LOCKER_DROPOFF_CE_TYPE,
            "locker_id",
            "Documents a resident dropped into a cloud locker's compartment (docs/LOCKERS.md).",
        ),
    }
    messages: dict[str, Any] = {}
    for name, (example, ce_type, key, summary) in events.items():
        messages[name] = {
            "messageId": name,
            "name": name,
            "title": name,
            "summary": summary,
            "contentType": "application/json",
            "headers": _cloudevent_headers(ce_type),
            "payload": _ref(name),
            "bindings": _key_binding(f"The event's {key}, UTF-8."),
        }
        if example is not None:
            messages[name]["examples"] = [{"name": f"{name} of docs/EVENTS.md", "payload": example}]
    assignments = {
        "CheckInAssignment": (ASSIGNMENT_CE_TYPES["checkin"], "A check-in"),
        "IncidentAssignment": (ASSIGNMENT_CE_TYPES["incident"], "An incident report"),
    }
    for name, (ce_type, what) in assignments.items():
        messages[name] = {
            "messageId": name,
            "name": name,
            "title": name,
            "summary": f"{what}, unchanged, plus its grid, area codes and staff member.",
            "contentType": "application/json",
            "headers": _cloudevent_headers(ce_type),
            "payload": _ref(name),
            "bindings": _key_binding("The grid_code, UTF-8; none for outside_area."),
        }
    messages["DeadLetter"] = {
        "messageId": "DeadLetter",
        "name": "DeadLetter",
        "title": "DeadLetter",
        "summary": "The raw bytes of a refused event, unchanged, with the reason.",
        "contentType": "application/octet-stream",
        "headers": _deadletter_headers(),
        "payload": {
            "type": "string",
            "format": "binary",
            "description": f"The refused value as it arrived (at most {MAX_EVENT_BYTES} bytes "
            "are parsed; larger values are refused as payload_too_large).",
        },
        "bindings": _key_binding("The original record's key, unchanged."),
    }
    return messages


def _channels() -> dict[str, Any]:
    # AsyncAPI 2.x speaks from the platform's side: "publish" means others send to wangge,
    # "subscribe" means others may read what wangge sends.
    def send(topic_summary: str, message: str, operation_id: str) -> dict[str, Any]:
        return {
            "publish": {
                "operationId": operation_id,
                "summary": topic_summary,
                "message": _ref(message, "messages"),
            }
        }

    def receive(topic_summary: str, operation_id: str, *messages: str) -> dict[str, Any]:
        refs = [_ref(message, "messages") for message in messages]
        return {
            "subscribe": {
                "operationId": operation_id,
                "summary": topic_summary,
                "message": refs[0] if len(refs) == 1 else {"oneOf": refs},
            }
        }

    return {
        CHECKINS_TOPIC: {
            "description": "Check-ins, keyed by worker_id so that each worker's fixes stay "
            "in order within a partition; nothing relies on order across workers.",
            **send(
                "Phones (through POST /api/v1/checkins) or any Kafka client.",
                "CheckIn",
                "sendCheckIn",
            ),
        },
        INCIDENTS_TOPIC: {
            "description": "Incident reports, keyed by incident_id.",
            **send("The gateway, workers and other systems.", "IncidentReport", "sendIncident"),
        },
        ASSIGNMENTS_TOPIC: {
            "description": "Each accepted event with the grid it falls in, keyed by grid_code.",
            **receive(
                "Produced by the consumers; the ce_type, or incident_id in the value (only "
                "incidents have one), tells a check-in's from an incident's.",
                "receiveAssignment",
                "CheckInAssignment",
                "IncidentAssignment",
            ),
        },
        COMPLIANCE_TOPIC: {
            "description": "Patrol-compliance status changes, keyed by worker_id.",
            **receive(
                "Produced by the compliance engine.", "receiveCompliance", "ComplianceChange"
            ),
        },
        DEADLETTER_TOPIC: {
            "description": "Refused events: never dropped silently, never stopping a consumer.",
            **receive("Produced by the consumers.", "receiveDeadLetter", "DeadLetter"),
        },
        INCIDENT_STATUS_TOPIC: {
            "description": "Incident status changes, keyed by incident_id: each incident's "
            "changes in one partition, in version order.",
            **receive(
                "Published from the incident outbox (filings by the incident consumer, "
                "transitions by the API).",
                "receiveIncidentStatus",
                "IncidentStatusChange",
            ),
        },
        LOCKER_DROPOFFS_TOPIC: {
            "description": "Cloud lockers' drop-offs, keyed by locker_id. Each becomes an "
            "incident report of source locker on grid.incidents.v1, whose incident_id is the "
            "drop-off's event_id.",
            **send("The cloud lockers' system.", "LockerDropOff", "sendLockerDropOff"),
        },
    }


def _schemas() -> dict[str, Any]:
    _, top = models_json_schema(
        [(model, "validation") for model in _MODELS], ref_template=_SCHEMAS_REF
    )
    definitions: dict[str, Any] = top["$defs"]
    return {name: definitions[name] for name in sorted(definitions)}


def asyncapi_document() -> dict[str, Any]:
    """The AsyncAPI 2.6 document of the contract's topics; the same on every call."""
    return {
        "asyncapi": ASYNCAPI_VERSION,
        "id": "urn:wangge:events",
        "info": {
            "title": "wangge events",
            "version": CONTRACT_VERSION,
            "description": "The Kafka event contract of wangge (docs/EVENTS.md). Keys are "
            "UTF-8 strings, values UTF-8 JSON objects. Extending a payload with optional "
            "fields is allowed; renaming or removing one needs a new topic version. "
            "Generated by geodata/asyncapi.py: do not edit by hand.",
            "license": {
                "name": "Apache-2.0",
                "url": "https://www.apache.org/licenses/LICENSE-2.0",
            },
        },
        "tags": [
            {"name": "grid", "description": "Urban grid governance (网格化管理) in Baoji."},
            {"name": "kafka", "description": "Topics of one Kafka-compatible broker."},
        ],
        "defaultContentType": "application/json",
        "servers": {
            "local": {
                "url": "127.0.0.1:9092",
                "protocol": "kafka",
                "description": "The local broker that `wangge up` starts; configure another "
                "with WANGGE_KAFKA_BOOTSTRAP.",
            }
        },
        "channels": _channels(),
        "components": {"messages": _messages(), "schemas": _schemas()},
    }


def render_asyncapi_yaml() -> str:
    """The document as YAML, in the fixed order it is built in (contract field order)."""
    return yaml.safe_dump(
        asyncapi_document(), sort_keys=False, allow_unicode=True, width=100, indent=2
    )


if __name__ == "__main__":
    # Bytes, not text: the file is UTF-8 whatever the locale of the shell redirecting it.
    sys.stdout.buffer.write(render_asyncapi_yaml().encode())
