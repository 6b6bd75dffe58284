"""Open311 clients, requests and residents' contacts in PostGIS; functions never commit.

The reads select the request's public fields and its incident's status, never a column
of `open311_contacts`: that table is written here and read by nothing in wangge.
"""

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final

from sqlalchemy import Connection, Row, Select, and_, func, insert, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import aliased

from geodata.categories import LOCKER_CATEGORY
from geodata.db.models import (
    Community,
    District,
    Incident,
    Locker,
    LockerDropoff,
    Open311Client,
    Open311Contact,
    Open311Request,
    Street,
)
from geodata.hierarchy import COMMUNITY_CODE_LENGTH, DISTRICT_CODE_LENGTH, STREET_CODE_LENGTH
from geodata.lockers import task_description
from geodata.open311 import (
    ClientExists,
    ClientNotFound,
    ServiceRequestRecord,
    client_name,
    hash_api_key,
    incident_statuses,
    is_well_formed_api_key,
    new_api_key,
)
from geodata.open311_input import RequestQuery, ServiceRequestInput

# --------------------------------------------------------------------------- clients


@dataclass(frozen=True, slots=True)
class ClientSummary:
    """A client as `wangge open311 keys list` shows it."""

    name: str
    created_at: datetime
    revoked_at: datetime | None
    requests: int


def add_client(conn: Connection, name: str) -> str:
    """Create a client and return its api key, which is stored only as its SHA-256."""
    name = client_name(name)
    key = new_api_key()
    try:
        # A savepoint, so that a taken name leaves the caller's transaction usable.
        with conn.begin_nested():
            conn.execute(insert(Open311Client).values(name=name, key_hash=hash_api_key(key)))
    except IntegrityError:
        raise ClientExists(f"an Open311 client named {name!r} exists already") from None
    return key


def revoke_client(conn: Connection, name: str) -> bool:
    """Revoke the client's key; whether it was live. ClientNotFound for an unknown name."""
    found = conn.execute(
        select(Open311Client.id, Open311Client.revoked_at).where(Open311Client.name == name)
    ).one_or_none()
    if found is None:
        raise ClientNotFound(f"no Open311 client is named {name!r}")
    if found.revoked_at is not None:
        return False
    conn.execute(
        update(Open311Client).where(Open311Client.id == found.id).values(revoked_at=func.now())
    )
    return True


def list_clients(conn: Connection) -> list[ClientSummary]:
    """Every client, revoked ones too, with how many requests each posted; by name."""
    requests = (
        select(func.count())
        .where(Open311Request.client_id == Open311Client.id)
        .scalar_subquery()
        .label("requests")
    )
    rows = conn.execute(
        select(
            Open311Client.name, Open311Client.created_at, Open311Client.revoked_at, requests
        ).order_by(Open311Client.name)
    ).all()
    return [ClientSummary(**row._asdict()) for row in rows]


def client_for_key(conn: Connection, key: str) -> int | None:
    """The id of the live client whose api key is `key`, or None."""
    if not is_well_formed_api_key(key):
        return None
    found: int | None = conn.execute(
        select(Open311Client.id).where(
            Open311Client.key_hash == hash_api_key(key), Open311Client.revoked_at.is_(None)
        )
    ).scalar_one_or_none()
    return found


# --------------------------------------------------------------------------- requests


def insert_request(
    conn: Connection,
    *,
    client_id: int,
    incident_id: uuid.UUID,
    request: ServiceRequestInput,
    requested_at: datetime,
) -> None:
    """Store a request's public fields, and its contact fields apart when there are any."""
    conn.execute(
        insert(Open311Request).values(
            incident_id=incident_id,
            client_id=client_id,
            service_code=request.service_code,
            description=request.description,
            lon=request.lon,
            lat=request.lat,
            address_string=request.address_string,
            media_url=request.media_url,
            requested_at=requested_at,
        )
    )
    contact = request.contact
    if contact.is_empty():
        return
    conn.execute(
        insert(Open311Contact).values(
            incident_id=incident_id,
            email=contact.email,
            first_name=contact.first_name,
            last_name=contact.last_name,
            phone=contact.phone,
            device_id=contact.device_id,
            account_id=contact.account_id,
        )
    )


# The unit that answers for the incident: where a whistle sent it, else its community.
_AGENCY_CODE: Final = func.coalesce(Incident.escalated_to, Incident.community_code)
# The original a supervisor confirmed the request's incident repeats.
_Original = aliased(Incident, name="original")

_COLUMNS: Final = (
    Open311Request.incident_id,
    Open311Request.service_code,
    Open311Request.description,
    Open311Request.lat,
    Open311Request.lon,
    Open311Request.address_string,
    Open311Request.media_url,
    Open311Request.requested_at,
)
_INCIDENT_COLUMNS: Final = (
    Incident.status,
    Incident.updated_at,
    _Original.incident_id.label("original_id"),
    _Original.status.label("original_status"),
    _Original.updated_at.label("original_updated_at"),
    func.length(_AGENCY_CODE).label("agency_level"),
    District.name.label("district_name"),
    Street.name.label("street_name"),
    Community.name.label("community_name"),
)


def _agency(row: Row[Any]) -> str | None:
    # The unit's name after its parents' ("渭滨区 永宁街道 宏文苑社区"): names repeat across
    # streets, and a resident knows the district and street better than the code.
    level = row.agency_level
    if level is None:
        return None
    names = [row.district_name]
    if level >= STREET_CODE_LENGTH:
        names.append(row.street_name)
    if level >= COMMUNITY_CODE_LENGTH:
        names.append(row.community_name)
    known = [name for name in names if name]
    return " ".join(known) or None


def _record(row: Row[Any]) -> ServiceRequestRecord:
    return ServiceRequestRecord(
        incident_id=row.incident_id,
        service_code=row.service_code,
        description=row.description,
        lat=row.lat,
        lon=row.lon,
        address_string=row.address_string,
        media_url=row.media_url,
        requested_at=row.requested_at,
        status=row.status,
        updated_at=row.updated_at,
        agency=_agency(row),
        duplicate_of=row.original_id,
        original_status=row.original_status,
        original_updated_at=row.original_updated_at,
    )


def _with_incident(statement: Select[Any], request_id: Any) -> Select[Any]:
    """Join the request's incident, its confirmed original, and the answering unit's names."""
    return (
        statement.outerjoin(Incident, Incident.incident_id == request_id)
        .outerjoin(
            _Original,
            and_(Incident.duplicate_confirmed, _Original.incident_id == Incident.duplicate_of),
        )
        .outerjoin(District, District.code == func.left(_AGENCY_CODE, DISTRICT_CODE_LENGTH))
        .outerjoin(Street, Street.code == func.left(_AGENCY_CODE, STREET_CODE_LENGTH))
        .outerjoin(Community, Community.code == func.left(_AGENCY_CODE, COMMUNITY_CODE_LENGTH))
    )


def _statement() -> Select[Any]:
    statement = select(*_COLUMNS, *_INCIDENT_COLUMNS).select_from(Open311Request)
    return _with_incident(statement, Open311Request.incident_id)


# --------------------------------------------------------------------------- lockers' tasks


def _locker_statement() -> Select[Any]:
    statement = (
        select(
            LockerDropoff.event_id,
            LockerDropoff.compartment,
            LockerDropoff.document_kind,
            LockerDropoff.dropped_at,
            Locker.name.label("locker_name"),
            Locker.lon,
            Locker.lat,
            *_INCIDENT_COLUMNS,
        )
        .select_from(LockerDropoff)
        .join(Locker, Locker.locker_id == LockerDropoff.locker_id)
    )
    return _with_incident(statement, LockerDropoff.event_id)


def _locker_record(row: Row[Any]) -> ServiceRequestRecord:
    # Nothing of the resident's is stored: the locker's name stands for the address.
    return ServiceRequestRecord(
        incident_id=row.event_id,
        service_code=LOCKER_CATEGORY,
        description=task_description(row.locker_name, row.compartment, row.document_kind),
        lat=row.lat,
        lon=row.lon,
        address_string=row.locker_name,
        media_url=None,
        requested_at=row.dropped_at,
        status=row.status,
        updated_at=row.updated_at,
        agency=_agency(row),
        locker=True,
        duplicate_of=row.original_id,
        original_status=row.original_status,
        original_updated_at=row.original_updated_at,
    )


def _locker_tasks(conn: Connection, ids: Sequence[uuid.UUID]) -> list[ServiceRequestRecord]:
    rows = conn.execute(_locker_statement().where(LockerDropoff.event_id.in_(ids))).all()
    return [_locker_record(row) for row in rows]


def find_requests(conn: Connection, query: RequestQuery) -> list[ServiceRequestRecord]:
    """The requests `query` selects, newest first (ties by id), at most `query.limit`."""
    statement = _statement()
    if query.ids:
        statement = statement.where(Open311Request.incident_id.in_(query.ids))
    else:
        if query.service_codes:
            statement = statement.where(Open311Request.service_code.in_(query.service_codes))
        if query.start is not None:
            statement = statement.where(Open311Request.requested_at >= query.start)
        if query.end is not None:
            statement = statement.where(Open311Request.requested_at <= query.end)
        if len(query.statuses) == 1:
            wanted = [s.value for s in incident_statuses(query.statuses[0])]
            # A confirmed duplicate stands as its original does.
            status = func.coalesce(_Original.status, Incident.status)
            # A request not filed yet has no incident: it is open.
            if query.statuses[0] == "open":
                statement = statement.where(status.in_(wanted) | status.is_(None))
            else:
                statement = statement.where(status.in_(wanted))
    rows = conn.execute(
        statement.order_by(Open311Request.requested_at.desc(), Open311Request.incident_id).limit(
            query.limit
        )
    ).all()
    records = [_record(row) for row in rows]
    if query.ids:
        # A locker's task is listed only to who names it: a resident's errand, not a
        # public report. Newest first across both, as the listing promises.
        records += _locker_tasks(conn, query.ids)
        records.sort(key=lambda r: (-r.requested_at.timestamp(), str(r.incident_id)))
        records = records[: query.limit]
    return records


def find_request(conn: Connection, incident_id: uuid.UUID) -> ServiceRequestRecord | None:
    """One request (or locker's task) by its id, or None."""
    row = conn.execute(_statement().where(Open311Request.incident_id == incident_id)).one_or_none()
    if row is not None:
        return _record(row)
    tasks = _locker_tasks(conn, [incident_id])
    return tasks[0] if tasks else None
