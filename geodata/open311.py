"""Open311 GeoReport v2 over wangge's incidents: services, public statuses, documents.

Pure rules over plain data; what clients send is checked in `geodata.open311_input`,
`grid_service.open311` serves it all over HTTP and `geodata.db.open311_store` keeps it
(docs/INTERFACES.md, Open311).

- A **service** is an incident category: its `service_code` is the category's code
  (`environment.garbage`), its name the category's Chinese name, its group the class's.
  No service has attributes (`metadata` false).
- A **service request** is posted by a client that holds an api key. It becomes an
  incident report of source `resident` (with `channel` `open311`, and the posted
  `media_url` and `address_string`, as extra fields), produced like any other report.
  Its id is the incident's id, chosen before the report is produced, so the answer
  carries it at once and no token resource is needed.
- The resident's **contact fields** (email, names, phone, device and account ids) are
  stored apart from the request; a document of this module has no field for them.
- wangge's seven statuses become the standard's two (`open`, `closed`) with a note that
  says which step the case is at.
- A **cloud locker's task** (docs/LOCKERS.md) is followed here too, by the drop-off's id
  that the locker prints on its receipt: service `locker.documents`, which is read, never
  posted (a task comes from a locker's drop-off), with notes of its own.
- A request a supervisor **confirmed as a duplicate** reads as its original stands: the
  original's status, and a note that names the original's id and its note; the resident
  follows the original through their own request (docs/INTERFACES.md).
"""

import re
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Final, Literal
from uuid import UUID

from geodata.accounts import hash_token
from geodata.categories import (
    CATEGORY_NAMES_ZH,
    CLASS_NAMES_ZH,
    LOCKER_CATEGORY,
    TASK_CATEGORY_NAMES_ZH,
)
from geodata.dataset.layers import LOCAL_TZ
from geodata.errors import WanggeError
from geodata.incidents import Status

# --------------------------------------------------------------------------- errors


class Open311Error(WanggeError):
    """A request the Open311 facade refuses; the adapter answers the standard's error array."""

    code = "open311_error"


class InvalidServiceRequest(Open311Error):
    """A parameter that is missing, malformed or out of range (HTTP 400)."""

    code = "invalid_service_request"


class InvalidApiKey(Open311Error):
    """A post without an api key, or with one that is unknown or revoked (HTTP 403)."""

    code = "invalid_api_key"


class ServiceNotFound(Open311Error):
    """No service has the code (HTTP 404)."""

    code = "service_not_found"


class ServiceRequestNotFound(Open311Error):
    """No service request has the id (HTTP 404)."""

    code = "service_request_not_found"


class ClientExists(WanggeError):
    """Another Open311 client already has the name."""

    code = "open311_client_exists"


class ClientNotFound(WanggeError):
    """No Open311 client has the name."""

    code = "open311_client_not_found"


class InvalidClientName(WanggeError):
    """A client's name that is empty, too long or not printable."""

    code = "invalid_open311_client"


# --------------------------------------------------------------------------- api keys

API_KEY_PREFIX: Final = "wg311_"
"""Marks an Open311 api key, so that it is told from an account's bearer token (wg_)."""

_API_KEY = re.compile(r"wg311_[A-Za-z0-9_-]{43}")  # 32 bytes: 43 URL-safe base64 characters
MAX_CLIENT_NAME_LENGTH: Final = 64


def new_api_key() -> str:
    """A fresh api key: the prefix and 256 bits from the CSPRNG, URL-safe."""
    return API_KEY_PREFIX + secrets.token_urlsafe(32)


def hash_api_key(key: str) -> str:
    """The stored form of a key: its SHA-256, for the reasons `geodata.accounts` gives."""
    return hash_token(key)


def is_well_formed_api_key(key: str) -> bool:
    """Whether `key` could be one of ours; anything else is refused without a lookup."""
    return _API_KEY.fullmatch(key) is not None


def client_name(name: str) -> str:
    """A client's name, stripped: 1 to 64 printable characters; InvalidClientName else."""
    name = name.strip()
    if not name or len(name) > MAX_CLIENT_NAME_LENGTH or not name.isprintable():
        raise InvalidClientName(
            f"a client's name is 1 to {MAX_CLIENT_NAME_LENGTH} printable characters"
        )
    return name


# --------------------------------------------------------------------------- services

_EMERGENCY_NOTICE: Final = "危及人身或财产安全时，请先拨打 110、119 或 120。"


@dataclass(frozen=True, slots=True)
class Service:
    """One service of `GET services.json`: an incident category."""

    service_code: str
    service_name: str
    description: str
    group: str
    keywords: str
    metadata: bool = False
    type: Literal["realtime", "batch", "blackbox"] = "realtime"


def _service(code: str, name: str) -> Service:
    kind, _, detail = code.partition(".")
    group = CLASS_NAMES_ZH[kind]
    description = f"{group}：{name}"
    if kind == "emergency":
        # A report is handled in working time; what cannot wait goes to the emergency lines.
        description += f"。{_EMERGENCY_NOTICE}"
    return Service(code, name, description, group, f"{kind},{detail}")


LOCKER_SERVICE: Final = Service(
    service_code=LOCKER_CATEGORY,
    service_name=TASK_CATEGORY_NAMES_ZH[LOCKER_CATEGORY],
    description="智慧云柜办事：凭云柜回执上的编号查询办理进度；材料请投入小区云柜，不在此提交。",
    group="便民服务",
    keywords="locker,documents",
)
"""The cloud lockers' tasks: followed by the drop-off's id, never posted."""

SERVICES: Final[tuple[Service, ...]] = (
    *(_service(code, name) for code, name in CATEGORY_NAMES_ZH.items()),
    LOCKER_SERVICE,
)
"""Every service, in the categories' order (grouped by class), then the lockers'."""

_SERVICES_BY_CODE: Final = {service.service_code: service for service in SERVICES}


def is_service_code(code: str) -> bool:
    """Whether `code` is a service's (a category's) code."""
    return code in _SERVICES_BY_CODE


def is_postable(code: str) -> bool:
    """Whether a request may be posted with `code`: a locker's task comes from its locker."""
    return code in _SERVICES_BY_CODE and code != LOCKER_CATEGORY


def find_service(code: str) -> Service:
    """The service of `code`; ServiceNotFound when no category has it."""
    service = _SERVICES_BY_CODE.get(code)
    if service is None:
        raise ServiceNotFound(f"no service has the code {code[:80]!r}; GET services.json")
    return service


# --------------------------------------------------------------------------- statuses

PublicStatus = Literal["open", "closed"]
PUBLIC_STATUSES: Final[tuple[PublicStatus, ...]] = ("open", "closed")


@dataclass(frozen=True, slots=True)
class PublicState:
    """What the standard says of a request: open or closed, and a note for the resident."""

    status: PublicStatus
    notes: str


RECEIVED: Final = PublicState("open", "已收到，正在立案")
"""A request the broker has that the consumers have not filed as an incident yet."""

PUBLIC_STATES: Final[Mapping[Status, PublicState]] = {
    Status.REPORTED: PublicState("open", "已立案，等待派遣"),
    Status.DISPATCHED: PublicState("open", "已派遣网格员"),
    Status.IN_PROGRESS: PublicState("open", "正在处置"),
    Status.RESOLVED: PublicState("open", "已处置，等待核查"),
    Status.ESCALATED: PublicState("open", "已上报上级部门处置"),
    Status.CLOSED: PublicState("closed", "已核查结案"),
    Status.CANCELLED: PublicState("closed", "已撤销：重复上报或无需处置"),
}
"""Each incident status as the standard's status with its note (docs/INTERFACES.md)."""


LOCKER_RECEIVED: Final = PublicState("open", "已存入云柜，正在登记")
"""A drop-off the locker consumer stored whose task is not filed yet."""

LOCKER_STATES: Final[Mapping[Status, PublicState]] = {
    Status.REPORTED: PublicState("open", "已存入云柜，已通知网格员取件"),
    Status.DISPATCHED: PublicState("open", "已安排网格员取件"),
    Status.IN_PROGRESS: PublicState("open", "网格员已取件，正在社区办理"),
    Status.RESOLVED: PublicState("open", "已办理，等待核查"),
    Status.ESCALATED: PublicState("open", "取件或办理超时，已由社区督办"),
    Status.CLOSED: PublicState("closed", "办理结果已放回云柜，请凭取件码取回"),
    Status.CANCELLED: PublicState("closed", "已撤销"),
}
"""A locker's task's statuses as the standard's, with notes about the locker."""


def public_state(status: str | None, *, locker: bool = False) -> PublicState:
    """The standard's status and note of an incident status (None: not filed yet)."""
    if locker:
        return LOCKER_RECEIVED if status is None else LOCKER_STATES[Status(status)]
    return RECEIVED if status is None else PUBLIC_STATES[Status(status)]


def duplicate_state(original_id: UUID, original: PublicState) -> PublicState:
    """What a confirmed duplicate reads as: its original's status, with a note naming it."""
    return PublicState(
        original.status, f"重复上报，已并入请求 {original_id} 处置：{original.notes}"
    )


def incident_statuses(public: PublicStatus) -> tuple[Status, ...]:
    """The incident statuses a public status stands for."""
    return tuple(status for status, state in PUBLIC_STATES.items() if state.status == public)


# --------------------------------------------------------------------------- documents


@dataclass(frozen=True, slots=True)
class ServiceRequestRecord:
    """A service request as stored, with where its incident stands (None: not filed yet)."""

    incident_id: UUID
    service_code: str
    description: str | None
    lat: float
    lon: float
    address_string: str | None
    media_url: str | None
    requested_at: datetime
    status: str | None
    updated_at: datetime | None
    agency: str | None
    #: A cloud locker's task rather than a posted request (its notes speak of the locker).
    locker: bool = False
    #: The original a supervisor confirmed this request repeats, and where it stands.
    duplicate_of: UUID | None = None
    original_status: str | None = None
    original_updated_at: datetime | None = None


def _w3c(moment: datetime) -> str:
    return moment.astimezone(LOCAL_TZ).isoformat(timespec="seconds")


def service_request_document(record: ServiceRequestRecord) -> dict[str, object]:
    """The standard's fields of a service request; a contact field is never among them.

    A confirmed duplicate shows its original's status and a `status_notes` that names the
    original's id (GeoReport v2 has no field for the link; the note is where a client
    shows the city's word on a request).
    """
    state = public_state(record.status, locker=record.locker)
    updated = record.updated_at or record.requested_at
    if record.duplicate_of is not None and record.original_status is not None:
        state = duplicate_state(record.duplicate_of, public_state(record.original_status))
        updated = max(updated, record.original_updated_at or updated)
    service = _SERVICES_BY_CODE.get(record.service_code)
    return {
        "service_request_id": str(record.incident_id),
        "status": state.status,
        "status_notes": state.notes,
        "service_name": service.service_name if service else None,
        "service_code": record.service_code,
        "description": record.description,
        "agency_responsible": record.agency,
        "service_notice": None,
        "requested_datetime": _w3c(record.requested_at),
        "updated_datetime": _w3c(updated),
        # No deadline is kept per case yet, so no time can be promised.
        "expected_datetime": None,
        "address": record.address_string,
        "address_id": None,
        "zipcode": None,
        "lat": record.lat,
        "long": record.lon,
        "media_url": record.media_url,
    }


SERVICE_NOTICE: Final = "已收到，将按所在网格派遣网格员处置"
"""The notice a new request is answered with."""
