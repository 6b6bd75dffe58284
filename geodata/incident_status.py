"""Incident status changes on `grid.incident-status.v1`: the model, and its one record builder.

Every move of an incident (its filing as `reported`, each transition of
`geodata.incidents`) becomes one `IncidentStatusChange`, written to the outbox
(`geodata.db.incident_outbox`) in the transaction that makes the move and published from
there once, keyed by incident id. `version` is the incident's version after the change:
1 for the filing, one more for each transition, so a reader sees a gap or a repeat.

What a change carries is what a map, a dashboard or an evaluation needs and nothing
personal: the actor's role, never its name; no description and no note (free text may
name residents). Pure: no Kafka client, no database.
"""

import json
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Annotated, Any, Final, Literal
from uuid import UUID, uuid4

from pydantic import BaseModel, ConfigDict, Field

from geodata.accounts import Role
from geodata.events import Code, EventTime, Latitude, Longitude, WorkerId, cloudevent_headers
from geodata.incidents import Status, Transition
from geodata.records import OutboundRecord

INCIDENT_STATUS_CE_TYPE: Final = "wangge.incident-status.v1"
"""ce_type of every record on the topic."""
INCIDENT_STATUS_SOURCE: Final = "wangge/incidents"
"""ce_source of every record on the topic: the incident workflow, wherever it ran."""

REPORT_ACTION: Final = "report"
"""The action of a filing: the consumer stored the report (立案) as `reported`."""
OVERDUE_ACTION: Final = "overdue"
"""The action of a deadline that passed where no whistle can go higher: the flag alone."""
SYSTEM_ROLE: Final = "system"
"""The actor role of what the platform does by itself (the filing, the deadlines)."""

# Literals rather than the enums, so that the schema names them inline; a unit test holds
# them to `Status`, `Action` and `Role`.
StatusName = Literal[
    "reported", "dispatched", "in_progress", "resolved", "closed", "escalated", "cancelled"
]
ActionName = Literal[
    "report",
    "dispatch",
    "start",
    "resolve",
    "close",
    "reopen",
    "escalate",
    "cancel",
    "confirm_duplicate",
    "split",
    "pick_up",
    "return",
    "overdue",
]
ActorRole = Literal["system", "worker", "supervisor", "admin"]

INCIDENT_STATUS_EXAMPLE: Final[dict[str, Any]] = {
    "change_id": "9a8f6c52-4f1e-4b7a-9d0e-2b4c6d8e0f13",
    "incident_id": "5d0e2a9e-8f0a-4c59-a1c9-3f4f2b0d2c11",
    "version": 2,
    "action": "dispatch",
    "from_status": "reported",
    "to_status": "dispatched",
    "actor_role": "supervisor",
    "at": "2020-09-07T02:10:00+00:00",
    "category": "environment.garbage",
    "grid_code": "610302001001003",
    "community_code": "610302001001",
    "assignee": "W00042",
    "escalated_to": None,
    "lon": 107.1498,
    "lat": 34.3652,
}
"""The status change of docs/EVENTS.md: the example report, dispatched."""


class IncidentStatusChange(BaseModel):
    """A change of an incident's status on `grid.incident-status.v1`, keyed by `incident_id`."""

    # extra="allow": the contract gains optional fields (deadlines, the overdue flag) and a
    # reader of this version keeps working. frozen: a change is a fact.
    model_config = ConfigDict(
        extra="allow",
        frozen=True,
        title="IncidentStatusChange",
        json_schema_extra={"examples": [INCIDENT_STATUS_EXAMPLE]},
    )

    change_id: Annotated[
        UUID,
        Field(strict=True, description="Unique per change (also ce_id): the idempotency key."),
    ]
    incident_id: Annotated[UUID, Field(strict=True, description="The incident; the key.")]
    version: Annotated[
        int,
        Field(
            strict=True,
            ge=1,
            description="The incident's version after the change: 1 for the filing, then "
            "one more per transition (the ETag of GET /api/v1/incidents/{id}).",
        ),
    ]
    action: Annotated[
        ActionName, Field(description="report (the filing), or the transition's action.")
    ]
    from_status: Annotated[
        StatusName | None, Field(description="The status before; null for the filing.")
    ]
    to_status: StatusName
    actor_role: Annotated[
        ActorRole,
        Field(
            description="Who moved it: system (the platform itself), worker, supervisor "
            "or admin; never who by name."
        ),
    ]
    at: Annotated[
        EventTime,
        Field(description="When it changed, RFC 3339: the report's time for the filing."),
    ]
    category: Annotated[
        str, Field(strict=True, min_length=1, max_length=128, description="Normalized code.")
    ]
    grid_code: Annotated[Code | None, Field(description="null: outside every grid.")]
    community_code: Code | None
    assignee: Annotated[
        WorkerId | None, Field(description="The worker who holds it after the change.")
    ]
    escalated_to: Annotated[
        Code | None,
        Field(description="The area code a whistle went to (community, street, district)."),
    ]
    lon: Longitude
    lat: Latitude
    due_at: Annotated[
        EventTime | None,
        Field(
            description="When the stage the change began falls due (docs/DEADLINES.md); null: "
            "never (closed, cancelled, or no deadline for the category)."
        ),
    ] = None
    overdue: Annotated[
        bool,
        Field(
            strict=True,
            description="Past a due moment: set by the deadlines' escalation or mark, cleared "
            "by the next move a person makes.",
        ),
    ] = False


def reported_change(
    *,
    incident_id: UUID,
    category: str,
    grid_code: str | None,
    community_code: str | None,
    assignee: str | None,
    escalated_to: str | None,
    lon: float,
    lat: float,
    reported_at: datetime,
    due_at: datetime | None = None,
) -> IncidentStatusChange:
    """The filing of a report: version 1, `reported`, by the platform, at the report's time.

    `assignee` is the responsible worker the consumer chose, `escalated_to` the community
    a grid without workers hands it to (docs/EVENTS.md): neither moves the status.
    """
    return IncidentStatusChange(
        change_id=uuid4(),
        incident_id=incident_id,
        version=1,
        action=REPORT_ACTION,
        from_status=None,
        to_status=Status.REPORTED.value,
        actor_role=SYSTEM_ROLE,
        at=reported_at.astimezone(UTC),
        category=category,
        grid_code=grid_code,
        community_code=community_code,
        assignee=assignee,
        escalated_to=escalated_to,
        lon=float(lon),
        lat=float(lat),
        due_at=_utc(due_at),
    )


def transition_change(
    *,
    incident_id: UUID,
    transition: Transition,
    actor_role: Role,
    at: datetime,
    category: str,
    grid_code: str | None,
    community_code: str | None,
    lon: float,
    lat: float,
    due_at: datetime | None = None,
    overdue: bool = False,
    action: str | None = None,
) -> IncidentStatusChange:
    """A decided transition as the change it publishes (`action`: another name for it, the
    deadlines' `overdue` mark)."""
    return IncidentStatusChange(
        change_id=uuid4(),
        incident_id=incident_id,
        version=transition.version,
        action=action or transition.action.value,
        from_status=transition.from_status.value,
        to_status=transition.to_status.value,
        actor_role=actor_role.value,
        at=at.astimezone(UTC),
        category=category,
        grid_code=grid_code,
        community_code=community_code,
        assignee=transition.assignee,
        escalated_to=transition.escalated_to,
        lon=float(lon),
        lat=float(lat),
        due_at=_utc(due_at),
        overdue=overdue,
    )


def _utc(moment: datetime | None) -> datetime | None:
    return None if moment is None else moment.astimezone(UTC)


def change_value(change: IncidentStatusChange) -> bytes:
    """The record's value: compact UTF-8 JSON in the model's field order, times as Python
    writes them (UTC, +00:00)."""
    body = change.model_dump(mode="json")
    body["at"] = change.at.isoformat()
    if change.due_at is not None:
        body["due_at"] = change.due_at.isoformat()
    return json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode()


def incident_status_record(topic: str, value: bytes) -> OutboundRecord:
    """The record of a change's value (`change_value`, as the outbox keeps it): keyed by
    its incident, with CloudEvents headers whose ce_id is its change_id."""
    body: Mapping[str, Any] = json.loads(value)
    return OutboundRecord(
        topic=topic,
        key=str(body["incident_id"]).encode(),
        value=value,
        headers=cloudevent_headers(
            event_id=str(body["change_id"]),
            ce_type=INCIDENT_STATUS_CE_TYPE,
            source=INCIDENT_STATUS_SOURCE,
            time=str(body["at"]),
        ),
    )


def parse_incident_status_change(raw: bytes) -> IncidentStatusChange:
    """Read a `grid.incident-status.v1` value; raises pydantic's ValidationError if malformed."""
    return IncidentStatusChange.model_validate_json(raw)
