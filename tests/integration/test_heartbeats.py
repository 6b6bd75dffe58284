"""The consumer heartbeat repository on a real PostGIS: upsert, no commit, read back."""

from datetime import UTC, datetime, timedelta

import psycopg
import pytest
from sqlalchemy import Engine

from geodata.db.engine import libpq_url
from geodata.db.heartbeats import FORGET_AFTER, read_heartbeats, record_heartbeat

pytestmark = pytest.mark.integration

T0 = datetime(2026, 12, 3, 8, 0, tzinfo=UTC)


def _beat(conn: psycopg.Connection, member: str, at: datetime, lag: int | None = 0) -> None:
    record_heartbeat(
        conn,
        group_id="g",
        stage="intake",
        member=member,
        topics=["grid.checkins.v1", "grid.incidents.v1"],
        lag=lag,
        at=at,
    )


def test_a_members_beats_overwrite_its_row_and_read_back_newest_first(
    database_url: str, engine: Engine
) -> None:
    with psycopg.connect(libpq_url(database_url)) as conn:
        _beat(conn, "host:1", T0, lag=None)
        _beat(conn, "host:1", T0 + timedelta(seconds=5), lag=7)
        _beat(conn, "host:2", T0 + timedelta(seconds=1), lag=3)
        record_heartbeat(
            conn,
            group_id="g.compliance",
            stage="compliance",
            member="host:1",
            topics=["grid.assignments.v1"],
            lag=None,
            at=T0,
        )

    with engine.connect() as conn:
        beats = read_heartbeats(conn)
        only_g = read_heartbeats(conn, group_ids=["g"])

    assert [(b.group_id, b.member, b.lag, b.at) for b in beats] == [
        ("g", "host:1", 7, T0 + timedelta(seconds=5)),
        ("g", "host:2", 3, T0 + timedelta(seconds=1)),
        ("g.compliance", "host:1", None, T0),
    ]
    assert beats[0].topics == ("grid.checkins.v1", "grid.incidents.v1")
    assert beats[2].stage == "compliance"
    assert [b.member for b in only_g] == ["host:1", "host:2"]


def test_a_beat_is_not_committed_by_the_repository(database_url: str, engine: Engine) -> None:
    with psycopg.connect(libpq_url(database_url)) as conn:
        _beat(conn, "host:1", T0)
        conn.rollback()

    with engine.connect() as conn:
        assert read_heartbeats(conn) == []


def test_a_late_beat_never_moves_a_members_time_back(database_url: str, engine: Engine) -> None:
    with psycopg.connect(libpq_url(database_url)) as conn:
        _beat(conn, "host:1", T0 + timedelta(seconds=10))
        _beat(conn, "host:1", T0)

    with engine.connect() as conn:
        (beat,) = read_heartbeats(conn)
    assert beat.at == T0 + timedelta(seconds=10)


def test_members_silent_for_a_day_are_forgotten_at_the_groups_next_beat(
    database_url: str, engine: Engine
) -> None:
    with psycopg.connect(libpq_url(database_url)) as conn:
        _beat(conn, "old:1", T0)
        _beat(conn, "new:2", T0 + FORGET_AFTER + timedelta(seconds=1))

    with engine.connect() as conn:
        assert [b.member for b in read_heartbeats(conn)] == ["new:2"]


def test_an_unknown_stage_is_refused_before_it_reaches_the_database(database_url: str) -> None:
    with psycopg.connect(libpq_url(database_url)) as conn, pytest.raises(ValueError, match="stage"):
        record_heartbeat(
            conn, group_id="g", stage="checkins", member="m", topics=[], lag=None, at=T0
        )
