"""The calls to workers and their delivery attempts (`notify_deliveries`, `notify_attempts`).

Functions take a connection inside the caller's transaction and never commit. A sender
claims due calls by pushing their next attempt past the time an attempt may take, in a
short transaction of its own, so that it holds no lock while it waits on the receiver and
two API processes never send one call at once.
"""

import json
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Connection, text

from geodata.notify import AttemptOutcome, DeliveryState


@dataclass(frozen=True)
class Delivery:
    """A call as stored: who, by whom, its state and attempts."""

    id: int
    delivery_id: uuid.UUID
    worker_id: str
    requested_by: str
    requested_at: datetime
    body: dict[str, Any]
    state: DeliveryState
    attempts: int
    next_attempt_at: datetime | None
    delivered_at: datetime | None
    last_error: str | None


_COLUMNS = (
    "id, delivery_id, worker_id, requested_by, requested_at, body, state, attempts,"
    " next_attempt_at, delivered_at, last_error"
)


def _delivery(row: Any) -> Delivery:
    body = row.body if isinstance(row.body, dict) else json.loads(row.body)
    return Delivery(
        int(row.id),
        row.delivery_id,
        row.worker_id,
        row.requested_by,
        row.requested_at,
        body,
        row.state,
        int(row.attempts),
        row.next_attempt_at,
        row.delivered_at,
        row.last_error,
    )


def record_call(
    conn: Connection,
    *,
    delivery_id: uuid.UUID,
    worker_id: str,
    requested_by: str,
    requested_at: datetime,
    body: dict[str, Any],
) -> Delivery:
    """Store a new call, pending and due at once."""
    row = conn.execute(
        text(
            "INSERT INTO notify_deliveries (delivery_id, worker_id, requested_by, requested_at,"
            " body, state, attempts, next_attempt_at)"
            " VALUES (:delivery_id, :worker_id, :requested_by, :requested_at,"
            " CAST(:body AS json), 'pending', 0, :requested_at)"
            f" RETURNING {_COLUMNS}"
        ),
        {
            "delivery_id": delivery_id,
            "worker_id": worker_id,
            "requested_by": requested_by,
            "requested_at": requested_at,
            "body": json.dumps(body, ensure_ascii=False),
        },
    ).one()
    return _delivery(row)


def claim_due(conn: Connection, now: datetime, lease: timedelta, limit: int) -> list[Delivery]:
    """The pending calls due by `now`, oldest first, each put `lease` ahead so that no
    other sender takes them meanwhile (SKIP LOCKED: one being claimed is passed over)."""
    rows = conn.execute(
        text(
            "UPDATE notify_deliveries SET next_attempt_at = :until WHERE id IN ("
            " SELECT id FROM notify_deliveries WHERE state = 'pending'"
            " AND next_attempt_at <= :now ORDER BY next_attempt_at, id LIMIT :limit"
            " FOR UPDATE SKIP LOCKED)"
            f" RETURNING {_COLUMNS}"
        ),
        {"now": now, "until": now + lease, "limit": limit},
    ).all()
    return sorted((_delivery(row) for row in rows), key=lambda d: d.id)


def record_attempt(
    conn: Connection,
    delivery: Delivery,
    *,
    at: datetime,
    http_status: int | None,
    error: str | None,
    outcome: AttemptOutcome,
) -> None:
    """Log one attempt of `delivery` (its attempts + 1) and move the call to `outcome`."""
    attempt = delivery.attempts + 1
    conn.execute(
        text(
            "INSERT INTO notify_attempts (delivery_id, attempt, at, http_status, error)"
            " VALUES (:id, :attempt, :at, :http_status, :error)"
        ),
        {
            "id": delivery.id,
            "attempt": attempt,
            "at": at,
            "http_status": http_status,
            "error": error,
        },
    )
    conn.execute(
        text(
            "UPDATE notify_deliveries SET attempts = :attempt, state = :state,"
            " next_attempt_at = :next, last_error = :error,"
            " delivered_at = CASE WHEN :state = 'delivered' THEN :at ELSE delivered_at END"
            " WHERE id = :id"
        ),
        {
            "id": delivery.id,
            "attempt": attempt,
            "state": outcome.state,
            "next": outcome.next_attempt_at,
            "error": error,
            "at": at,
        },
    )


def worker_calls(conn: Connection, worker_id: str, limit: int) -> list[Delivery]:
    """A worker's latest calls, newest first."""
    rows = conn.execute(
        text(
            f"SELECT {_COLUMNS} FROM notify_deliveries WHERE worker_id = :worker_id"
            " ORDER BY requested_at DESC, id DESC LIMIT :limit"
        ),
        {"worker_id": worker_id, "limit": limit},
    ).all()
    return [_delivery(row) for row in rows]


def attempts_of(
    conn: Connection, delivery_id: uuid.UUID
) -> list[tuple[int, int | None, str | None]]:
    """A call's attempts in order: (attempt, HTTP status, error)."""
    rows = conn.execute(
        text(
            "SELECT a.attempt, a.http_status, a.error FROM notify_attempts a"
            " JOIN notify_deliveries d ON d.id = a.delivery_id"
            " WHERE d.delivery_id = :delivery_id ORDER BY a.attempt"
        ),
        {"delivery_id": delivery_id},
    ).all()
    return [(int(r.attempt), r.http_status, r.error) for r in rows]
