"""Consumer heartbeats: each group member's last sign of life and lag, read by /healthz.

A consumer writes its beat with the connection it already holds, inside its own
transaction (never committing here); the API reads every member's last beat and judges
which stages are alive. Members are keyed by (group, member), so a restarted process
(a new pid) gets a row of its own and the old one ages out.
"""

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Final

import psycopg
from sqlalchemy import Connection, select

from geodata.db.models import ConsumerHeartbeat

STAGES: Final = ("intake", "compliance")
"""The consumer stages: the intake (check-ins, incidents) and the compliance engine."""

FORGET_AFTER: Final = timedelta(days=1)
"""A member silent this long is forgotten at its group's next beat: it is long gone."""

_UPSERT: Final = """
INSERT INTO consumer_heartbeats (group_id, member, stage, topics, lag, beat_at)
VALUES (%s, %s, %s, %s, %s, %s)
ON CONFLICT (group_id, member) DO UPDATE SET
    stage = EXCLUDED.stage, topics = EXCLUDED.topics, lag = EXCLUDED.lag,
    beat_at = GREATEST(consumer_heartbeats.beat_at, EXCLUDED.beat_at)
"""

_FORGET: Final = "DELETE FROM consumer_heartbeats WHERE group_id = %s AND beat_at < %s"


@dataclass(frozen=True, slots=True)
class Heartbeat:
    """One member's last beat: its group, stage, topics, lag (None: unknown) and time."""

    group_id: str
    stage: str
    member: str
    topics: tuple[str, ...]
    lag: int | None
    at: datetime


def record_heartbeat(
    conn: psycopg.Connection,
    *,
    group_id: str,
    stage: str,
    member: str,
    topics: Sequence[str],
    lag: int | None,
    at: datetime,
) -> None:
    """Upsert this member's heartbeat (no commit)."""
    if stage not in STAGES:
        raise ValueError(f"stage must be one of {STAGES}, not {stage!r}")
    if at.tzinfo is None:
        raise ValueError("at must be timezone-aware")
    conn.execute(_UPSERT, (group_id, member, stage, list(topics), lag, at))
    conn.execute(_FORGET, (group_id, at - FORGET_AFTER))


def read_heartbeats(conn: Connection, *, group_ids: Sequence[str] | None = None) -> list[Heartbeat]:
    """Every member's last heartbeat (of `group_ids` only, when given), newest first."""
    beats = ConsumerHeartbeat.__table__
    statement = select(beats).order_by(beats.c.beat_at.desc())
    if group_ids is not None:
        statement = statement.where(beats.c.group_id.in_(list(group_ids)))
    rows = conn.execute(statement)
    return [
        Heartbeat(
            group_id=row.group_id,
            stage=row.stage,
            member=row.member,
            topics=tuple(row.topics),
            lag=row.lag,
            at=row.beat_at,
        )
        for row in rows
    ]
