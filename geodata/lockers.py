"""Cloud lockers (智慧化微社区办事云柜): the registry's rules, the drop-off event, and the
incident report a drop-off becomes.

Pure: no database, no Kafka. docs/LOCKERS.md tells the whole path:

- A **locker** stands in a residential compound; the registry (`geodata.db.locker_store`,
  `wangge lockers`) keeps its id, name, point and number of compartments.
- A resident drops documents into a compartment; the locker sends a **drop-off** on
  `grid.locker-dropoffs.v1` (`LockerDropOff`): locker id, compartment, kind of document,
  time. Nothing personal: the locker keeps its own pick-up codes and phone numbers.
- The locker consumer checks it against the registry and produces the **incident report**
  it becomes (`locker_report`) on `grid.incidents.v1`: source `locker`, category
  `locker.documents`, the locker's point, and the drop-off's `event_id` as both the
  report's event id and the incident's id. The incident consumer then files it like any
  report: the grid that contains the locker, its worker, the deadline of the category.
  A drop-off delivered twice becomes the same report twice, which the incident consumer
  stores once.
- The worker's `pick_up` and `return` (`geodata.incidents`) move the task; the resident
  follows it through Open311 by the drop-off's id, which the locker prints on its receipt.
"""

import math
import re
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Annotated, Any, Final, Self

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, ValidationError

from geodata.categories import LOCKER_CATEGORY
from geodata.errors import WanggeError
from geodata.events import (
    MAX_EVENT_BYTES,
    EventId,
    EventRefused,
    EventTimeLimits,
    RefusalReason,
    check_event_time,
    refusal_from,
)
from geodata.storable import Unstorable, check_storable

LOCKER_DROPOFF_CE_TYPE: Final = "wangge.locker-dropoff.v1"
"""The ce_type of `grid.locker-dropoffs.v1`."""

LOCKER_SOURCE: Final = "locker"
"""The incident source of a locker's task."""

MAX_COMPARTMENTS: Final = 200
"""More compartments than any cloud locker has; a bound on what the registry accepts."""

_LOCKER_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,31}")
MAX_LOCKER_NAME_LENGTH: Final = 100


class DocumentKind(StrEnum):
    """What a resident drops into a locker: the community office's common errands."""

    HOUSEHOLD_REGISTRATION = "household_registration"
    RESIDENCE_CERTIFICATE = "residence_certificate"
    SOCIAL_INSURANCE = "social_insurance"
    ELDERLY_ALLOWANCE = "elderly_allowance"
    SUBSISTENCE_ALLOWANCE = "subsistence_allowance"
    BIRTH_REGISTRATION = "birth_registration"
    DISABILITY_CERTIFICATE = "disability_certificate"
    OTHER = "other"


DOCUMENT_NAMES_ZH: Final[dict[DocumentKind, str]] = {
    DocumentKind.HOUSEHOLD_REGISTRATION: "户籍业务材料",
    DocumentKind.RESIDENCE_CERTIFICATE: "居住证明",
    DocumentKind.SOCIAL_INSURANCE: "社保医保材料",
    DocumentKind.ELDERLY_ALLOWANCE: "高龄津贴申请",
    DocumentKind.SUBSISTENCE_ALLOWANCE: "低保救助申请",
    DocumentKind.BIRTH_REGISTRATION: "生育登记材料",
    DocumentKind.DISABILITY_CERTIFICATE: "残疾人证材料",
    DocumentKind.OTHER: "其他办事材料",
}


# --------------------------------------------------------------------------- errors


class InvalidLocker(WanggeError):
    """A registry entry whose id, name, point or compartments cannot be kept."""

    code = "invalid_locker"


class LockerExists(WanggeError):
    """Another locker already has the id."""

    code = "locker_exists"


# --------------------------------------------------------------------------- the registry


@dataclass(frozen=True, slots=True)
class Locker:
    """A locker as registered: where it stands (WGS84) and how many compartments it has."""

    locker_id: str
    name: str
    lon: float
    lat: float
    compartments: int
    #: The grid that contains it, as the grid snapshot located it when it was registered.
    grid_code: str | None = None
    #: The dataset's point of interest it was seeded from, if any.
    poi_id: str | None = None


def checked_locker(
    locker_id: str, name: str, lon: float, lat: float, compartments: int, poi_id: str | None = None
) -> Locker:
    """A registry entry, checked; InvalidLocker says what is wrong."""
    locker_id = locker_id.strip()
    if not _LOCKER_ID.fullmatch(locker_id):
        raise InvalidLocker(
            f"a locker id is 1 to 32 letters, digits, '-' or '_', not {locker_id[:40]!r}"
        )
    name = name.strip()
    if not name or len(name) > MAX_LOCKER_NAME_LENGTH or not name.isprintable():
        raise InvalidLocker(
            f"a locker's name is 1 to {MAX_LOCKER_NAME_LENGTH} printable characters"
        )
    if not (math.isfinite(lon) and math.isfinite(lat) and -180 <= lon <= 180 and -90 <= lat <= 90):
        raise InvalidLocker(f"({lon}, {lat}) is no WGS84 point")
    if lon == 0.0 and lat == 0.0:
        raise InvalidLocker("(0, 0) is a missing position, not a locker's")
    if not 1 <= compartments <= MAX_COMPARTMENTS:
        raise InvalidLocker(
            f"a locker has 1 to {MAX_COMPARTMENTS} compartments, not {compartments}"
        )
    return Locker(locker_id, name, lon, lat, compartments, None, poi_id)


# --------------------------------------------------------------------------- the event

LOCKER_DROPOFF_EXAMPLE: Final[dict[str, Any]] = {
    "event_id": "9a4c3f0e-6b1d-4e8a-9c55-2f7e1d3b8a21",
    "locker_id": "P01234",
    "compartment": 7,
    "document_kind": "residence_certificate",
    "dropped_at": "2020-09-08T19:40:00+08:00",
}
"""The drop-off of docs/EVENTS.md."""


class LockerDropOff(BaseModel):
    """A resident's drop-off on `grid.locker-dropoffs.v1`, keyed by `locker_id`."""

    # Extra fields are allowed (a vendor's own) but carried no further: the report a
    # drop-off becomes is built from the fields below only, so nothing personal travels.
    model_config = ConfigDict(
        extra="allow",
        frozen=True,
        title="LockerDropOff",
        json_schema_extra={"examples": [LOCKER_DROPOFF_EXAMPLE]},
    )

    event_id: EventId
    locker_id: Annotated[
        str,
        Field(
            strict=True,
            pattern=f"^{_LOCKER_ID.pattern}$",
            description="A locker of the registry (`wangge lockers list`).",
        ),
    ]
    compartment: Annotated[
        int,
        Field(
            strict=True,
            ge=1,
            le=MAX_COMPARTMENTS,
            description="The compartment, from 1 to the locker's number of compartments.",
        ),
    ]
    document_kind: Annotated[
        DocumentKind, Field(description="What was dropped: one of DocumentKind's values.")
    ]
    dropped_at: Annotated[
        AwareDatetime, Field(strict=True, description="RFC 3339 with an offset: the event time.")
    ]

    @classmethod
    def parse(
        cls,
        raw: bytes,
        *,
        now: datetime,
        limits: EventTimeLimits,
        max_bytes: int = MAX_EVENT_BYTES,
    ) -> Self:
        """Parse a `grid.locker-dropoffs.v1` value, or raise EventRefused with the reason."""
        if now.tzinfo is None:
            raise ValueError("now must be timezone-aware")
        if len(raw) > max_bytes:
            raise EventRefused(
                RefusalReason.PAYLOAD_TOO_LARGE, f"{len(raw)} bytes, more than {max_bytes}"
            )
        try:
            event = cls.model_validate_json(raw)
        except ValidationError as exc:
            raise refusal_from(exc) from None
        check_event_time(event.dropped_at, now, "dropped_at", limits)
        try:
            check_storable((("locker_id", event.locker_id),), event.model_extra or {})
        except Unstorable as problem:
            raise EventRefused(RefusalReason.INVALID_FIELD, str(problem)) from None
        return event


def check_against(dropoff: LockerDropOff, locker: Locker | None) -> None:
    """Refuse a drop-off at a locker the registry lacks, or into a compartment it lacks."""
    if locker is None:
        raise EventRefused(
            RefusalReason.INVALID_FIELD, f"locker_id: no locker {dropoff.locker_id!r} is registered"
        )
    if dropoff.compartment > locker.compartments:
        raise EventRefused(
            RefusalReason.INVALID_FIELD,
            f"compartment: locker {locker.locker_id} has {locker.compartments} compartments,"
            f" not {dropoff.compartment}",
        )


def task_description(locker_name: str, compartment: int, document_kind: str) -> str:
    """What a locker's task says it is: the locker, the compartment, the kind of document."""
    try:
        kind = DOCUMENT_NAMES_ZH[DocumentKind(document_kind)]
    except ValueError:
        kind = DOCUMENT_NAMES_ZH[DocumentKind.OTHER]
    return f"{locker_name} {compartment} 号格：{kind}"


def locker_report(dropoff: LockerDropOff, locker: Locker) -> dict[str, Any]:
    """The incident report (grid.incidents.v1) a checked drop-off becomes.

    The drop-off's id is the report's event id and the incident's id: a redelivered
    drop-off makes the same report, and the resident's receipt names the case.
    """
    kind = DocumentKind(dropoff.document_kind)
    return {
        "event_id": str(dropoff.event_id),
        "incident_id": str(dropoff.event_id),
        "category": LOCKER_CATEGORY,
        "description": task_description(locker.name, dropoff.compartment, kind.value),
        "lon": locker.lon,
        "lat": locker.lat,
        "reported_at": dropoff.dropped_at.isoformat(),
        "source": LOCKER_SOURCE,
        "locker_id": locker.locker_id,
        "compartment": dropoff.compartment,
        "document_kind": kind.value,
    }
