"""The incident workflow on the real app and PostGIS: the whole loop, versions, bad input.

The loop's report goes through the gateway, the broker and a `wangge consume` process;
elsewhere incidents are stored by the consumer's own store function.
"""

import threading
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
import pytest
from fastapi.testclient import TestClient

from geodata.accounts import Principal, Role
from geodata.contract import Topics
from geodata.db import event_store
from geodata.db.engine import create_db_engine
from geodata.db.incident_store import transition_incident
from geodata.incidents import StaleVersion, transition_request
from grid_service.app import ApiConfig, create_app
from tests.integration.incident_support import (
    URL,
    Env,
    accounts_of,
    open_env,
    pick_city,
    point_in,
    snapshot,
    store_incident,
)
from tests.integration.pipeline_support import ConsumerProcess, count_rows, running, wait_until
from tests.integration.test_auth import bearer

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def env(reference_database_factory: Callable[[], str]) -> Iterator[Env]:
    """One app on a fresh city for the module."""
    with open_env(reference_database_factory()) as opened:
        yield opened


# --------------------------------------------------------------------------- the full loop


def test_a_report_through_the_broker_goes_round_the_whole_loop(
    reference_database_url: str,
    kafka_bootstrap: str,
    topic_factory: Callable[..., Topics],
    tmp_path: Path,
) -> None:
    url = reference_database_url
    city = pick_city(url)
    tokens = accounts_of(url, city)
    topics = topic_factory(partitions=1)
    lon, lat = point_in(url, city.grid_a)
    report_id = str(uuid.uuid4())
    report = {
        "event_id": report_id,
        "incident_id": report_id,
        "category": "environment.garbage",
        "description": "垃圾堆放在楼道口",
        "lon": lon,
        "lat": lat,
        "reported_at": (datetime.now(UTC) - timedelta(minutes=1)).isoformat(),
        "source": "worker",
        "reporter_id": city.worker_a,
    }
    app = create_app(ApiConfig(url, kafka_bootstrap, topics))
    with TestClient(app) as client:
        env = Env(client, url, city, tokens)
        posted = client.post("/api/v1/incidents", json=report, headers=bearer(tokens["worker_a"]))
        assert posted.status_code == 202, posted.text
        consumer = ConsumerProcess(url, kafka_bootstrap, topics, "incident-loop", tmp_path)
        with running(consumer):
            wait_until(
                lambda: count_rows(url, "SELECT count(*) FROM incidents") == 1,
                90,
                "the consumer stored the incident",
            )

        filed = env.get("sup_c", f"/{report_id}")
        assert filed.status_code == 200
        assert filed.headers["ETag"] == '"1"'
        properties = filed.json()["properties"]
        assert properties["status"] == "reported"
        assert properties["grid_code"] == city.grid_a
        assert properties["reporter_id"] == city.worker_a
        assert properties["history"] == []

        steps = [
            ("sup_c", {"action": "dispatch", "assignee": city.worker_a2}, "dispatched"),
            ("sup_x", {"action": "dispatch", "assignee": city.worker_a}, "dispatched"),
            ("worker_a", {"action": "start"}, "in_progress"),
            ("worker_a", {"action": "resolve", "note": "清运完毕"}, "resolved"),
            ("sup_c", {"action": "reopen", "note": "楼道口仍有垃圾"}, "in_progress"),
            ("worker_a", {"action": "resolve", "note": "再次清运, 已拍照"}, "resolved"),
            ("sup_c", {"action": "close", "note": "核查属实"}, "closed"),
        ]
        for version, (caller, body, status) in enumerate(steps, start=1):
            moved = env.patch(caller, report_id, body, version)
            assert moved.status_code == 200, (caller, body, moved.text)
            assert moved.json()["properties"]["status"] == status
            assert moved.headers["ETag"] == f'"{version + 1}"'

        final = env.get("worker_a", f"/{report_id}").json()
        history = final["properties"]["history"]
        assert [(h["from_status"], h["to_status"]) for h in history] == [
            ("reported", "dispatched"),
            ("dispatched", "dispatched"),
            ("dispatched", "in_progress"),
            ("in_progress", "resolved"),
            ("resolved", "in_progress"),
            ("in_progress", "resolved"),
            ("resolved", "closed"),
        ]
        assert [h["actor"] for h in history] == [
            "sup-c", "sup-x", "worker-a", "worker-a", "sup-c", "worker-a", "sup-c",
        ]  # fmt: skip
        assert [h["version"] for h in history] == list(range(2, 9))
        assert history[4]["note"] == "楼道口仍有垃圾"
        assert final["properties"]["assignee"] == city.worker_a
        assert final["geometry"]["type"] == "Point"
        assert final["geometry"]["coordinates"] == pytest.approx([lon, lat], abs=1e-7)
        # Closed is final; and the consumer no longer counts it as open.
        again = env.patch("admin", report_id, {"action": "reopen", "note": "x"}, 8)
        assert (again.status_code, again.json()["code"]) == (409, "illegal_transition")
        with psycopg.connect(url) as conn:
            assert event_store.open_incident_counts(conn, [city.worker_a]) == {}


# --------------------------------------------------------------------------- versions


def test_a_second_supervisor_on_the_same_version_is_refused_not_overwriting(env: Env) -> None:
    city = env.city
    incident_id = store_incident(env.database_url, city.grid_a, staff=None)
    first = env.patch("sup_x", incident_id, {"action": "dispatch", "assignee": city.worker_a})
    second = env.patch("sup_c", incident_id, {"action": "cancel", "note": "duplicate"})
    assert first.status_code == 200
    assert (second.status_code, second.json()["code"]) == (412, "stale_version")
    assert snapshot(env.database_url, incident_id) == ("dispatched", city.worker_a, 2, 1)
    # Read again, decide again: the body's `version` does as well as If-Match.
    again = env.patch(
        "sup_c", incident_id, {"action": "cancel", "note": "duplicate", "version": 2}, None
    )
    assert again.status_code == 200, again.text
    assert again.headers["ETag"] == '"3"'


def test_concurrent_transitions_of_one_version_let_exactly_one_through(env: Env) -> None:
    incident_id = uuid.UUID(store_incident(env.database_url, env.city.grid_a, staff=None))
    engine = create_db_engine(env.database_url)
    supervisor = Principal(0, 0, "sup-race", Role.SUPERVISOR, area_prefix=env.city.district_x)
    barrier = threading.Barrier(8)
    outcomes: list[str] = []

    def attempt(n: int) -> None:
        request = transition_request("cancel", note=f"racer {n}")
        barrier.wait()
        try:
            with engine.begin() as conn:
                transition_incident(
                    conn,
                    incident_id,
                    supervisor,
                    request,
                    expected_version=1,
                    now=datetime.now(UTC),
                )
            outcomes.append("ok")
        except StaleVersion:
            outcomes.append("stale")

    try:
        threads = [threading.Thread(target=attempt, args=(n,)) for n in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=30)
    finally:
        engine.dispose()
    assert sorted(outcomes) == ["ok"] + ["stale"] * 7
    assert snapshot(env.database_url, str(incident_id))[2:] == (2, 1)


@pytest.mark.parametrize(
    ("headers", "body", "status", "code"),
    [
        ({}, {"action": "close"}, 428, "version_required"),
        ({"If-Match": "*"}, {"action": "close"}, 422, "invalid_transition"),
        ({"If-Match": '"abc"'}, {"action": "close"}, 422, "invalid_transition"),
        ({"If-Match": '"1"'}, {"action": "close", "version": 2}, 422, "invalid_transition"),
        ({"If-Match": 'W/"7"'}, {"action": "close"}, 412, "stale_version"),
    ],
)
def test_patch_names_one_version(
    env: Env, headers: dict[str, str], body: dict[str, Any], status: int, code: str
) -> None:
    incident_id = store_incident(env.database_url, env.city.grid_a, staff=None, status="resolved")
    response = env.client.patch(
        f"{URL}/{incident_id}", json=body, headers=bearer(env.tokens["admin"]) | headers
    )
    assert (response.status_code, response.json()["code"]) == (status, code), response.text
    assert snapshot(env.database_url, incident_id)[2:] == (1, 0)


# --------------------------------------------------------------------------- rules on the wire


def test_dispatch_only_to_a_worker_of_the_incidents_community(env: Env) -> None:
    city = env.city
    incident_id = store_incident(env.database_url, city.grid_a, staff=None)
    for assignee in (city.worker_b, "W99999"):
        refused = env.patch("admin", incident_id, {"action": "dispatch", "assignee": assignee})
        assert (refused.status_code, refused.json()["code"]) == (422, "invalid_assignee")
    assert env.patch(
        "admin", incident_id, {"action": "dispatch", "assignee": city.worker_a2}
    ).is_success


def test_a_whistle_hands_the_incident_to_the_street(env: Env) -> None:
    city = env.city
    incident_id = store_incident(env.database_url, city.grid_a, staff=city.worker_a)
    blown = env.patch("sup_c", incident_id, {"action": "escalate", "note": "社区无力解决"})
    assert blown.status_code == 200
    properties = blown.json()["properties"]
    assert (properties["escalated_to"], properties["assignee"]) == (city.grid_a[:9], None)
    refused = env.patch("sup_c", incident_id, {"action": "cancel", "note": "x"}, 2)
    assert (refused.status_code, refused.json()["code"]) == (403, "outside_area")
    assert env.get("sup_c", f"/{incident_id}").status_code == 200  # still readable


@pytest.mark.parametrize(
    ("body", "code"),
    [
        ({"action": "approve"}, "unknown_action"),
        ({"action": "resolve"}, "note_required"),
        ({"action": "cancel", "note": "   "}, "note_required"),
        ({"action": "dispatch"}, "invalid_assignee"),
        ({"action": "close", "assignee": "W00001"}, "invalid_transition"),
        ({"action": "close", "colour": "red"}, "invalid_request"),
        ({"action": "escalate", "note": "x", "level": "city"}, "invalid_request"),
        ({"action": "close", "note": "x" * 2001}, "invalid_request"),
        ({}, "invalid_request"),
        ([], "invalid_request"),
        ({"action": 3}, "invalid_request"),
    ],
)
def test_bad_transition_bodies_are_422_with_a_code(env: Env, body: Any, code: str) -> None:
    incident_id = store_incident(env.database_url, env.city.grid_a, staff=None)
    response = env.patch("admin", incident_id, body)
    assert (response.status_code, response.json()["code"]) == (422, code), response.text


def test_nan_and_broken_json_bodies_are_422(env: Env) -> None:
    incident_id = store_incident(env.database_url, env.city.grid_a, staff=None)
    headers = bearer(env.tokens["admin"]) | {"If-Match": '"1"', "Content-Type": "application/json"}
    for content in ('{"action": "close", "version": NaN}', '{"action": ', "null"):
        response = env.client.patch(f"{URL}/{incident_id}", content=content, headers=headers)
        assert response.status_code == 422, (content, response.text)


@pytest.mark.parametrize(
    ("params", "code"),
    [
        ({"bbox": "1,2,3"}, "invalid_bbox"),
        ({"bbox": "nan,34,107.5,34.5"}, "invalid_bbox"),
        ({"bbox": "107,34,107,34.5"}, "invalid_bbox"),
        ({"bbox": "100,30,110,40"}, "bbox_too_large"),
        ({"status": "open"}, "invalid_filter"),
        ({"category": "garbage"}, "invalid_filter"),
        ({"code": "61a"}, "invalid_code"),
        ({"limit": "0"}, "invalid_request"),
        ({"offset": "-1"}, "invalid_request"),
        ({"limit": "NaN"}, "invalid_request"),
    ],
)
def test_bad_listing_queries_are_422_with_a_code(
    env: Env, params: dict[str, str], code: str
) -> None:
    response = env.get("admin", **params)
    assert (response.status_code, response.json()["code"]) == (422, code), response.text


def test_a_bad_incident_id_is_422(env: Env) -> None:
    response = env.get("admin", "/not-a-uuid")
    assert response.status_code == 422


def test_history_is_append_only_in_the_database(env: Env) -> None:
    incident_id = store_incident(env.database_url, env.city.grid_a, staff=None)
    assert env.patch("admin", incident_id, {"action": "cancel", "note": "dup"}).is_success
    with psycopg.connect(env.database_url) as conn:
        with pytest.raises(psycopg.errors.RaiseException, match="append-only"):
            conn.execute("UPDATE incident_events SET note = 'rewritten'")
        conn.rollback()
        with pytest.raises(psycopg.errors.RaiseException, match="append-only"):
            conn.execute("DELETE FROM incident_events")
