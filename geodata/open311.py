"""Open311 GeoReport v2 over wangge's incidents: services, public statuses, requests.

Pure rules over plain data; `grid_service.open311` serves them over HTTP and
`geodata.db.open311_store` keeps them (docs/INTERFACES.md, Open311).

- A **service** is an incident category: its `service_code` is the category's code
  (`environment.garbage`), its name the category's Chinese name, its group the class's.
  No service has attributes (`metadata` false).
- A **service request** is posted by a client that holds an api key. It becomes an
  incident report of source `resident` (with `channel` `open311`, and the posted
  `media_url` and `address_string`, as extra fields), produced like any other report.
  Its id is the incident's id, chosen before the report is produced, so the answer
  carries it at once and no token resource is needed.
- The resident's **contact fields** (email, names, phone, device and account ids) are
  checked here and stored apart from the request; nothing of this module puts them in a
  document.
- wangge's seven statuses become the standard's two (`open`, `closed`) with a note that
  says which step the case is at.
"""

import math
import re
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Final, Literal
from urllib.parse import urlsplit
from uuid import UUID

from geodata.accounts import hash_token
from geodata.categories import CATEGORY_NAMES_ZH, CLASS_NAMES_ZH
from geodata.compliance.weeks import check_supported_time
from geodata.dataset.layers import LOCAL_TZ
from geodata.errors import WanggeError
from geodata.incidents import Status
from geodata.storable import Unstorable, check_storable

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


SERVICES: Final[tuple[Service, ...]] = tuple(
    _service(code, name) for code, name in CATEGORY_NAMES_ZH.items()
)
"""Every service, in the categories' order (grouped by class)."""

_SERVICES_BY_CODE: Final = {service.service_code: service for service in SERVICES}


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


def public_state(status: str | None) -> PublicState:
    """The standard's status and note of an incident status (None: not filed yet)."""
    return RECEIVED if status is None else PUBLIC_STATES[Status(status)]


def incident_statuses(public: PublicStatus) -> tuple[Status, ...]:
    """The incident statuses a public status stands for."""
    return tuple(status for status, state in PUBLIC_STATES.items() if state.status == public)


# --------------------------------------------------------------------------- posting

MAX_DESCRIPTION_LENGTH: Final = 4000
MAX_ADDRESS_LENGTH: Final = 500
MAX_URL_LENGTH: Final = 2048
_TEXT_LIMITS: Final[Mapping[str, int]] = {
    "description": MAX_DESCRIPTION_LENGTH,
    "address_string": MAX_ADDRESS_LENGTH,
    "media_url": MAX_URL_LENGTH,
    "email": 254,  # RFC 5321's longest path
    "first_name": 64,
    "last_name": 64,
    "phone": 32,
    "device_id": 128,
    "account_id": 128,
}
CONTACT_FIELDS: Final = ("email", "first_name", "last_name", "phone", "device_id", "account_id")
"""The resident's personal fields: stored apart, returned by nothing."""

_EMAIL = re.compile(r"[^@\s]+@[^@\s]+\.[^@\s]+")
_PHONE = re.compile(r"\+?[0-9][0-9 ()-]*")


@dataclass(frozen=True, slots=True)
class Contact:
    """How the city may reach the resident; every field optional, none ever published."""

    email: str | None = None
    first_name: str | None = None
    last_name: str | None = None
    phone: str | None = None
    device_id: str | None = None
    account_id: str | None = None

    def is_empty(self) -> bool:
        """Whether the resident left every contact field out."""
        return all(getattr(self, name) is None for name in CONTACT_FIELDS)


@dataclass(frozen=True, slots=True)
class ServiceRequestInput:
    """A checked `POST requests.json`: what becomes the incident, and the contact apart."""

    service_code: str
    lat: float
    lon: float
    description: str | None
    address_string: str | None
    media_url: str | None
    contact: Contact


def _text(fields: Mapping[str, object], name: str) -> str | None:
    value = fields.get(name)
    if value is None:
        return None
    if not isinstance(value, str):
        raise InvalidServiceRequest(f"{name} must be text")
    value = value.strip()
    if not value:
        return None  # a form's empty field is a field left out
    try:
        check_storable([(name, value)], {})
    except Unstorable as problem:
        raise InvalidServiceRequest(str(problem)) from None
    limit = _TEXT_LIMITS.get(name)
    if limit is not None and len(value) > limit:
        raise InvalidServiceRequest(f"{name} is longer than {limit} characters")
    return value


def _coordinate(fields: Mapping[str, object], name: str, bound: float) -> float:
    value = fields.get(name)
    if isinstance(value, str) and value.strip():
        try:
            number = float(value.strip())
        except ValueError:
            raise InvalidServiceRequest(f"{name} must be a number, not {value[:40]!r}") from None
    elif isinstance(value, int | float) and not isinstance(value, bool):
        number = float(value)
    elif value is None or value == "":
        raise InvalidServiceRequest(
            "lat and long are required (WGS84 decimal degrees): wangge files a report by"
            " its point, and takes no address_string or address_id alone"
        )
    else:
        raise InvalidServiceRequest(f"{name} must be a number")
    if not math.isfinite(number) or abs(number) > bound:
        raise InvalidServiceRequest(f"{name} must be a number from -{bound:g} to {bound:g}")
    return number


def _media_url(fields: Mapping[str, object]) -> str | None:
    url = _text(fields, "media_url")
    if url is None:
        return None
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc or any(c.isspace() for c in url):
        raise InvalidServiceRequest("media_url must be an absolute http or https URL")
    return url


def _contact(fields: Mapping[str, object]) -> Contact:
    values = {name: _text(fields, name) for name in CONTACT_FIELDS}
    email = values["email"]
    if email is not None and _EMAIL.fullmatch(email) is None:
        raise InvalidServiceRequest("email is not an email address")
    phone = values["phone"]
    if phone is not None and _PHONE.fullmatch(phone) is None:
        raise InvalidServiceRequest("phone holds digits, spaces, + ( ) and - only")
    return Contact(**values)


def service_request_input(fields: Mapping[str, object]) -> ServiceRequestInput:
    """Check a posted request's fields (form values or JSON); InvalidServiceRequest if bad.

    Fields the standard has and wangge does not use (jurisdiction_id, attribute[...],
    address_id) and unknown ones are ignored; an empty value is a value left out.
    """
    code = _text(fields, "service_code")
    if code is None:
        raise InvalidServiceRequest("service_code is required; GET services.json lists them")
    if code not in _SERVICES_BY_CODE:
        raise InvalidServiceRequest(f"service_code {code[:80]!r} is not a service")
    return ServiceRequestInput(
        service_code=code,
        lat=_coordinate(fields, "lat", 90.0),
        lon=_coordinate(fields, "long", 180.0),
        description=_text(fields, "description"),
        address_string=_text(fields, "address_string"),
        media_url=_media_url(fields),
        contact=_contact(fields),
    )


CHANNEL: Final = "open311"
"""The `channel` extra field of the incident reports this facade produces."""


def incident_event(
    request: ServiceRequestInput, *, incident_id: UUID, reported_at: datetime
) -> dict[str, object]:
    """The incident report (docs/EVENTS.md) a service request becomes; no contact field."""
    event: dict[str, object] = {
        "event_id": str(incident_id),
        "incident_id": str(incident_id),
        "category": request.service_code,
        "description": request.description,
        "lon": request.lon,
        "lat": request.lat,
        "reported_at": reported_at.isoformat(),
        "source": "resident",
        "crs": "EPSG:4326",
        "channel": CHANNEL,
    }
    if request.media_url is not None:
        event["media_url"] = request.media_url
    if request.address_string is not None:
        event["address_string"] = request.address_string
    return event


# --------------------------------------------------------------------------- reading

MAX_REQUESTS: Final = 1000
"""Most requests one `GET requests.json` returns, newest first (the standard's default)."""
MAX_SPAN: Final = timedelta(days=90)
"""Widest window of requested times one query covers (the standard's default)."""


@dataclass(frozen=True, slots=True)
class RequestQuery:
    """A checked `GET requests.json`: ids (which override the rest), or filters."""

    ids: tuple[UUID, ...] = ()
    service_codes: tuple[str, ...] = ()
    statuses: tuple[PublicStatus, ...] = ()
    start: datetime | None = None
    end: datetime | None = None
    limit: int = MAX_REQUESTS


def _list(params: Mapping[str, str], name: str) -> list[str]:
    return [part.strip() for part in params.get(name, "").split(",") if part.strip()]


def parse_request_id(text: str) -> UUID:
    """A service_request_id as the incident's UUID; ServiceRequestNotFound if none can be."""
    try:
        return UUID(text.strip())
    except ValueError:
        raise ServiceRequestNotFound(f"no service request has the id {text[:60]!r}") from None


def _date(params: Mapping[str, str], name: str) -> datetime | None:
    text = params.get(name, "").strip()
    if not text:
        return None
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise InvalidServiceRequest(
            f"{name} must be a W3C date-time such as 2020-09-07T08:00:00+08:00"
        ) from None
    if moment.tzinfo is None:
        raise InvalidServiceRequest(f"{name} needs its offset from UTC (Z or +08:00)")
    try:
        return check_supported_time(moment, name)
    except ValueError as exc:
        raise InvalidServiceRequest(str(exc)) from None


def request_query(params: Mapping[str, str], now: datetime) -> RequestQuery:
    """Check `GET requests.json`'s parameters against the standard's rules.

    `service_request_id` (comma-separated) overrides every other parameter. Otherwise the
    window of requested times is at most 90 days: start_date to end_date, either one and
    90 days from (or up to) it, or the last 90 days to `now`.
    """
    id_texts = _list(params, "service_request_id")
    if id_texts:
        if len(id_texts) > MAX_REQUESTS:
            raise InvalidServiceRequest(f"at most {MAX_REQUESTS} service_request_id at once")
        ids: list[UUID] = []
        for text in id_texts:
            try:
                ids.append(UUID(text))
            except ValueError:
                raise InvalidServiceRequest(
                    f"service_request_id {text[:60]!r} is not one of this server's ids"
                ) from None
        return RequestQuery(ids=tuple(dict.fromkeys(ids)))
    codes = _list(params, "service_code")
    for code in codes:
        if code not in _SERVICES_BY_CODE:
            raise InvalidServiceRequest(f"service_code {code[:80]!r} is not a service")
    statuses: list[PublicStatus] = []
    for status in _list(params, "status"):
        if status == "open":
            statuses.append("open")
        elif status == "closed":
            statuses.append("closed")
        else:
            raise InvalidServiceRequest(f"status {status[:40]!r} is not open or closed")
    start, end = _date(params, "start_date"), _date(params, "end_date")
    if start is None and end is None:
        end = now
    if start is None:
        assert end is not None
        start = end - MAX_SPAN
    elif end is None:
        end = start + MAX_SPAN
    if end < start:
        raise InvalidServiceRequest("end_date is before start_date")
    if end - start > MAX_SPAN:
        raise InvalidServiceRequest(f"start_date to end_date spans more than {MAX_SPAN.days} days")
    return RequestQuery(
        service_codes=tuple(dict.fromkeys(codes)),
        statuses=tuple(dict.fromkeys(statuses)),
        start=start,
        end=end,
    )


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


def _w3c(moment: datetime) -> str:
    return moment.astimezone(LOCAL_TZ).isoformat(timespec="seconds")


def service_request_document(record: ServiceRequestRecord) -> dict[str, object]:
    """The standard's fields of a service request; a contact field is never among them."""
    state = public_state(record.status)
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
        "updated_datetime": _w3c(record.updated_at or record.requested_at),
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
