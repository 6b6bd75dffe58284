"""The incident status outbox (`incident_status_changes`): queue, read, mark, listen.

A change is queued by whoever moves the incident, in the same transaction: the consumer
filing a report, the API's transition. The transaction NOTIFYs the channel, which
PostgreSQL delivers at COMMIT only, so the publisher (`event_consumers.outbox`) wakes for
changes that exist, and a rolled-back move announces nothing. Functions take a psycopg
connection inside the caller's transaction and never commit.
"""

from collections.abc import Sequence
from typing import Final

import psycopg

from geodata.incident_status import IncidentStatusChange, change_value, incident_status_record
from geodata.records import OutboundRecord

OUTBOX_CHANNEL: Final = "wangge_incident_status_outbox"
_OUTBOX_LOCK_KEY: Final = 0x77616E68  # "wanh": one publisher across all processes


def queue_changes(conn: psycopg.Connection, changes: Sequence[IncidentStatusChange]) -> None:
    """Queue the changes for publishing and wake the publisher once this transaction commits.

    A second change of one incident at one version breaks a unique key: the caller's
    transaction fails rather than publish two histories.
    """
    if not changes:
        return
    with conn.cursor() as cursor:
        cursor.executemany(
            "INSERT INTO incident_status_changes (change_id, incident_id, version, body)"
            " VALUES (%s, %s, %s, %s::json)",
            [
                (
                    change.change_id,
                    change.incident_id,
                    change.version,
                    change_value(change).decode(),
                )
                for change in changes
            ],
        )
    conn.execute(f"NOTIFY {OUTBOX_CHANNEL}")


def listen_outbox(conn: psycopg.Connection) -> None:
    """Subscribe an autocommit connection to the outbox channel."""
    conn.execute(f"LISTEN {OUTBOX_CHANNEL}")


def lock_outbox(conn: psycopg.Connection) -> bool:
    """Take the outbox publisher's lock for this transaction; False if another holds it."""
    row = conn.execute("SELECT pg_try_advisory_xact_lock(%s)", (_OUTBOX_LOCK_KEY,)).fetchone()
    return bool(row and row[0])


def pending_records(
    conn: psycopg.Connection, topic: str, limit: int
) -> list[tuple[int, OutboundRecord]]:
    """The oldest unpublished changes as records of `topic`, in the order they were queued
    (a later version of an incident always later: its transition waited on the row lock
    of the one before), with their outbox ids (for `mark_published`)."""
    rows = conn.execute(
        "SELECT id, body::text FROM incident_status_changes"
        " WHERE published_at IS NULL ORDER BY id LIMIT %s",
        (limit,),
    ).fetchall()
    return [(int(row[0]), incident_status_record(topic, str(row[1]).encode())) for row in rows]


def mark_published(conn: psycopg.Connection, outbox_ids: Sequence[int]) -> None:
    """Record that these outbox entries are on the topic."""
    conn.execute(
        "UPDATE incident_status_changes SET published_at = now() WHERE id = ANY(%s)",
        (list(outbox_ids),),
    )
