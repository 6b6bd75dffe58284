"""Deadlines on the real PostGIS and broker, with a clock the test sets: a case left alone
is overdue at the right minute (a holiday and working hours counted), climbs one level per
passed due moment, each change published once; handling stops it; a restart changes nothing."""

import uuid
from collections.abc import Callable
from datetime import datetime
from typing import Any

import psycopg
import pytest

from event_consumers.deadlines import DeadlineEngine, ManualClock
from event_consumers.outbox import INCIDENT_STATUS_OUTBOX, OutboxPublisher
from geodata.accounts import Principal, Role
from geodata.contract import Topics
from geodata.db import deadline_store
from geodata.db.engine import create_db_engine
from geodata.db.incident_store import transition_incident
from geodata.deadlines import CITY_ZONE
from geodata.incidents import Status, transition_request
from tests.integration.incident_status_support import published_changes
from tests.integration.incident_support import open_env, pick_city, store_incident

pytestmark = pytest.mark.integration

ADMIN = Principal(account_id=1, token_id=1, name="admin", role=Role.ADMIN)


def shanghai(month: int, day: int, hour: int, minute: int) -> datetime:
    return datetime(2020, month, day, hour, minute, tzinfo=CITY_ZONE)


def _file(url: str, grid: str, worker: str, at: datetime, **kwargs: Any) -> uuid.UUID:
    """A case stored as the consumer stores it, its due time set as the filing sets it."""
    incident_id = uuid.UUID(store_incident(url, grid, staff=worker, reported_at=at, **kwargs))
    with psycopg.connect(url) as conn:
        table = deadline_store.load_table(conn)
        status = Status(kwargs.get("status", "reported"))
        due = table.due_at(kwargs.get("category", "environment.garbage"), status, at)
        deadline_store.set_due(conn, [(incident_id, due)])
    return incident_id


def _row(url: str, incident_id: uuid.UUID) -> tuple[Any, ...]:
    with psycopg.connect(url) as conn:
        row = conn.execute(
            "SELECT status, escalated_to, version, overdue, due_at FROM incidents"
            " WHERE incident_id = %s",
            (incident_id,),
        ).fetchone()
    assert row is not None
    return tuple(row)


def _publish(url: str, bootstrap: str, topic: str) -> None:
    publisher = OutboxPublisher(url, bootstrap, topic, INCIDENT_STATUS_OUTBOX)
    try:
        while publisher.publish_pending():
            pass
    finally:
        publisher.close()


def _move(url: str, incident_id: uuid.UUID, action: str, at: datetime, **kwargs: Any) -> None:
    engine = create_db_engine(url)
    try:
        with engine.begin() as conn:
            version = _row(url, incident_id)[2]
            transition_incident(
                conn,
                incident_id,
                ADMIN,
                transition_request(action, **kwargs),
                expected_version=version,
                now=at,
            )
    finally:
        engine.dispose()


def test_a_case_left_alone_climbs_once_per_level_at_the_right_minute_and_stops_when_handled(
    reference_database_url: str,
    kafka_bootstrap: str,
    topic_factory: Callable[..., Topics],
) -> None:
    url = reference_database_url
    city = pick_city(url)
    topic = topic_factory().incident_status
    # Filed on the eve of National Day at 17:59: one working minute, then eight days off,
    # then the rest of its two working hours on Friday 9 October.
    filed = _file(url, city.grid_a, city.worker_a, shanghai(9, 30, 17, 59))
    assert _row(url, filed)[4] == shanghai(10, 9, 10, 59)
    clock = ManualClock(shanghai(10, 9, 10, 58))
    engine = DeadlineEngine(url, clock)
    engine.load()
    assert engine.step() == 0
    assert _row(url, filed)[:4] == ("reported", None, 1, False)

    clock.set(shanghai(10, 9, 10, 59))
    assert engine.step() == 1
    community = city.grid_a[:12]
    # Handed to the community at 10:59, which has its own two working hours to dispatch.
    assert _row(url, filed) == ("escalated", community, 2, True, shanghai(10, 9, 12, 59))
    assert engine.step() == 0

    # A restart mid-way: the new engine finds nothing to do until the next due moment.
    engine.close()
    engine = DeadlineEngine(url, clock)
    engine.load()
    assert engine.step() == 0
    clock.set(shanghai(10, 9, 12, 59))
    assert engine.step() == 1
    assert _row(url, filed)[:4] == ("escalated", city.grid_a[:9], 3, True)
    assert engine.step() == 0
    restarted = DeadlineEngine(url, clock)
    restarted.load()
    assert restarted.step() == 0  # a second engine on the same rows: nothing twice
    restarted.close()

    # The street office dispatches at 13:30: handled, so the flag clears and the handling
    # stage (three working days) begins; the engine learns it from the outbox.
    _move(url, filed, "dispatch", shanghai(10, 9, 13, 30), assignee=city.worker_a)
    assert _row(url, filed)[:4] == ("dispatched", city.grid_a[:9], 4, False)
    # Saturday 10 October is a make-up working day: three working days end on Tuesday.
    assert _row(url, filed)[4] == shanghai(10, 13, 13, 30)
    clock.set(shanghai(10, 13, 13, 29))
    assert engine.step() == 0
    _move(url, filed, "start", shanghai(10, 13, 9, 0))
    _move(url, filed, "resolve", shanghai(10, 13, 10, 0), note="清运完毕")
    _move(url, filed, "close", shanghai(10, 13, 11, 0))
    clock.set(shanghai(12, 31, 23, 0))
    assert engine.step() == 0
    assert _row(url, filed)[:4] == ("closed", city.grid_a[:9], 7, False)
    assert _row(url, filed)[4] is None
    engine.close()

    _publish(url, kafka_bootstrap, topic)
    changes = published_changes(kafka_bootstrap, topic)[str(filed)]
    assert [(c["version"], c["action"], c["overdue"], c["actor_role"]) for c in changes] == [
        (2, "escalate", True, "system"),
        (3, "escalate", True, "system"),
        (4, "dispatch", False, "admin"),
        (5, "start", False, "admin"),
        (6, "resolve", False, "admin"),
        (7, "close", False, "admin"),
    ]
    # Each escalation happened at its due moment, and says when the next stage falls due.
    assert [c["at"] for c in changes[:2]] == [
        "2020-10-09T02:59:00+00:00",
        "2020-10-09T04:59:00+00:00",
    ]
    assert changes[0]["due_at"] == "2020-10-09T04:59:00+00:00"
    assert changes[0]["escalated_to"] == community
    assert changes[-1]["due_at"] is None


def test_past_the_top_a_case_is_marked_overdue_once_and_an_urgent_one_counts_the_night(
    reference_database_url: str,
    kafka_bootstrap: str,
    topic_factory: Callable[..., Topics],
) -> None:
    url = reference_database_url
    city = pick_city(url)
    topic = topic_factory().incident_status
    street, district = city.grid_a[:9], city.grid_a[:6]
    monday = shanghai(9, 7, 9, 0)
    at_street = _file(
        url, city.grid_a, city.worker_a, monday, status="escalated", escalated_to=street
    )
    # Dispatched by the district already: nowhere higher to go, so only the flag.
    at_district = _file(
        url, city.grid_a, city.worker_a, monday, status="dispatched", escalated_to=district
    )
    # Awaiting verification: the workflow escalates nothing resolved.
    resolved = _file(url, city.grid_a, city.worker_a, monday, status="resolved")
    # A gas leak at 02:00: half an hour, night or not.
    leak = _file(
        url, city.grid_a, city.worker_a, shanghai(9, 8, 2, 0), category="emergency.gas_leak"
    )
    assert _row(url, leak)[4] == shanghai(9, 8, 2, 30)
    clock = ManualClock(shanghai(9, 8, 2, 29))
    engine = DeadlineEngine(url, clock)
    engine.load()
    # The street case fell due at 11:00 on the 7th: to the district, which then let its own
    # two working hours pass too: already overdue at the top, nothing more. The resolved
    # case's working day for verification ended at 18:00 on the 7th: marked.
    assert engine.step() == 2
    assert _row(url, at_street)[:4] == ("escalated", district, 2, True)
    assert _row(url, resolved)[:4] == ("resolved", None, 2, True)
    assert _row(url, at_district)[:4] == ("dispatched", district, 1, False)
    assert _row(url, leak)[3] is False
    clock.set(shanghai(9, 8, 2, 30))
    assert engine.step() == 1
    assert _row(url, leak)[:4] == ("escalated", city.grid_a[:12], 2, True)
    # Weeks later: the leak climbs twice (03:00, 03:30); the district's case, whose three
    # working days ended at 18:00 on the 9th, is marked once.
    clock.set(shanghai(9, 30, 12, 0))
    assert engine.step() == 3
    for month in (10, 11, 12):
        clock.set(shanghai(month, 28, 12, 0))
        assert engine.step() == 0
    engine.close()
    restarted = DeadlineEngine(url, clock)
    restarted.load()
    assert restarted.step() == 0
    restarted.close()
    assert _row(url, at_street)[:4] == ("escalated", district, 2, True)
    assert _row(url, at_district)[:4] == ("dispatched", district, 2, True)
    assert _row(url, resolved)[:4] == ("resolved", None, 2, True)
    assert _row(url, leak)[:4] == ("escalated", district, 4, True)

    with open_env(url) as env:
        listed = env.get("admin", overdue="true", limit=100)
        assert listed.status_code == 200, listed.text
        features = {
            f["properties"]["incident_id"]: f["properties"] for f in listed.json()["features"]
        }
        assert set(features) == {str(i) for i in (at_street, at_district, resolved, leak)}
        assert features[str(at_district)]["due_at"] == "2020-09-09T18:00:00+08:00"
        assert all(p["overdue"] for p in features.values())
        others = env.get("admin", overdue="false", limit=100).json()["features"]
        assert not {f["properties"]["incident_id"] for f in others} & set(features)
        detail = env.get("admin", f"/{resolved}").json()
        assert detail["properties"]["history"][-1]["action"] == "overdue"

    _publish(url, kafka_bootstrap, topic)
    published = published_changes(kafka_bootstrap, topic)
    assert [c["action"] for c in published[str(at_street)]] == ["escalate"]
    for marked, status in ((at_district, "dispatched"), (resolved, "resolved")):
        [change] = published[str(marked)]
        assert (change["action"], change["from_status"], change["to_status"]) == (
            "overdue",
            status,
            status,
        )
        assert change["overdue"] is True
    assert [(c["action"], c["escalated_to"]) for c in published[str(leak)]] == [
        ("escalate", city.grid_a[:12]),
        ("escalate", street),
        ("escalate", district),
    ]
    assert published[str(leak)][1]["at"] == "2020-09-07T19:00:00+00:00"


def test_the_city_edits_its_table_and_calendar_with_the_cli_and_a_filing_obeys(
    database_url: str,
) -> None:
    from tests.integration.test_open311 import wangge

    listed = wangge(database_url, "deadlines", "list")
    assert listed.returncode == 0, listed.stderr
    assert "working_days" in listed.stdout
    assert "2020-10-01" in listed.stdout
    done = wangge(database_url, "deadlines", "set", "environment.garbage", "handle", "5", "hours")
    assert done.returncode == 0, done.stderr
    assert (
        wangge(database_url, "deadlines", "day", "2020-09-07", "--kind", "holiday").returncode == 0
    )
    refused = wangge(database_url, "deadlines", "set", "environment.garbage", "handle", "5")
    assert refused.returncode == 1
    assert "both an amount and a unit" in refused.stderr
    assert (
        wangge(database_url, "deadlines", "set", "no.such", "handle", "5", "hours").returncode == 1
    )
    with psycopg.connect(database_url) as conn:
        table = deadline_store.load_table(conn)
    monday = shanghai(9, 7, 10, 0)
    assert table.due_at("environment.garbage", Status.DISPATCHED, monday) == shanghai(9, 7, 15, 0)
    # Monday is a holiday now: two working hours start on Tuesday morning.
    assert table.due_at("environment.garbage", Status.REPORTED, monday) == shanghai(9, 8, 11, 0)
    removed = wangge(database_url, "deadlines", "set", "environment.garbage", "handle")
    assert removed.returncode == 0, removed.stderr
    assert wangge(database_url, "deadlines", "day", "2020-09-07").returncode == 0
    with psycopg.connect(database_url) as conn:
        table = deadline_store.load_table(conn)
    assert table.due_at("environment.garbage", Status.REPORTED, monday) == shanghai(9, 7, 12, 0)
