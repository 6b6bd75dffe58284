"""Deadlines in PostGIS: the city's table and calendar, due times on incidents, passed due moments.

Functions take a psycopg connection inside the caller's transaction and never commit. A
passed due moment (`apply_due`) locks the incident's row and decides from the row, not
from what the caller believed: the engine's queue is a hint, the row is the truth, so a
second call for the same moment (a restart, a duplicate entry) finds nothing to do.
"""

import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date, datetime
from typing import Final

import psycopg

from geodata.accounts import Principal, Role
from geodata.db import incident_outbox
from geodata.deadlines import (
    Deadline,
    DeadlineTable,
    OnDue,
    Stage,
    Unit,
    WorkCalendar,
    on_due,
)
from geodata.incident_status import (
    OVERDUE_ACTION,
    SYSTEM_ROLE,
    IncidentStatusChange,
    transition_change,
)
from geodata.incidents import (
    FINAL_STATUSES,
    Action,
    IncidentState,
    Status,
    Transition,
    decide,
    transition_request,
)

DEADLINE_ACTOR: Final = "deadlines"
"""The actor name of what the deadlines do, in an incident's history."""
_DEADLINES_PRINCIPAL: Final = Principal(
    account_id=0, token_id=0, name=DEADLINE_ACTOR, role=Role.ADMIN
)
"""Decides the deadlines' escalations with the workflow's own rules (an admin may make any
transition the state allows); recorded as `system`, never as an admin."""


# --------------------------------------------------------------------------- the table


def load_table(conn: psycopg.Connection) -> DeadlineTable:
    """The city's deadline table and working calendar as they stand."""
    rows = conn.execute("SELECT category, stage, amount, unit FROM incident_deadlines").fetchall()
    days = conn.execute("SELECT day, kind FROM calendar_days").fetchall()
    calendar = WorkCalendar(
        holidays=frozenset(day for day, kind in days if kind == "holiday"),
        extra_workdays=frozenset(day for day, kind in days if kind == "workday"),
    )
    return DeadlineTable(
        {(str(c), Stage(s)): Deadline(float(a), Unit(u)) for c, s, a, u in rows}, calendar
    )


def set_deadline(conn: psycopg.Connection, category: str, stage: Stage, deadline: Deadline) -> None:
    """Create or replace one row of the table (applies to stages begun from now on)."""
    conn.execute(
        "INSERT INTO incident_deadlines (category, stage, amount, unit) VALUES (%s, %s, %s, %s)"
        " ON CONFLICT (category, stage) DO UPDATE SET amount = EXCLUDED.amount,"
        " unit = EXCLUDED.unit",
        (category, stage.value, deadline.amount, deadline.unit.value),
    )


def delete_deadline(conn: psycopg.Connection, category: str, stage: Stage) -> bool:
    """Remove one row (a less specific one then applies); False if there was none."""
    cursor = conn.execute(
        "DELETE FROM incident_deadlines WHERE category = %s AND stage = %s",
        (category, stage.value),
    )
    return cursor.rowcount > 0


def set_calendar_day(
    conn: psycopg.Connection, day: date, kind: str | None, name: str | None
) -> None:
    """Make `day` a holiday or a make-up working day (`kind`), or an ordinary day (None)."""
    if kind is None:
        conn.execute("DELETE FROM calendar_days WHERE day = %s", (day,))
        return
    conn.execute(
        "INSERT INTO calendar_days (day, kind, name) VALUES (%s, %s, %s)"
        " ON CONFLICT (day) DO UPDATE SET kind = EXCLUDED.kind, name = EXCLUDED.name",
        (day, kind, name),
    )


# --------------------------------------------------------------------------- due times


def set_due(conn: psycopg.Connection, dues: Iterable[tuple[uuid.UUID, datetime | None]]) -> None:
    """Store each incident's due time for the stage it just entered, and clear its flag."""
    with conn.cursor() as cursor:
        cursor.executemany(
            "UPDATE incidents SET due_at = %s, overdue = false WHERE incident_id = %s",
            [(due, incident_id) for incident_id, due in dues],
        )


@dataclass(frozen=True, slots=True)
class OpenDue:
    """An open case's due moment, as the engine queues it."""

    due_at: datetime
    incident_id: uuid.UUID
    version: int


def open_dues(conn: psycopg.Connection) -> list[OpenDue]:
    """Every open case with a due moment still able to change something (not yet overdue,
    or overdue below the district)."""
    rows = conn.execute(
        "SELECT due_at, incident_id, version FROM incidents"
        " WHERE due_at IS NOT NULL AND status NOT IN ('closed', 'cancelled')"
        " AND NOT (overdue AND (status = 'resolved' OR community_code IS NULL"
        " OR length(coalesce(escalated_to, '')) = 6))"
    ).fetchall()
    return [OpenDue(row[0], row[1], int(row[2])) for row in rows]


@dataclass(frozen=True, slots=True)
class DueOutcome:
    """What a passed due moment did: the change it queued (None: nothing), and the case's
    next due moment if it has one."""

    change: IncidentStatusChange | None
    next_due: OpenDue | None


def apply_due(
    conn: psycopg.Connection, incident_id: uuid.UUID, now: datetime, table: DeadlineTable
) -> DueOutcome:
    """Escalate or mark the case if its due moment has passed by `now`, in this transaction.

    The change happens *at the due moment* (event time), and the next stage's due time
    counts from there, so the outcome does not depend on how late the engine looked.
    """
    row = conn.execute(
        "SELECT status, version, staff_id, grid_code, community_code, escalated_to, source,"
        " reporter_id, category, due_at, overdue, lon, lat,"
        " ST_X(geom), ST_Y(geom) FROM incidents WHERE incident_id = %s FOR UPDATE",
        (incident_id,),
    ).fetchone()
    if row is None:
        return DueOutcome(None, None)
    state = IncidentState(
        status=Status(row[0]),
        version=int(row[1]),
        assignee=row[2],
        grid_code=row[3],
        community_code=row[4],
        escalated_to=row[5],
        source=row[6],
        reporter_id=row[7],
    )
    category: str = row[8]
    due_at: datetime | None = row[9]
    overdue: bool = row[10]
    lon, lat = float(row[13]), float(row[14])
    if due_at is None or state.status in FINAL_STATUSES:
        return DueOutcome(None, None)
    if due_at > now:
        return DueOutcome(None, OpenDue(due_at, incident_id, state.version))
    what, level = on_due(state, overdue)
    if what is OnDue.NOTHING:
        return DueOutcome(None, None)
    if what is OnDue.ESCALATE:
        request = transition_request(
            Action.ESCALATE.value,
            note=f"overdue since {due_at.isoformat()}: escalated by the deadlines",
            level=level.value if level else None,
        )
        transition = decide(state, _DEADLINES_PRINCIPAL, request, expected_version=state.version)
        next_due = table.due_at(category, transition.to_status, due_at)
        action = transition.action.value
    else:
        transition = Transition(
            action=Action.ESCALATE,  # unused: recorded under OVERDUE_ACTION
            from_status=state.status,
            to_status=state.status,
            assignee=state.assignee,
            escalated_to=state.escalated_to,
            note=f"overdue since {due_at.isoformat()}",
            version=state.version + 1,
        )
        next_due = due_at
        action = OVERDUE_ACTION
    _record(conn, incident_id, transition, action, due_at, next_due)
    change = transition_change(
        incident_id=incident_id,
        transition=transition,
        actor_role=Role.ADMIN,
        at=due_at,
        category=category,
        grid_code=state.grid_code,
        community_code=state.community_code,
        lon=lon,
        lat=lat,
        due_at=next_due,
        overdue=True,
        action=action,
    ).model_copy(update={"actor_role": SYSTEM_ROLE})
    incident_outbox.queue_changes(conn, [change])
    queued = (
        OpenDue(next_due, incident_id, transition.version)
        if next_due is not None and what is OnDue.ESCALATE
        else None
    )
    return DueOutcome(change, queued)


def _record(
    conn: psycopg.Connection,
    incident_id: uuid.UUID,
    transition: Transition,
    action: str,
    at: datetime,
    next_due: datetime | None,
) -> None:
    conn.execute(
        "UPDATE incidents SET status = %s, staff_id = %s, escalated_to = %s, version = %s,"
        " updated_at = now(), due_at = %s, overdue = true WHERE incident_id = %s",
        (
            transition.to_status.value,
            transition.assignee,
            transition.escalated_to,
            transition.version,
            next_due,
            incident_id,
        ),
    )
    conn.execute(
        "INSERT INTO incident_events (incident_id, version, action, from_status, to_status,"
        " assignee, escalated_to, note, actor, actor_role, at)"
        " VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)",
        (
            incident_id,
            transition.version,
            action,
            transition.from_status.value,
            transition.to_status.value,
            transition.assignee,
            transition.escalated_to,
            transition.note,
            DEADLINE_ACTOR,
            SYSTEM_ROLE,
            at,
        ),
    )
