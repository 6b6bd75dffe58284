"""The event contract (docs/EVENTS.md) as pydantic models, the rules that refuse events,
and the decoders of every topic's values.

Pure: no Kafka, no web framework. Consumers parse raw Kafka values with `parse_checkin`
and `parse_incident`; the HTTP gateway runs the very same functions on each posted object,
so an event the gateway accepts is never refused downstream for its shape. The records
wangge produces are built from these models in `geodata.records`.
"""

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Annotated, Any, Final, Literal, Self, TypeVar
from uuid import UUID

from pydantic import (
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    Tag,
    TypeAdapter,
    ValidationError,
    model_validator,
)
from pydantic_core import PydanticCustomError

from geodata.categories import normalize_category
from geodata.contract import CHECKINS_TOPIC, COMPLIANCE_TOPIC, INCIDENTS_TOPIC
from geodata.crs import DEFAULT_CRS, Crs
from geodata.errors import WanggeError
from geodata.storable import Unstorable, check_storable

MAX_EVENT_BYTES: Final = 65536
"""Largest accepted event value; a check-in is ~250 bytes, so this only stops abuse."""

CONTENT_ID_PATTERN: Final = r"^[0-9a-f]{64}$"
"""An attachment's content id: the SHA-256 of its stored bytes, 64 lowercase hex digits."""

MAX_REPORT_ATTACHMENTS: Final = 3
"""Photos one incident report may name (geodata.attachments keeps them)."""

MAX_CLOCK_SKEW: Final = timedelta(minutes=5)
"""An event time further than this ahead of the server clock is refused."""

EARLIEST_EVENT_TIME: Final = datetime(2000, 1, 1, tzinfo=UTC)
"""No event is older than this, whatever the settings: it keeps every accepted time far
inside what Python (years 1 to 9999, in UTC too) and PostgreSQL can hold, and no phone
that can post to wangge took a fix before it."""


@dataclass(frozen=True)
class EventTimeLimits:
    """How far from the server's clock an event time may be.

    `max_age` None keeps only the fixed floor (`EARLIEST_EVENT_TIME`), for replays of
    history; a deployment sets it from `WANGGE_EVENT_MAX_AGE_DAYS`.
    """

    max_age: timedelta | None = None
    max_skew: timedelta = MAX_CLOCK_SKEW


DEFAULT_TIME_LIMITS: Final = EventTimeLimits()
"""The fixed floor and the clock skew only: what code that is not configured applies."""


class RefusalReason(StrEnum):
    """Why an event was refused; the values are a public contract (`error.reason`)."""

    INVALID_JSON = "invalid_json"
    MISSING_FIELD = "missing_field"
    INVALID_FIELD = "invalid_field"
    COORDINATE_OUT_OF_RANGE = "coordinate_out_of_range"
    UNKNOWN_WORKER = "unknown_worker"
    FUTURE_TIMESTAMP = "future_timestamp"
    PAYLOAD_TOO_LARGE = "payload_too_large"
    UNSUPPORTED_CRS = "unsupported_crs"
    STALE_TIMESTAMP = "stale_timestamp"
    INCIDENT_EXISTS = "incident_exists"
    UNPROCESSABLE = "unprocessable"


class EventRefused(WanggeError):
    """An event that breaks the contract; it goes to the dead letters with `reason`."""

    code = "event_refused"

    def __init__(self, reason: RefusalReason, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail

    def __reduce__(self) -> tuple[type[Self], tuple[RefusalReason, str]]:
        # Pickle by the constructor's arguments, so refusals cross process boundaries.
        return type(self), (self.reason, self.detail)


# --- field types -----------------------------------------------------------------------
# strict=True: JSON gives no excuse for "107.15" as a number or 42 as an id, and a producer
# that sends them has a bug we want to see in the dead letters rather than guess around.

EventId = Annotated[
    UUID, Field(strict=True, description="UUID chosen by the producer; the idempotency key.")
]
WorkerId = Annotated[
    str,
    Field(strict=True, min_length=1, max_length=64, description="A worker's id, e.g. W00042."),
]
Code = Annotated[str, Field(strict=True, min_length=1, max_length=64)]
Longitude = Annotated[
    float,
    Field(strict=True, ge=-180.0, le=180.0, allow_inf_nan=False, description="Decimal degrees."),
]
Latitude = Annotated[
    float,
    Field(strict=True, ge=-90.0, le=90.0, allow_inf_nan=False, description="Decimal degrees."),
]
EventTime = Annotated[
    AwareDatetime, Field(strict=True, description="RFC 3339 with an offset: the event time.")
]
IncidentSource = Literal["worker", "resident", "hotline", "locker", "sensor"]
AssignmentRule = Literal[
    "contains", "boundary_tiebreak", "nearest_within_tolerance", "outside_area"
]
ComplianceStatus = Literal["met", "on_track", "at_risk", "missed"]
CrsField = Annotated[
    Crs,
    Field(description="EPSG:4326 (default), EPSG:4490 (CGCS2000, as WGS84) or GCJ-02."),
]

# The error types that pydantic-core raises for each refusal; checked in this order so
# that the structural problem is the one reported when an event has several.
_NULL_ISLAND = "null_island"
_REPORTER_REQUIRED = "reporter_required"
_COORDINATE_TYPES: Final = frozenset({"finite_number", "greater_than_equal", "less_than_equal"})
_PRIORITY: Final = (
    RefusalReason.INVALID_JSON,
    RefusalReason.MISSING_FIELD,
    RefusalReason.INVALID_FIELD,
    RefusalReason.UNSUPPORTED_CRS,
    RefusalReason.COORDINATE_OUT_OF_RANGE,
)


CHECKIN_EXAMPLE: Final[dict[str, Any]] = {
    "event_id": "0b6f3c1e-3a59-4f36-9d55-0c3b3e2b8f10",
    "worker_id": "W00042",
    "lon": 107.1523,
    "lat": 34.3671,
    "recorded_at": "2020-09-07T09:15:00+08:00",
    "accuracy_m": 8.0,
    "crs": "EPSG:4326",
}
"""The check-in of docs/EVENTS.md."""

INCIDENT_EXAMPLE: Final[dict[str, Any]] = {
    "event_id": "5d0e2a9e-8f0a-4c59-a1c9-3f4f2b0d2c11",
    "incident_id": "5d0e2a9e-8f0a-4c59-a1c9-3f4f2b0d2c11",
    "category": "environment.garbage",
    "description": "垃圾堆放在楼道口",
    "lon": 107.1498,
    "lat": 34.3652,
    "reported_at": "2020-09-07T10:02:00+08:00",
    "source": "worker",
    "reporter_id": "W00042",
}
"""The incident report of docs/EVENTS.md."""


class _Event(BaseModel):
    # extra="allow": producers may extend payloads (docs/EVENTS.md), and the extra fields must
    # survive into the assignment. frozen: an event is a fact.
    model_config = ConfigDict(extra="allow", frozen=True)


def _reject_null_island(lon: float, lat: float) -> None:
    # Phones report (0, 0) when they have no fix yet; it is never a place in Baoji.
    if lon == 0.0 and lat == 0.0:
        raise PydanticCustomError(_NULL_ISLAND, "(0, 0) is a missing GPS fix, not a position")


class CheckIn(_Event):
    """A worker's GPS fix on `grid.checkins.v1`, keyed by `worker_id`."""

    model_config = ConfigDict(
        title="CheckIn",
        json_schema_extra={"examples": [CHECKIN_EXAMPLE]},
    )

    event_id: EventId
    worker_id: WorkerId
    lon: Longitude
    lat: Latitude
    recorded_at: EventTime
    accuracy_m: (
        Annotated[
            float,
            Field(strict=True, ge=0.0, allow_inf_nan=False, description="Phone's accuracy, m."),
        ]
        | None
    ) = None
    mock: (
        Annotated[
            bool,
            Field(
                strict=True,
                description="True when the phone or tracking app says the position came"
                " from a mock-location provider; such a fix is no proof of presence.",
            ),
        ]
        | None
    ) = None
    crs: CrsField = DEFAULT_CRS

    @model_validator(mode="after")
    def _located(self) -> Self:
        _reject_null_island(self.lon, self.lat)
        return self


class IncidentReport(_Event):
    """An incident on `grid.incidents.v1`, keyed by `incident_id`."""

    model_config = ConfigDict(
        title="IncidentReport",
        json_schema_extra={"examples": [INCIDENT_EXAMPLE]},
    )

    event_id: EventId
    # A UUID, as the incidents table's key: another system with ticket numbers of its own
    # derives one (uuid5 of the number) and may send the number as an extra field.
    incident_id: Annotated[
        UUID,
        Field(strict=True, description="The incident's id; several events may share it."),
    ]
    category: Annotated[
        str,
        Field(
            strict=True,
            min_length=1,
            max_length=128,
            description="A code of CATEGORIES; an unknown one is kept and read as "
            "other.unclassified, flagged.",
        ),
    ]
    description: Annotated[str, Field(strict=True)] | None = None
    lon: Longitude
    lat: Latitude
    reported_at: EventTime
    source: IncidentSource
    reporter_id: Annotated[str, Field(strict=True, min_length=1, max_length=64)] | None = None
    crs: CrsField = DEFAULT_CRS
    attachments: (
        Annotated[
            list[Annotated[str, Field(strict=True, pattern=CONTENT_ID_PATTERN)]],
            Field(
                max_length=MAX_REPORT_ATTACHMENTS,
                description="Content ids (SHA-256, hex) of photos uploaded with "
                "POST /api/v1/attachments, in the order shown.",
            ),
        ]
        | None
    ) = None

    @model_validator(mode="after")
    def _located_and_attributed(self) -> Self:
        _reject_null_island(self.lon, self.lat)
        if self.source == "worker" and self.reporter_id is None:
            raise PydanticCustomError(
                _REPORTER_REQUIRED, "reporter_id is required when source is worker"
            )
        return self

    @property
    def normalized_category(self) -> tuple[str, bool]:
        """The platform category and whether it was unknown (see `normalize_category`)."""
        return normalize_category(self.category)


class _AssignmentFields(_Event):
    grid_code: Code | None = Field(description="None only when assignment_rule is outside_area.")
    community_code: Code | None
    street_code: Code | None
    district_code: Code | None
    staff_id: WorkerId | None = Field(
        description="The responsible worker; for a check-in, the poster."
    )
    in_assigned_grid: bool | None = Field(
        description="Check-ins: whether the poster is assigned to that grid; None for incidents."
    )
    assignment_rule: AssignmentRule
    assigned_at: EventTime
    flags: list[str] = Field(default_factory=list, description="Notes, e.g. category_unknown.")

    @model_validator(mode="after")
    def _grid_unless_outside(self) -> Self:
        if self.grid_code is None and self.assignment_rule != "outside_area":
            raise PydanticCustomError("missing", "grid_code is required unless outside_area")
        return self


# The assignment fields come first among the bases so that they come last in the payload,
# after the input event's own fields (pydantic orders fields from the most basic class).
class CheckInAssignment(_AssignmentFields, CheckIn):
    """A check-in on `grid.assignments.v1`: the input event plus its grid and staff."""

    model_config = ConfigDict(title="CheckInAssignment", json_schema_extra=None)


#: The fields an assignment adds to its input event, in payload order.
ASSIGNMENT_FIELDS: tuple[str, ...] = tuple(
    name for name in _AssignmentFields.model_fields if name not in _Event.model_fields
)


class IncidentAssignment(_AssignmentFields, IncidentReport):
    """An incident on `grid.assignments.v1`: the input event plus its grid and staff."""

    model_config = ConfigDict(title="IncidentAssignment", json_schema_extra=None)


AssignmentKind = Literal["checkin", "incident"]
"""What an assignment assigns; also the tag of `Assignment`'s two members."""


def _assignment_kind(value: Any) -> AssignmentKind:
    # Only incidents carry incident_id; a dict (JSON) or a model may come in.
    if isinstance(value, dict):
        return "incident" if "incident_id" in value else "checkin"
    return "incident" if isinstance(value, IncidentReport) else "checkin"


Assignment = Annotated[
    Annotated[CheckInAssignment, Tag("checkin")] | Annotated[IncidentAssignment, Tag("incident")],
    Discriminator(_assignment_kind),
]
"""An event on `grid.assignments.v1`: `CheckInAssignment` or `IncidentAssignment`."""

ASSIGNMENT_ADAPTER: Final[TypeAdapter[CheckInAssignment | IncidentAssignment]] = TypeAdapter(
    Assignment
)


def parse_assignment(raw: bytes) -> CheckInAssignment | IncidentAssignment:
    """Read a `grid.assignments.v1` value; raises pydantic's ValidationError if malformed."""
    return ASSIGNMENT_ADAPTER.validate_json(raw)


class ComplianceChange(_Event):
    """A change of a (worker, grid, week) patrol status on `grid.compliance.v1`."""

    model_config = ConfigDict(title="ComplianceChange")

    event_id: EventId
    worker_id: WorkerId
    grid_code: Code
    week: Annotated[
        str,
        Field(
            strict=True,
            pattern=r"^\d{4}-W(0[1-9]|[1-4]\d|5[0-3])$",
            description="ISO week, e.g. 2020-W37.",
        ),
    ]
    old_status: ComplianceStatus | None = None
    new_status: ComplianceStatus
    counted_patrols: Annotated[int, Field(strict=True, ge=0)]
    required_patrols: Annotated[int, Field(strict=True, ge=0)]
    changed_at: EventTime


def parse_compliance_change(raw: bytes) -> ComplianceChange:
    """Read a `grid.compliance.v1` value; raises pydantic's ValidationError if malformed."""
    return ComplianceChange.model_validate_json(raw)


# --- CloudEvents binary mode -------------------------------------------------------------

CE_SPECVERSION: Final = "1.0"
CE_TYPES: Final[dict[str, str]] = {
    CHECKINS_TOPIC: "wangge.checkin.v1",
    INCIDENTS_TOPIC: "wangge.incident.v1",
    COMPLIANCE_TOPIC: "wangge.compliance.v1",
}
"""The ce_type of each topic that carries one kind of event."""
ASSIGNMENT_CE_TYPES: Final[dict[AssignmentKind, str]] = {
    "checkin": "wangge.assignment.checkin.v1",
    "incident": "wangge.assignment.incident.v1",
}
"""The ce_types of `grid.assignments.v1`, one per kind: a reader filters without parsing."""
CE_HEADERS: Final = ("ce_specversion", "ce_id", "ce_source", "ce_type", "ce_time")
_CE_SPECVERSION_BYTES: Final = CE_SPECVERSION.encode()


def cloudevent_headers(
    *, event_id: UUID | str, ce_type: str, source: str, time: datetime | str
) -> list[tuple[str, bytes]]:
    """CloudEvents 1.0 binary-mode Kafka headers, in `CE_HEADERS` order.

    `time` (ce_time) is the event's time, RFC 3339; a string is taken as already formatted,
    so that a batch of records stamped at one instant formats it once.
    """
    stamp = time if isinstance(time, str) else time.isoformat()
    return [
        ("ce_specversion", _CE_SPECVERSION_BYTES),
        ("ce_id", str(event_id).encode()),
        ("ce_source", source.encode()),
        ("ce_type", ce_type.encode()),
        ("ce_time", stamp.encode()),
    ]


# --- parsing ----------------------------------------------------------------------------


def _reason_of(error_type: str, loc: tuple[int | str, ...]) -> RefusalReason:
    if error_type == "json_invalid" or (error_type == "model_type" and not loc):
        return RefusalReason.INVALID_JSON
    if error_type in ("missing", _REPORTER_REQUIRED):
        return RefusalReason.MISSING_FIELD
    if error_type == _NULL_ISLAND:
        return RefusalReason.COORDINATE_OUT_OF_RANGE
    field = loc[0] if loc else None
    if field in ("lon", "lat") and error_type in _COORDINATE_TYPES:
        return RefusalReason.COORDINATE_OUT_OF_RANGE
    if field == "crs":
        return RefusalReason.UNSUPPORTED_CRS
    return RefusalReason.INVALID_FIELD


def refusal_from(exc: ValidationError) -> EventRefused:
    """Map pydantic's errors to one EventRefused, the most structural reason first."""
    errors = exc.errors(include_url=False, include_context=False, include_input=False)
    ranked = sorted(
        ((_reason_of(e["type"], e["loc"]), e) for e in errors),
        key=lambda pair: _PRIORITY.index(pair[0]),
    )
    reason, first = ranked[0]
    where = ".".join(str(part) for part in first["loc"])
    if reason is RefusalReason.MISSING_FIELD and first["type"] == "missing":
        detail = f"missing field {where!r}"
    else:
        detail = f"{where}: {first['msg']}" if where else first["msg"]
    if len(ranked) > 1:
        detail += f" (and {len(ranked) - 1} more)"
    return EventRefused(reason, detail)


def _check_size(raw: bytes, max_bytes: int) -> None:
    if len(raw) > max_bytes:
        raise EventRefused(
            RefusalReason.PAYLOAD_TOO_LARGE, f"{len(raw)} bytes, more than {max_bytes}"
        )


def check_event_time(
    event_time: datetime, now: datetime, field: str, limits: EventTimeLimits
) -> None:
    """Refuse an event time ahead of the clock, or older than the limits allow."""
    # Aware datetimes compare and subtract without converting to UTC, so year 1 at +14:00
    # is refused here instead of overflowing in astimezone() further on.
    if event_time - now > limits.max_skew:
        minutes = limits.max_skew.total_seconds() / 60
        raise EventRefused(
            RefusalReason.FUTURE_TIMESTAMP,
            f"{field} {event_time.isoformat()} is more than {minutes:g} minutes after"
            f" {now.isoformat()}",
        )
    if event_time < EARLIEST_EVENT_TIME:
        raise EventRefused(
            RefusalReason.STALE_TIMESTAMP,
            f"{field} {event_time.isoformat()} is before {EARLIEST_EVENT_TIME.date()}",
        )
    if limits.max_age is not None and now - event_time > limits.max_age:
        raise EventRefused(
            RefusalReason.STALE_TIMESTAMP,
            f"{field} {event_time.isoformat()} is more than {limits.max_age.days} days"
            f" before {now.isoformat()}",
        )


def _check_storable(event: _Event, text_fields: Iterable[str]) -> None:
    try:
        check_storable(
            ((name, getattr(event, name)) for name in text_fields), event.model_extra or {}
        )
    except Unstorable as problem:
        raise EventRefused(RefusalReason.INVALID_FIELD, str(problem)) from None


def _require_aware(now: datetime) -> None:
    if now.tzinfo is None:
        raise ValueError("now must be timezone-aware")


_CHECKIN_TEXT: Final = ("worker_id",)
_EventT = TypeVar("_EventT", bound=_Event)
_INCIDENT_TEXT: Final = ("category", "description", "reporter_id")


def parse_checkin(
    raw: bytes,
    *,
    now: datetime,
    max_bytes: int = MAX_EVENT_BYTES,
    limits: EventTimeLimits = DEFAULT_TIME_LIMITS,
) -> CheckIn:
    """Parse a `grid.checkins.v1` value, or raise EventRefused with the reason."""
    event = _parse(CheckIn, raw, now, max_bytes)
    check_event_time(event.recorded_at, now, "recorded_at", limits)
    _check_storable(event, _CHECKIN_TEXT)
    return event


def parse_incident(
    raw: bytes,
    *,
    now: datetime,
    max_bytes: int = MAX_EVENT_BYTES,
    limits: EventTimeLimits = DEFAULT_TIME_LIMITS,
) -> IncidentReport:
    """Parse a `grid.incidents.v1` value, or raise EventRefused with the reason."""
    event = _parse(IncidentReport, raw, now, max_bytes)
    check_event_time(event.reported_at, now, "reported_at", limits)
    _check_storable(event, _INCIDENT_TEXT)
    return event


def _parse(model: type[_EventT], raw: bytes, now: datetime, max_bytes: int) -> _EventT:
    """The shape checks every input topic shares: size, then the model's validation."""
    _require_aware(now)
    _check_size(raw, max_bytes)
    try:
        return model.model_validate_json(raw)
    except ValidationError as exc:
        raise refusal_from(exc) from None
