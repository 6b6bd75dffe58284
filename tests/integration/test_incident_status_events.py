"""grid.incident-status.v1 on the real API, consumer, PostGIS and broker: every move of an
incident published once, in order per incident, in the shape docs/asyncapi.yaml declares;
a crash between sending and marking sends nothing twice; a broker outage or a PostgreSQL
restart delays, loses nothing."""

import dataclasses
import itertools
import time
import uuid
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
import pytest
from fastapi.testclient import TestClient

from event_consumers.outbox import (
    INCIDENT_STATUS_OUTBOX,
    OutboxPublisher,
    OutboxPublisherThread,
)
from geodata.contract import Topics
from grid_service.app import ApiConfig, create_app
from tests.integration.fault_support import PrivateBroker, PrivateCluster
from tests.integration.incident_status_support import published_changes, queued, unpublished
from tests.integration.incident_support import (
    Env,
    accounts_of,
    open_env,
    pick_city,
    point_in,
    store_incident,
)
from tests.integration.pipeline_support import ConsumerProcess, count_rows, running, wait_until
from tests.integration.test_auth import bearer
from wangge import services

pytestmark = pytest.mark.integration

Step = tuple[str, str, dict[str, Any]]
"""(caller, incident key, PATCH body)."""


def _report(city_grid_point: tuple[float, float], reporter: str) -> dict[str, Any]:
    lon, lat = city_grid_point
    report_id = str(uuid.uuid4())
    return {
        "event_id": report_id,
        "incident_id": report_id,
        "category": "environment.garbage",
        "description": "垃圾堆放在楼道口",
        "lon": lon,
        "lat": lat,
        "reported_at": (datetime.now(UTC) - timedelta(minutes=1)).isoformat(),
        "source": "worker",
        "reporter_id": reporter,
    }


def _run_steps(env: Env, ids: dict[str, str], steps: Sequence[Step]) -> dict[str, int]:
    """PATCH each step as its caller on the version last seen; the versions reached."""
    versions = dict.fromkeys(ids.values(), 1)
    for caller, key, body in steps:
        incident_id = ids[key]
        moved = env.patch(caller, incident_id, body, versions[incident_id])
        assert moved.status_code == 200, (caller, key, body, moved.text)
        versions[incident_id] += 1
    return versions


def test_every_move_through_the_api_and_the_consumer_is_published_once_in_order(
    reference_database_url: str,
    kafka_bootstrap: str,
    topic_factory: Callable[..., Topics],
    tmp_path: Path,
) -> None:
    url = reference_database_url
    city = pick_city(url)
    tokens = accounts_of(url, city)
    topics = topic_factory()
    reports = {
        "a1": _report(point_in(url, city.grid_a), city.worker_a),
        "a2": _report(point_in(url, city.grid_a), city.worker_a),
        "b1": _report(point_in(url, city.grid_b), city.worker_b),
    }
    ids = {key: report["incident_id"] for key, report in reports.items()}
    a, b = city.worker_a, city.worker_b
    # Three incidents' loops, interleaved: each partition sees them mixed.
    steps: list[Step] = [
        ("sup_c", "a1", {"action": "dispatch", "assignee": a}),
        ("sup_c", "a2", {"action": "escalate", "note": "需街道协调", "level": "street"}),
        ("sup_y", "b1", {"action": "dispatch", "assignee": b}),
        ("worker_a", "a1", {"action": "start"}),
        ("sup_x", "a2", {"action": "dispatch", "assignee": a}),
        ("worker_b", "b1", {"action": "start"}),
        ("worker_a", "a1", {"action": "resolve", "note": "清运完毕"}),
        ("admin", "a2", {"action": "cancel", "note": "重复上报"}),
        ("sup_c", "a1", {"action": "reopen", "note": "楼道口仍有垃圾"}),
        ("worker_a", "a1", {"action": "resolve", "note": "再次清运"}),
        ("sup_c", "a1", {"action": "close"}),
    ]
    app = create_app(ApiConfig(url, kafka_bootstrap, topics))
    consumer = ConsumerProcess(
        url, kafka_bootstrap, topics, "status-loop", tmp_path, ("incidents",)
    )
    with TestClient(app) as client, running(consumer):
        for key, report in reports.items():
            caller = "worker_b" if key == "b1" else "worker_a"
            posted = client.post("/api/v1/incidents", json=report, headers=bearer(tokens[caller]))
            assert posted.status_code == 202, posted.text
        wait_until(
            lambda: count_rows(url, "SELECT count(*) FROM incidents") == len(reports),
            90,
            "the consumer filed the reports",
        )
        versions = _run_steps(Env(client, url, city, tokens), ids, steps)
        expected = sum(versions.values())  # one change per version, filings included
        wait_until(
            lambda: queued(url) == expected and unpublished(url) == 0,
            60,
            "the intake stage's publisher sent every change",
        )
        staff = {
            str(row[0]): row[1]
            for row in psycopg.connect(url).execute("SELECT incident_id, staff_id FROM incidents")
        }

    changes = published_changes(kafka_bootstrap, topics.incident_status)
    assert sorted(changes) == sorted(ids.values())
    every = [change for moves in changes.values() for change in moves]
    assert len(every) == expected
    assert len({change["change_id"] for change in every}) == expected  # each once
    for incident_id, moves in changes.items():
        assert [m["version"] for m in moves] == list(range(1, versions[incident_id] + 1))
        # Each change starts where the one before ended.
        for before, after in itertools.pairwise(moves):
            assert after["from_status"] == before["to_status"]
            assert after["at"] >= before["at"]
        filing = moves[0]
        report = reports[next(k for k, v in ids.items() if v == incident_id)]
        assert (filing["action"], filing["from_status"], filing["to_status"]) == (
            "report",
            None,
            "reported",
        )
        assert filing["actor_role"] == "system"
        assert datetime.fromisoformat(filing["at"]) == datetime.fromisoformat(report["reported_at"])
        assert filing["assignee"] == staff[incident_id]  # the consumer's choice
        assert filing["lon"] == pytest.approx(report["lon"])

    a1 = changes[ids["a1"]]
    assert [(m["action"], m["to_status"], m["actor_role"]) for m in a1[1:]] == [
        ("dispatch", "dispatched", "supervisor"),
        ("start", "in_progress", "worker"),
        ("resolve", "resolved", "worker"),
        ("reopen", "in_progress", "supervisor"),
        ("resolve", "resolved", "worker"),
        ("close", "closed", "supervisor"),
    ]
    assert {m["assignee"] for m in a1[1:]} == {a}
    a2 = changes[ids["a2"]]
    assert [(m["action"], m["escalated_to"], m["assignee"]) for m in a2[1:]] == [
        ("escalate", city.grid_a[:9], None),
        ("dispatch", city.grid_a[:9], a),
        ("cancel", city.grid_a[:9], a),
    ]
    assert a2[-1]["actor_role"] == "admin"
    assert {m["grid_code"] for m in every if m["incident_id"] == ids["b1"]} == {city.grid_b}
    # Nothing personal: no note, no account name, no description.
    text = repr(every)
    for private in ("清运", "重复上报", "垃圾堆放", "sup-c", "worker-a"):
        assert private not in text


def test_a_refused_move_queues_nothing(reference_database_url: str) -> None:
    with open_env(reference_database_url) as env:
        incident_id = store_incident(env.database_url, env.city.grid_a, staff=None)
        stale = env.patch("sup_c", incident_id, {"action": "cancel", "note": "x"}, version=7)
        illegal = env.patch("sup_c", incident_id, {"action": "close"})
        outside = env.patch("sup_y", incident_id, {"action": "cancel", "note": "x"})
        assert [r.status_code for r in (stale, illegal, outside)] == [412, 409, 403]
        assert queued(env.database_url) == 0
        moved = env.patch("sup_c", incident_id, {"action": "cancel", "note": "duplicate"})
        assert moved.status_code == 200
        assert queued(env.database_url) == 1


def _store_and_move(env: Env, moves: int) -> list[str]:
    """Incidents stored as the consumer stores them (no filing queued), each moved once."""
    ids = []
    for _ in range(moves):
        incident_id = store_incident(env.database_url, env.city.grid_a, staff=None)
        moved = env.patch(
            "sup_c", incident_id, {"action": "dispatch", "assignee": env.city.worker_a}
        )
        assert moved.status_code == 200, moved.text
        ids.append(incident_id)
    return ids


class _MarkFails(Exception):
    """The publisher died between the broker's acknowledgement and the mark."""


def test_changes_sent_but_never_marked_are_marked_not_sent_again(
    reference_database_url: str, kafka_bootstrap: str, topic_factory: Callable[..., Topics]
) -> None:
    topics = topic_factory()

    def crash(_conn: psycopg.Connection, _ids: Sequence[int]) -> None:
        raise _MarkFails

    crashing = OutboxPublisher(
        reference_database_url,
        kafka_bootstrap,
        topics.incident_status,
        dataclasses.replace(INCIDENT_STATUS_OUTBOX, mark_published=crash),
    )
    with open_env(reference_database_url) as env:
        first = _store_and_move(env, 3)
        try:
            with pytest.raises(_MarkFails):
                crashing.publish_pending()
        finally:
            crashing.close()
        assert unpublished(env.database_url) == 3  # on the topic, but not marked
        second = _store_and_move(env, 2)
    successor = OutboxPublisher(
        reference_database_url, kafka_bootstrap, topics.incident_status, INCIDENT_STATUS_OUTBOX
    )
    try:
        assert successor.publish_pending() == 2  # the three already there are only marked
        assert successor.publish_pending() == 0
    finally:
        successor.close()
    assert unpublished(reference_database_url) == 0
    changes = published_changes(kafka_bootstrap, topics.incident_status)
    assert sorted(changes) == sorted(first + second)
    assert all(len(moves) == 1 and moves[0]["version"] == 2 for moves in changes.values())


def test_a_broker_outage_delays_the_changes_and_loses_none(
    reference_database_url: str, private_broker: PrivateBroker
) -> None:
    url = reference_database_url
    topics = Topics.under(f"t{uuid.uuid4().hex[:10]}.")
    services.ensure_topics(private_broker.bootstrap, 6, topics)
    publisher = OutboxPublisherThread(
        OutboxPublisher(
            url, private_broker.bootstrap, topics.incident_status, INCIDENT_STATUS_OUTBOX
        )
    )
    publisher.start()
    try:
        with open_env(url) as env:
            first, second = _store_and_move(env, 2)
            wait_until(lambda: unpublished(url) == 0, 30, "published while the broker is up")

            private_broker.pause()
            try:
                # The API does not wait for the broker: each move commits with its change.
                for version, body in [
                    (2, {"action": "start"}),
                    (3, {"action": "resolve", "note": "已清运"}),
                ]:
                    moved = env.patch("worker_a", first, body, version)
                    assert moved.status_code == 200, moved.text
                moved = env.patch("sup_c", second, {"action": "cancel", "note": "重复"}, 2)
                assert moved.status_code == 200, moved.text
                # Longer than the publisher's producer blocks on a silent broker (10 s), so
                # it has failed and retried meanwhile: the changes stay in the outbox.
                deadline = time.monotonic() + 12
                while time.monotonic() < deadline:
                    assert unpublished(url) == 3, "a change left the outbox with no broker"
                    time.sleep(0.5)
            finally:
                private_broker.resume()
            wait_until(lambda: unpublished(url) == 0, 60, "published once the broker is back")
    finally:
        publisher.stop()
    changes = published_changes(private_broker.bootstrap, topics.incident_status)
    assert [(m["version"], m["to_status"]) for m in changes[first]] == [
        (2, "dispatched"),
        (3, "in_progress"),
        (4, "resolved"),
    ]
    assert [(m["version"], m["to_status"]) for m in changes[second]] == [
        (2, "dispatched"),
        (3, "cancelled"),
    ]


def test_the_publisher_outlives_a_postgresql_restart(
    private_cluster: PrivateCluster, kafka_bootstrap: str, topic_factory: Callable[..., Topics]
) -> None:
    url = private_cluster.url("wangge")
    topics = topic_factory()
    publisher = OutboxPublisherThread(
        OutboxPublisher(url, kafka_bootstrap, topics.incident_status, INCIDENT_STATUS_OUTBOX)
    )
    publisher.start()
    try:
        with open_env(url) as env:
            (first,) = _store_and_move(env, 1)
            wait_until(lambda: unpublished(url) == 0, 30, "published before the restart")
            # Sessions cut, the listener's and the publisher's own connection too.
            private_cluster.stop()
            time.sleep(2)  # the publisher fails and backs off meanwhile
            private_cluster.start()
            # The app's pool reconnects; the move queues its change, and the publisher,
            # listening again, sends it.
            deadline = time.monotonic() + 30
            while (
                moved := env.patch("worker_a", first, {"action": "start"}, 2)
            ).status_code == 503:
                assert time.monotonic() < deadline, "the API did not reconnect"
                time.sleep(0.2)
            assert moved.status_code == 200, moved.text
            wait_until(lambda: unpublished(url) == 0, 30, "published after the restart")
    finally:
        publisher.stop()
    changes = published_changes(kafka_bootstrap, topics.incident_status)
    assert [(m["version"], m["to_status"]) for m in changes[first]] == [
        (2, "dispatched"),
        (3, "in_progress"),
    ]
