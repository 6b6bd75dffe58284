"""Incidents in PostGIS for the workflow: listings, one incident with its history, transitions.

Functions take a Connection inside the caller's transaction and never commit. A
transition locks the incident's row (SELECT ... FOR UPDATE), so that of two concurrent
writers naming the same version the second waits, then sees the new version and is
refused: the rules in `geodata.incidents` decide, this module only reads and writes.
"""

import json
import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final

import psycopg
from sqlalchemy import ColumnElement, Connection, Row, and_, func, insert, or_, select, update

from geodata.accounts import Principal
from geodata.db import deadline_store, duplicate_store, incident_outbox
from geodata.db.models import Incident, IncidentEvent, WorkerAssignment
from geodata.duplicates import may_read_as_follower
from geodata.incident_status import transition_change
from geodata.incidents import (
    Action,
    IncidentNotFound,
    IncidentState,
    ListingScope,
    Status,
    Transition,
    TransitionRequest,
    check_readable,
    decide,
)
from geodata.query_limits import Bbox

GEOJSON_DECIMALS: Final = 7
SRID: Final = 4326


@dataclass(frozen=True, slots=True)
class IncidentRecord:
    """An incident as served: its state, what was reported, and its point (WGS84)."""

    incident_id: uuid.UUID
    state: IncidentState
    category: str
    description: str | None
    reported_at: datetime
    received_at: datetime
    updated_at: datetime
    flags: tuple[str, ...]
    geometry: dict[str, Any]
    #: When the current stage falls due (docs/DEADLINES.md), and whether it is past due.
    due_at: datetime | None = None
    overdue: bool = False
    #: The original a supervisor confirmed this report repeats (the probable link, before
    #: that, is `state.probable_duplicate_of`), and how far from it the report was made.
    duplicate_of: uuid.UUID | None = None
    duplicate_distance_m: float | None = None


@dataclass(frozen=True, slots=True)
class HistoryEntry:
    """One transition as recorded."""

    version: int
    action: str
    from_status: str
    to_status: str
    assignee: str | None
    escalated_to: str | None
    note: str | None
    actor: str
    actor_role: str
    at: datetime


@dataclass(frozen=True, slots=True)
class IncidentDetail:
    """An incident with every transition it went through, oldest first."""

    record: IncidentRecord
    history: tuple[HistoryEntry, ...]
    #: The reports confirmed duplicates of this one: their reporters follow it.
    duplicates: tuple[uuid.UUID, ...] = ()


@dataclass(frozen=True, slots=True)
class IncidentFilter:
    """What a listing selects: the caller's scope and the query's filters."""

    scope: ListingScope
    bbox: Bbox | None = None
    statuses: tuple[Status, ...] = ()
    category: str | None = None
    overdue: bool | None = None


@dataclass(frozen=True, slots=True)
class IncidentPage:
    """A page of incidents, newest report first, and how many matched in all."""

    incidents: tuple[IncidentRecord, ...]
    number_matched: int


_COLUMNS: Final = (
    Incident.incident_id,
    Incident.status,
    Incident.version,
    Incident.staff_id,
    Incident.grid_code,
    Incident.community_code,
    Incident.escalated_to,
    Incident.source,
    Incident.reporter_id,
    Incident.category,
    Incident.description,
    Incident.reported_at,
    Incident.received_at,
    Incident.updated_at,
    Incident.flags,
    Incident.due_at,
    Incident.overdue,
    Incident.duplicate_of,
    Incident.duplicate_distance_m,
    Incident.duplicate_confirmed,
    func.ST_AsGeoJSON(Incident.geom, GEOJSON_DECIMALS).label("geojson"),
)


def _record(row: Row[Any]) -> IncidentRecord:
    return IncidentRecord(
        incident_id=row.incident_id,
        state=IncidentState(
            status=Status(row.status),
            version=row.version,
            assignee=row.staff_id,
            grid_code=row.grid_code,
            community_code=row.community_code,
            escalated_to=row.escalated_to,
            source=row.source,
            reporter_id=row.reporter_id,
            probable_duplicate_of=None if row.duplicate_confirmed else row.duplicate_of,
        ),
        category=row.category,
        description=row.description,
        reported_at=row.reported_at,
        received_at=row.received_at,
        updated_at=row.updated_at,
        flags=tuple(row.flags or ()),
        geometry=json.loads(row.geojson),
        due_at=row.due_at,
        overdue=row.overdue,
        duplicate_of=row.duplicate_of if row.duplicate_confirmed else None,
        duplicate_distance_m=row.duplicate_distance_m,
    )


def load_incident(
    conn: Connection, incident_id: uuid.UUID, *, lock: bool = False
) -> IncidentRecord:
    """The incident, its row locked until the transaction ends when `lock`; or IncidentNotFound."""
    statement = select(*_COLUMNS).where(Incident.incident_id == incident_id)
    if lock:
        statement = statement.with_for_update(of=Incident)
    row = conn.execute(statement).one_or_none()
    if row is None:
        raise IncidentNotFound(f"no incident has the id {incident_id}")
    return _record(row)


def reporting_event_of(conn: Connection, incident_id: uuid.UUID) -> uuid.UUID | None:
    """The event_id of the report that made the incident, or None when it is not stored."""
    statement = select(Incident.event_id).where(Incident.incident_id == incident_id)
    event_id: uuid.UUID | None = conn.execute(statement).scalar_one_or_none()
    return event_id


def history_of(conn: Connection, incident_id: uuid.UUID) -> tuple[HistoryEntry, ...]:
    """The incident's transitions, oldest first."""
    rows = conn.execute(
        select(
            IncidentEvent.version,
            IncidentEvent.action,
            IncidentEvent.from_status,
            IncidentEvent.to_status,
            IncidentEvent.assignee,
            IncidentEvent.escalated_to,
            IncidentEvent.note,
            IncidentEvent.actor,
            IncidentEvent.actor_role,
            IncidentEvent.at,
        )
        .where(IncidentEvent.incident_id == incident_id)
        .order_by(IncidentEvent.version)
    ).all()
    return tuple(HistoryEntry(**row._asdict()) for row in rows)


def readable_incident(
    conn: Connection, incident_id: uuid.UUID, principal: Principal
) -> IncidentDetail:
    """The incident and its history if the caller may read it (404, else 403): a worker
    who reported a confirmed duplicate of it follows it, and may read it too."""
    record = load_incident(conn, incident_id)
    followers = duplicate_store.followers_of(_psycopg(conn), incident_id)
    if not may_read_as_follower(principal, frozenset(f.worker_id or "" for f in followers)):
        check_readable(principal, record.state)
    duplicates = tuple(follower.incident_id for follower in followers)
    return IncidentDetail(record, history_of(conn, incident_id), duplicates)


def current_grids_of(conn: Connection, worker_id: str, at: datetime) -> list[str]:
    """The grids a worker is assigned to at `at` (none for an unknown worker)."""
    rows = conn.execute(
        select(WorkerAssignment.grid_code)
        .where(
            WorkerAssignment.worker_id == worker_id,
            WorkerAssignment.valid_from <= at,
            or_(WorkerAssignment.valid_to.is_(None), WorkerAssignment.valid_to > at),
        )
        .distinct()
    ).scalars()
    return list(rows)


def transition_incident(
    conn: Connection,
    incident_id: uuid.UUID,
    principal: Principal,
    request: TransitionRequest,
    *,
    expected_version: int,
    now: datetime,
) -> IncidentDetail:
    """Decide and record one transition; the incident as it now stands, with its history."""
    record = load_incident(conn, incident_id, lock=True)
    grids = current_grids_of(conn, request.assignee, now) if request.assignee else []
    transition = decide(
        record.state,
        principal,
        request,
        expected_version=expected_version,
        assignee_grids=grids,
    )
    _record_transition(conn, incident_id, transition, principal, now)
    driver = _psycopg(conn)
    if transition.action is Action.CONFIRM_DUPLICATE:
        duplicate_store.confirm_link(driver, incident_id)
    elif transition.action is Action.SPLIT:
        duplicate_store.remove_link(driver, incident_id)
    if transition.action is not Action.SPLIT:
        # A person's move begins a stage: its due time counts from now and the flag
        # clears. A split begins none: the case goes on in its stage, due as it was.
        table = deadline_store.load_table(driver)
        due_at = table.due_at(record.category, transition.to_status, now)
        deadline_store.set_due(driver, [(incident_id, due_at)])
    moved = load_incident(conn, incident_id)
    _queue_change(conn, moved, transition, principal, now)
    followers = duplicate_store.followers_of(driver, incident_id)
    duplicates = tuple(follower.incident_id for follower in followers)
    return IncidentDetail(moved, history_of(conn, incident_id), duplicates)


def _queue_change(
    conn: Connection,
    record: IncidentRecord,
    transition: Transition,
    principal: Principal,
    now: datetime,
) -> None:
    """Queue the transition's status change in the outbox, in this transaction."""
    lon, lat = record.geometry["coordinates"][:2]
    change = transition_change(
        incident_id=record.incident_id,
        transition=transition,
        actor_role=principal.role,
        at=now,
        category=record.category,
        grid_code=record.state.grid_code,
        community_code=record.state.community_code,
        lon=lon,
        lat=lat,
        due_at=record.due_at,
        overdue=record.overdue,
    )
    incident_outbox.queue_changes(_psycopg(conn), [change])


def psycopg_of(conn: Connection) -> psycopg.Connection:
    """psycopg's connection under a SQLAlchemy one, for the psycopg readers and writers."""
    return _psycopg(conn)


def _psycopg(conn: Connection) -> psycopg.Connection:
    """psycopg's connection under `conn`, inside the transaction SQLAlchemy began on it, so
    that what the psycopg writers (outbox, deadlines) write commits with the transition."""
    driver = conn.connection.driver_connection
    if not isinstance(driver, psycopg.Connection):
        raise TypeError(f"the incident outbox needs psycopg 3, not {type(driver).__name__}")
    return driver


def _record_transition(
    conn: Connection,
    incident_id: uuid.UUID,
    transition: Transition,
    principal: Principal,
    now: datetime,
) -> None:
    conn.execute(
        update(Incident)
        .where(Incident.incident_id == incident_id, Incident.version == transition.version - 1)
        .values(
            status=transition.to_status.value,
            staff_id=transition.assignee,
            escalated_to=transition.escalated_to,
            version=transition.version,
            updated_at=now,
        )
    )
    conn.execute(
        insert(IncidentEvent).values(
            incident_id=incident_id,
            version=transition.version,
            action=transition.action.value,
            from_status=transition.from_status.value,
            to_status=transition.to_status.value,
            assignee=transition.assignee,
            escalated_to=transition.escalated_to,
            note=transition.note,
            actor=principal.name,
            actor_role=principal.role.value,
            at=now,
        )
    )


def _conditions(query: IncidentFilter) -> list[ColumnElement[bool]]:
    conditions: list[ColumnElement[bool]] = []
    scope = query.scope
    if scope.area_prefix:
        area = func.coalesce(Incident.grid_code, Incident.community_code)
        conditions.append(area.startswith(scope.area_prefix, autoescape=True))
    if scope.worker_id:
        reported = and_(Incident.source == "worker", Incident.reporter_id == scope.worker_id)
        conditions.append(or_(Incident.staff_id == scope.worker_id, reported))
    if query.bbox is not None:
        box = query.bbox
        envelope = func.ST_MakeEnvelope(box.min_lon, box.min_lat, box.max_lon, box.max_lat, SRID)
        conditions.append(func.ST_Intersects(Incident.geom, envelope))
    if query.statuses:
        conditions.append(Incident.status.in_([s.value for s in query.statuses]))
    if query.overdue is not None:
        conditions.append(Incident.overdue.is_(query.overdue))
    if query.category:
        conditions.append(
            or_(
                Incident.category == query.category,
                Incident.category.startswith(query.category + ".", autoescape=True),
            )
        )
    return conditions


def list_incidents(
    conn: Connection, query: IncidentFilter, *, limit: int, offset: int
) -> IncidentPage:
    """A page of the incidents `query` selects, newest report first (ties by id)."""
    conditions = _conditions(query)
    matched = conn.execute(
        select(func.count()).select_from(Incident).where(*conditions)
    ).scalar_one()
    if offset >= matched:
        return IncidentPage((), matched)
    rows = conn.execute(
        select(*_COLUMNS)
        .where(*conditions)
        .order_by(Incident.reported_at.desc(), Incident.incident_id)
        .limit(limit)
        .offset(offset)
    ).all()
    return IncidentPage(tuple(_record(row) for row in rows), matched)
