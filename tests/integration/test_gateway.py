"""POST /api/v1/checkins and /api/v1/incidents against the real broker, and the error mapping."""

import contextlib
import json
import socket
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from fastapi import FastAPI, HTTPException
from fastapi.testclient import TestClient
from kafka import KafkaConsumer, TopicPartition
from sqlalchemy import text

from geodata.contract import Topics
from geodata.db.engine import create_db_engine
from geodata.errors import GridNotFound, WanggeError
from geodata.events import CHECKIN_EXAMPLE, INCIDENT_EXAMPLE, EventTimeLimits
from grid_service.app import ApiConfig, create_app
from grid_service.errors import install_error_handlers
from wangge.users_cli import add_user

pytestmark = pytest.mark.integration

Record = Any  # kafka-python's ConsumerRecord


@pytest.fixture(scope="module")
def api_database_url(database_factory: Callable[..., str]) -> str:
    """One migrated database for the module: the gateway reads only its accounts."""
    return database_factory()


@pytest.fixture(scope="module")
def tokens(api_database_url: str) -> dict[str, str]:
    """Tokens of worker W00042 (the examples' worker) and of an admin."""
    engine = create_db_engine(api_database_url)
    try:
        with engine.begin() as connection:
            connection.execute(
                text(
                    "INSERT INTO workers (worker_id, name, employment)"
                    " VALUES ('W00042', '王五', 'full_time')"
                )
            )
    finally:
        engine.dispose()
    return {
        "worker": add_user(api_database_url, "w42", "worker", None, "W00042"),
        "admin": add_user(api_database_url, "admin", "admin", None, None),
    }


JSON = {"content-type": "application/json"}


def bearer(token: str) -> dict[str, str]:
    """The Authorization header of a token."""
    return {"Authorization": f"Bearer {token}"}


@pytest.fixture
def topics(topic_factory: Callable[..., Topics]) -> Topics:
    """The contract's topics under a namespace of this test's own."""
    return topic_factory()


@contextlib.contextmanager
def _client(
    api_database_url: str, bootstrap: str, topics: Topics, token: str
) -> Iterator[TestClient]:
    app = create_app(ApiConfig(api_database_url, bootstrap, topics))
    with TestClient(app, headers=bearer(token)) as client:
        yield client


@pytest.fixture
def client(
    api_database_url: str, kafka_bootstrap: str, topics: Topics, tokens: dict[str, str]
) -> Iterator[TestClient]:
    """The API with the gateway, producing to this test's topics, as worker W00042."""
    with _client(api_database_url, kafka_bootstrap, topics, tokens["worker"]) as test_client:
        yield test_client


def consume_all(bootstrap: str, topic: str, expected: int, timeout_s: float = 20.0) -> list[Record]:
    """Every record of `topic` (a fresh one) once `expected` arrived; assign, no group."""
    consumer = KafkaConsumer(
        bootstrap_servers=bootstrap,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        max_poll_interval_ms=6000,  # Tansu stalls long on the default (see conftest notes)
    )
    try:
        partitions = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic)]
        consumer.assign(partitions)
        consumer.seek_to_beginning(*partitions)
        records: list[Record] = []
        deadline = time.monotonic() + timeout_s
        while len(records) < expected and time.monotonic() < deadline:
            for batch in consumer.poll(timeout_ms=500).values():
                records.extend(batch)
        # One more short poll: anything beyond `expected` is a bug the test must see.
        for batch in consumer.poll(timeout_ms=300).values():
            records.extend(batch)
        return records
    finally:
        consumer.close()


def end_offsets(bootstrap: str, topic: str) -> int:
    """How many records `topic` holds in all."""
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    try:
        partitions = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic)]
        return sum(consumer.end_offsets(partitions).values())
    finally:
        consumer.close()


def checkin(**changes: Any) -> dict[str, Any]:
    """A valid check-in of a minute ago, fresh event_id, with `changes`."""
    recorded = datetime.now(UTC) - timedelta(minutes=1)
    return {
        **CHECKIN_EXAMPLE,
        "event_id": str(uuid.uuid4()),
        "recorded_at": recorded.isoformat(),
        **changes,
    }


def test_checkin_is_on_the_topic_keyed_by_worker_with_cloudevent_headers_after_202(
    client: TestClient, kafka_bootstrap: str, topics: Topics
) -> None:
    posted = checkin(battery=0.61, description="巡查")

    response = client.post("/api/v1/checkins", json=posted)

    assert response.status_code == 202
    assert response.json() == {"accepted": 1, "event_ids": [posted["event_id"]]}
    (record,) = consume_all(kafka_bootstrap, topics.checkins, expected=1)
    assert record.key == b"W00042"
    assert json.loads(record.value) == posted  # unchanged, extensions included
    assert b" " not in record.value.replace("巡查".encode(), b"")  # compact
    headers = {name: value.decode() for name, value in record.headers}
    assert headers == {
        "ce_specversion": "1.0",
        "ce_id": posted["event_id"],
        "ce_source": "wangge/gateway",
        "ce_type": "wangge.checkin.v1",
        "ce_time": posted["recorded_at"],
    }


def test_batch_of_500_checkins_is_all_on_the_topic_in_the_workers_order_after_202(
    client: TestClient, kafka_bootstrap: str, topics: Topics
) -> None:
    start = datetime.now(UTC) - timedelta(hours=2)
    # One worker's offline buffer: a token posts only its own worker's check-ins.
    batch = [checkin(recorded_at=(start + timedelta(seconds=i)).isoformat()) for i in range(500)]

    response = client.post("/api/v1/checkins", json={"checkins": batch})

    assert response.status_code == 202
    assert response.json() == {"accepted": 500, "event_ids": [c["event_id"] for c in batch]}
    records = consume_all(kafka_bootstrap, topics.checkins, expected=500)
    assert len(records) == 500
    by_id = {json.loads(r.value)["event_id"]: r for r in records}
    assert set(by_id) == {c["event_id"] for c in batch}
    for posted in batch:
        assert by_id[posted["event_id"]].key == posted["worker_id"].encode()
    for worker in {c["worker_id"] for c in batch}:
        mine = [r for r in records if r.key == worker.encode()]
        assert len({r.partition for r in mine}) == 1
        offsets_in_posting_order = [
            by_id[c["event_id"]].offset for c in batch if c["worker_id"] == worker
        ]
        assert offsets_in_posting_order == sorted(offsets_in_posting_order)
    assert all(dict(r.headers)["ce_type"] == b"wangge.checkin.v1" for r in records)


def test_one_invalid_checkin_refuses_the_whole_batch_and_produces_nothing(
    client: TestClient, kafka_bootstrap: str, topics: Topics
) -> None:
    batch = [json.dumps(checkin()) for _ in range(5)]
    batch[3] = batch[3].replace("107.1523", "NaN")
    body = '{"checkins": [' + ",".join(batch) + "]}"

    response = client.post(
        "/api/v1/checkins", content=body, headers={"content-type": "application/json"}
    )

    assert response.status_code == 422
    assert response.json()["code"] == "coordinate_out_of_range"
    assert response.json()["index"] == 3
    assert end_offsets(kafka_bootstrap, topics.checkins) == 0


@pytest.mark.parametrize(
    ("body", "status", "code"),
    [
        (b"{", 422, "invalid_json"),
        (b"[1, 2]", 422, "invalid_json"),
        (json.dumps(checkin(worker_id=42)).encode(), 422, "invalid_field"),
        (json.dumps({"checkins": []}).encode(), 422, "invalid_field"),
        (json.dumps(checkin(lon=0, lat=0)).encode(), 422, "coordinate_out_of_range"),
        (json.dumps(checkin(crs="BD-09")).encode(), 422, "unsupported_crs"),
        (json.dumps(checkin(note="x" * 65536)).encode(), 413, "payload_too_large"),
    ],
)
def test_refused_checkin_answers_its_stable_code_and_produces_nothing(
    client: TestClient,
    kafka_bootstrap: str,
    topics: Topics,
    body: bytes,
    status: int,
    code: str,
) -> None:
    response = client.post("/api/v1/checkins", content=body, headers=JSON)

    assert (response.status_code, response.json()["code"]) == (status, code)
    assert response.json()["detail"]
    assert end_offsets(kafka_bootstrap, topics.checkins) == 0


def test_checkin_from_more_than_five_minutes_ahead_is_future_timestamp(
    client: TestClient,
) -> None:
    ahead = datetime.now(UTC) + timedelta(minutes=6)
    response = client.post("/api/v1/checkins", json=checkin(recorded_at=ahead.isoformat()))
    assert (response.status_code, response.json()["code"]) == (422, "future_timestamp")


def test_batch_of_501_is_batch_too_large(
    client: TestClient, kafka_bootstrap: str, topics: Topics
) -> None:
    response = client.post("/api/v1/checkins", json={"checkins": [checkin()] * 501})
    assert (response.status_code, response.json()["code"]) == (413, "batch_too_large")
    assert end_offsets(kafka_bootstrap, topics.checkins) == 0


def test_batch_body_over_its_limit_is_payload_too_large(client: TestClient) -> None:
    body = json.dumps({"checkins": [checkin(note="x" * 5000)] * 450}).encode()
    response = client.post("/api/v1/checkins", content=body, headers=JSON)
    assert (response.status_code, response.json()["code"]) == (413, "payload_too_large")


def incident_report(**changes: Any) -> dict[str, Any]:
    """W00042's report of a minute ago, with fresh event_id and incident_id, and `changes`."""
    reported = datetime.now(UTC) - timedelta(minutes=1)
    return INCIDENT_EXAMPLE | {
        "event_id": str(uuid.uuid4()),
        "incident_id": str(uuid.uuid4()),
        "reported_at": reported.isoformat(),
        **changes,
    }


def store_incident(database_url: str, report: dict[str, Any]) -> None:
    """The incidents row a consumer would have written for `report`."""
    engine = create_db_engine(database_url)
    try:
        with engine.begin() as connection:
            connection.execute(
                text(
                    "INSERT INTO incidents (incident_id, event_id, category, source, reporter_id,"
                    " reported_at, lon, lat, geom, assignment_rule, payload) VALUES (:incident,"
                    " :event, :category, :source, :reporter, :reported, :lon, :lat,"
                    " ST_SetSRID(ST_MakePoint(:lon, :lat), 4326), 'containing', '{}')"
                ),
                {
                    "incident": report["incident_id"],
                    "event": report["event_id"],
                    "category": report["category"],
                    "source": report["source"],
                    "reporter": report["reporter_id"],
                    "reported": report["reported_at"],
                    "lon": report["lon"],
                    "lat": report["lat"],
                },
            )
    finally:
        engine.dispose()


def test_a_report_reusing_a_stored_incident_id_is_409_incident_exists_and_produces_nothing(
    client: TestClient, api_database_url: str, kafka_bootstrap: str, topics: Topics
) -> None:
    stored = incident_report()
    store_incident(api_database_url, stored)

    response = client.post(
        "/api/v1/incidents", json=incident_report(incident_id=stored["incident_id"])
    )

    assert (response.status_code, response.json()["code"]) == (409, "incident_exists")
    assert stored["incident_id"] in response.json()["detail"]
    assert end_offsets(kafka_bootstrap, topics.incidents) == 0


def test_reposting_the_stored_report_itself_is_a_retry_answered_202(
    client: TestClient, api_database_url: str, kafka_bootstrap: str, topics: Topics
) -> None:
    stored = incident_report()
    store_incident(api_database_url, stored)

    response = client.post("/api/v1/incidents", json=stored)

    assert response.status_code == 202
    assert response.json()["incident_id"] == stored["incident_id"]
    (record,) = consume_all(kafka_bootstrap, topics.incidents, expected=1)
    assert json.loads(record.value)["event_id"] == stored["event_id"]


def test_incident_without_ids_gets_one_generated_id_and_is_on_the_topic(
    client: TestClient, kafka_bootstrap: str, topics: Topics
) -> None:
    reported = (datetime.now(UTC) - timedelta(minutes=1)).isoformat()
    posted = {k: v for k, v in INCIDENT_EXAMPLE.items() if k not in ("event_id", "incident_id")} | {
        "reported_at": reported,
        "category": "noise.karaoke",
    }

    response = client.post("/api/v1/incidents", json=posted)

    assert response.status_code == 202
    answer = response.json()
    assert answer["event_id"] == answer["incident_id"]
    uuid.UUID(answer["event_id"])
    assert (answer["category"], answer["category_unknown"]) == ("other.unclassified", True)
    (record,) = consume_all(kafka_bootstrap, topics.incidents, expected=1)
    assert record.key == answer["incident_id"].encode()
    value = json.loads(record.value)
    assert value == posted | {"event_id": answer["event_id"], "incident_id": answer["event_id"]}
    headers = dict(record.headers)
    assert (headers["ce_type"], headers["ce_id"]) == (
        b"wangge.incident.v1",
        answer["event_id"].encode(),
    )


def test_incident_keeps_the_ids_it_was_given(
    client: TestClient, kafka_bootstrap: str, topics: Topics, tokens: dict[str, str]
) -> None:
    reported = (datetime.now(UTC) - timedelta(minutes=1)).isoformat()
    incident_id = str(uuid.uuid4())
    posted = INCIDENT_EXAMPLE | {
        "event_id": str(uuid.uuid4()),
        "incident_id": incident_id,
        "source": "hotline",
        "reporter_id": None,
        "reported_at": reported,
    }
    # A hotline report comes in through a desk's (here an admin's) token.
    response = client.post("/api/v1/incidents", json=posted, headers=bearer(tokens["admin"]))
    assert response.status_code == 202
    assert response.json()["incident_id"] == incident_id
    assert response.json()["category_unknown"] is False
    (record,) = consume_all(kafka_bootstrap, topics.incidents, expected=1)
    assert record.key == incident_id.encode()


def test_worker_incident_without_reporter_is_missing_field(
    client: TestClient, kafka_bootstrap: str, topics: Topics
) -> None:
    reported = (datetime.now(UTC) - timedelta(minutes=1)).isoformat()
    posted = INCIDENT_EXAMPLE | {"reporter_id": None, "reported_at": reported}
    response = client.post("/api/v1/incidents", json=posted)
    assert (response.status_code, response.json()["code"]) == (422, "missing_field")
    assert end_offsets(kafka_bootstrap, topics.incidents) == 0


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_unreachable_broker_answers_503_broker_unavailable_without_internal_text(
    api_database_url: str, tokens: dict[str, str]
) -> None:
    bootstrap = f"127.0.0.1:{_closed_port()}"
    with _client(api_database_url, bootstrap, Topics(), tokens["worker"]) as client:
        started = time.monotonic()
        response = client.post("/api/v1/checkins", json=checkin())
        assert time.monotonic() - started < 10
        assert response.status_code == 503
        assert response.json() == {
            "code": "broker_unavailable",
            "detail": "the event broker did not acknowledge in time; retry later",
        }
        assert int(response.headers["Retry-After"]) >= 1


def test_while_the_broker_is_known_away_every_post_gets_503_with_retry_after(
    api_database_url: str, tokens: dict[str, str]
) -> None:
    bootstrap = f"127.0.0.1:{_closed_port()}"
    with _client(api_database_url, bootstrap, Topics(), tokens["worker"]) as client:
        first = client.post("/api/v1/checkins", json=checkin())
        assert client.get("/healthz").json()["producer"]["state"] == "away"
        later = [client.post("/api/v1/checkins", json=checkin()) for _ in range(3)]
        incident = client.post("/api/v1/incidents", json=incident_report())

    for response in [first, *later, incident]:
        assert response.status_code == 503
        assert response.json()["code"] == "broker_unavailable"
        assert int(response.headers["Retry-After"]) >= 1


def test_routes_are_documented_by_their_docstrings(client: TestClient) -> None:
    paths = client.get("/openapi.json").json()["paths"]
    assert "offline buffer" in paths["/api/v1/checkins"]["post"]["description"]
    assert "generated when absent" in paths["/api/v1/incidents"]["post"]["description"]
    assert "requestBody" in paths["/api/v1/incidents"]["post"]


# --- the error mapping, on a bare app: no services needed ------------------------------


class _Unmapped(WanggeError):
    code = "unmapped"


@pytest.fixture
def errors_client() -> TestClient:
    app = FastAPI()
    install_error_handlers(app)

    @app.get("/grid")
    def grid() -> None:
        raise GridNotFound("no grid 610302999999")

    @app.get("/unmapped")
    def unmapped() -> None:
        raise _Unmapped("secret internal state")

    @app.get("/crash")
    def crash() -> None:
        raise RuntimeError("password=hunter2 at db.internal:5432")

    @app.get("/teapot")
    def teapot() -> None:
        raise HTTPException(418, detail={"code": "teapot", "detail": "short and stout"})

    @app.get("/typed")
    def typed(lon: float) -> float:
        return lon

    return TestClient(app, raise_server_exceptions=False)


@pytest.mark.parametrize(
    ("path", "status", "body"),
    [
        ("/grid", 404, {"code": "grid_not_found", "detail": "no grid 610302999999"}),
        ("/unmapped", 500, {"code": "internal_error", "detail": "internal error"}),
        ("/crash", 500, {"code": "internal_error", "detail": "internal error"}),
        ("/teapot", 418, {"code": "teapot", "detail": "short and stout"}),
        ("/nowhere", 404, {"code": "not_found", "detail": "Not Found"}),
    ],
)
def test_errors_are_json_with_a_stable_code_and_5xx_hide_internals(
    errors_client: TestClient, path: str, status: int, body: dict[str, str]
) -> None:
    response = errors_client.get(path)
    assert (response.status_code, response.json()) == (status, body)


def test_request_validation_errors_have_the_same_shape(errors_client: TestClient) -> None:
    response = errors_client.get("/typed", params={"lon": "east"})
    assert response.status_code == 422
    assert response.json()["code"] == "invalid_request"
    assert "lon" in response.json()["detail"]


def test_the_gateway_refuses_events_older_than_its_age_limit_and_nothing_reaches_kafka(
    api_database_url: str, kafka_bootstrap: str, topics: Topics, tokens: dict[str, str]
) -> None:
    limits = EventTimeLimits(max_age=timedelta(days=30))
    app = create_app(ApiConfig(api_database_url, kafka_bootstrap, topics, event_limits=limits))
    recent = datetime.now(UTC) - timedelta(days=29)
    with TestClient(app, headers=bearer(tokens["worker"])) as client:
        old = client.post("/api/v1/checkins", json=CHECKIN_EXAMPLE)  # dated 2020
        year_one = client.post(
            "/api/v1/checkins",
            json={**CHECKIN_EXAMPLE, "recorded_at": "0001-01-01T00:00:00+14:00"},
        )
        fresh = client.post(
            "/api/v1/checkins",
            json={
                **CHECKIN_EXAMPLE,
                "event_id": str(uuid.uuid4()),
                "recorded_at": recent.isoformat(),
            },
        )
    assert (old.status_code, old.json()["code"]) == (422, "stale_timestamp")
    assert (year_one.status_code, year_one.json()["code"]) == (422, "stale_timestamp")
    assert fresh.status_code == 202, fresh.text
    records = consume_all(kafka_bootstrap, topics.checkins, expected=1)
    assert [json.loads(r.value)["recorded_at"] for r in records] == [recent.isoformat()]
