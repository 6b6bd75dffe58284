"""What Open311 clients send, checked: a posted request's fields and the query of
`GET requests.json` (the standard's rules, wangge's limits).

Pure. A posted request is split here into what becomes the incident report
(`incident_event`: no contact field) and the resident's `Contact`, kept apart.
"""

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Final
from urllib.parse import urlsplit
from uuid import UUID

from geodata.compliance.weeks import check_supported_time
from geodata.open311 import (
    InvalidServiceRequest,
    PublicStatus,
    ServiceRequestNotFound,
    is_postable,
    is_service_code,
)
from geodata.storable import Unstorable, check_storable

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
    if not is_service_code(code):
        raise InvalidServiceRequest(f"service_code {code[:80]!r} is not a service")
    if not is_postable(code):
        raise InvalidServiceRequest(
            f"{code} is followed, not posted: documents go into a cloud locker, whose"
            " receipt names the request to follow"
        )
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


# --------------------------------------------------------------------------- reading requests

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
        if not is_service_code(code):
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
