"""Open311 GeoReport v2 on the real app, PostGIS, broker and a `wangge consume` process.

A request posted through the facade is filed, routed and moved through the workflow like
any report and reads back with the standard's fields; malformed requests and bad api keys
get the standard's error array and leave nothing behind; no listing shows a contact field.
"""

import json
import math
import os
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import pytest
from fastapi.testclient import TestClient
from httpx import Response

from geodata.contract import Topics
from geodata.db import open311_store
from geodata.db.engine import create_db_engine
from geodata.incidents import Status
from geodata.open311 import PUBLIC_STATES, RECEIVED, new_api_key
from geodata.open311_input import service_request_input
from grid_service.app import ApiConfig, create_app
from grid_service.auth import AuthConfig
from tests.integration.incident_support import (
    Env,
    accounts_of,
    open_env,
    pick_city,
    point_in,
    store_incident,
)
from tests.integration.pipeline_support import (
    ConsumerProcess,
    count_rows,
    read_topic,
    running,
    wait_until,
)
from tests.integration.test_auth import bearer

pytestmark = pytest.mark.integration

V2 = "/open311/v2"
WANGGE = [sys.executable, "-m", "wangge"]


def wangge(database_url: str, *args: str) -> subprocess.CompletedProcess[str]:
    """Run the `wangge` command as an admin would, on `database_url`."""
    env = {**os.environ, "WANGGE_DATABASE_URL": database_url, "COLUMNS": "200"}
    return subprocess.run(
        [*WANGGE, *args], env=env, capture_output=True, text=True, check=False, timeout=120
    )


def issue_key(database_url: str, name: str) -> str:
    """A new client's api key, from the last line `wangge open311 keys add` prints."""
    done = wangge(database_url, "open311", "keys", "add", name)
    assert done.returncode == 0, done.stderr
    return done.stdout.strip().splitlines()[-1]


def contact_of_a_resident() -> dict[str, str]:
    """Contact fields whose values occur nowhere else (so a leak cannot hide)."""
    tag = uuid.uuid4().hex[:10]
    return {
        "email": f"resident-{tag}@example.cn",
        "first_name": f"名{tag}",
        "last_name": f"姓{tag}",
        "phone": f"+86 139 {int(tag[:8], 16) % 10**8:08d}",
        "device_id": f"device-{tag}",
        "account_id": f"account-{tag}",
    }


def incidents_offset(bootstrap: str, topics: Topics) -> int:
    """How many records the incidents topic holds."""
    return len(read_topic(bootstrap, topics.incidents))


def assert_error_array(response: Response, status: int) -> str:
    """The response is the standard's error array of one error with this status."""
    assert response.status_code == status, response.text
    body = response.json()
    assert isinstance(body, list), body
    assert len(body) == 1, body
    assert body[0]["code"] == status
    assert isinstance(body[0]["description"], str)
    assert body[0]["description"]
    return str(body[0]["description"])


# --------------------------------------------------------------------------- one request, filed


@dataclass
class Filed:
    """A request posted through the facade and filed by a consumer, and its app."""

    env: Env
    bootstrap: str
    topics: Topics
    key: str
    incident_id: str
    contact: dict[str, str]
    lon: float
    lat: float
    posted: dict[str, str]
    read_before_filing: list[dict[str, Any]]


@pytest.fixture(scope="module")
def filed(
    reference_database_factory: Callable[[], str],
    kafka_bootstrap: str,
    module_topic_factory: Callable[..., Topics],
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Filed]:
    """A fresh city; one request posted form-encoded with every contact field; then a
    `wangge consume` process run until it filed the incident."""
    url = reference_database_factory()
    city = pick_city(url)
    tokens = accounts_of(url, city)
    topics = module_topic_factory(partitions=1)
    key = issue_key(url, "宝鸡随手拍")
    lon, lat = point_in(url, city.grid_a)
    contact = contact_of_a_resident()
    posted = {
        "api_key": key,
        "service_code": "environment.garbage",
        "lat": f"{lat:.7f}",
        "long": f"{lon:.7f}",
        "description": "楼道口堆放垃圾三天无人清运",
        "address_string": "经二路 12 号院",
        "media_url": "https://img.example.cn/report/1.jpg",
        "jurisdiction_id": "baoji",
        **contact,
    }
    app = create_app(ApiConfig(url, kafka_bootstrap, topics))
    with TestClient(app) as client:
        created = client.post(f"{V2}/requests.json", data=posted)
        assert created.status_code == 201, created.text
        [answer] = created.json()
        assert set(answer) == {"service_request_id", "service_notice", "account_id"}
        assert answer["account_id"] is None
        incident_id = answer["service_request_id"]
        before = client.get(f"{V2}/requests/{incident_id}.json")
        assert before.status_code == 200, before.text
        consumer = ConsumerProcess(
            url, kafka_bootstrap, topics, "open311", tmp_path_factory.mktemp("consumer")
        )
        with running(consumer):
            wait_until(
                lambda: count_rows(url, "SELECT count(*) FROM incidents") == 1,
                90,
                "the consumer filed the request's incident",
            )
        yield Filed(
            Env(client, url, city, tokens),
            kafka_bootstrap,
            topics,
            key,
            incident_id,
            contact,
            lon,
            lat,
            posted,
            before.json(),
        )


def _read(filed: Filed) -> dict[str, Any]:
    response = filed.env.client.get(f"{V2}/requests/{filed.incident_id}.json")
    assert response.status_code == 200, response.text
    [document] = response.json()
    assert isinstance(document, dict)
    return document


def _agency_of(database_url: str, community: str) -> str:
    with psycopg.connect(database_url) as conn:
        row = conn.execute(
            "SELECT d.name, s.name, c.name FROM communities c"
            " JOIN streets s ON s.code = c.street_code JOIN districts d ON d.code = s.district_code"
            " WHERE c.code = %s",
            (community,),
        ).fetchone()
    assert row is not None
    return " ".join(row)


def test_a_request_is_filed_routed_dispatched_and_closed_like_any_report(filed: Filed) -> None:
    env, city, url = filed.env, filed.env.city, filed.env.database_url
    # Readable at once, before any consumer filed it: received, with what was posted.
    [pending] = filed.read_before_filing
    assert (pending["status"], pending["status_notes"]) == ("open", RECEIVED.notes)
    assert pending["service_request_id"] == filed.incident_id
    assert pending["agency_responsible"] is None

    # Filed by the consumers as any report: source resident, its grid, a worker of it.
    with psycopg.connect(url) as conn:
        row = conn.execute(
            "SELECT source, reporter_id, category, grid_code, staff_id, status,"
            " payload->>'channel', payload->>'media_url' FROM incidents WHERE incident_id = %s",
            (filed.incident_id,),
        ).fetchone()
        assert row is not None
        source, reporter, category, grid, staff, status, channel, media = row
        grid_workers = {
            w
            for (w,) in conn.execute(
                "SELECT worker_id FROM worker_assignments WHERE grid_code = %s"
                " AND valid_to IS NULL",
                (city.grid_a,),
            )
        }
    assert (source, reporter, category, grid, status) == (
        "resident",
        None,
        "environment.garbage",
        city.grid_a,
        "reported",
    )
    assert staff in grid_workers, "routed to a worker of the report's grid"
    assert (channel, media) == ("open311", filed.posted["media_url"])
    records: list[Any] = read_topic(filed.bootstrap, filed.topics.assignments)
    assignments = [json.loads(r.value) for r in records]
    assert [(a["incident_id"], a["grid_code"], a["staff_id"]) for a in assignments] == [
        (filed.incident_id, city.grid_a, staff)
    ]

    document = _read(filed)
    assert document == {
        "service_request_id": filed.incident_id,
        "status": "open",
        "status_notes": PUBLIC_STATES[Status.REPORTED].notes,
        "service_name": "暴露垃圾",
        "service_code": "environment.garbage",
        "description": filed.posted["description"],
        "agency_responsible": _agency_of(url, city.community_c),
        "service_notice": None,
        "requested_datetime": document["requested_datetime"],
        "updated_datetime": document["updated_datetime"],
        "expected_datetime": None,
        "address": filed.posted["address_string"],
        "address_id": None,
        "zipcode": None,
        "lat": pytest.approx(filed.lat, abs=1e-7),
        "long": pytest.approx(filed.lon, abs=1e-7),
        "media_url": filed.posted["media_url"],
    }
    requested = datetime.fromisoformat(document["requested_datetime"])
    assert requested.utcoffset() == timedelta(hours=8)
    assert abs(requested - datetime.now(UTC)) < timedelta(minutes=5)

    # The workflow moves it; the resident reads each step through Open311.
    steps = [
        ("sup_c", {"action": "dispatch", "assignee": city.worker_a}, Status.DISPATCHED),
        ("worker_a", {"action": "start"}, Status.IN_PROGRESS),
        ("worker_a", {"action": "resolve", "note": "已清运"}, Status.RESOLVED),
        ("sup_c", {"action": "close"}, Status.CLOSED),
    ]
    for version, (caller, body, status) in enumerate(steps, start=1):
        moved = env.patch(caller, filed.incident_id, body, version)
        assert moved.status_code == 200, (caller, body, moved.text)
        now_reads = _read(filed)
        state = PUBLIC_STATES[status]
        assert (now_reads["status"], now_reads["status_notes"]) == (state.status, state.notes)
    closed = _read(filed)
    assert closed["status"] == "closed"
    assert datetime.fromisoformat(closed["updated_datetime"]) > requested

    listing = env.client.get(f"{V2}/requests.json", params={"status": "closed"}).json()
    assert [r["service_request_id"] for r in listing] == [filed.incident_id]
    assert env.client.get(f"{V2}/requests.json", params={"status": "open"}).json() == []
    by_code = env.client.get(f"{V2}/requests.json", params={"service_code": "emergency.fire"})
    assert by_code.json() == []


def _tile_address(lon: float, lat: float, zoom: int) -> tuple[int, int, int]:
    n = 2**zoom
    x = int((lon + 180.0) / 360.0 * n)
    y = int((1.0 - math.asinh(math.tan(math.radians(lat))) / math.pi) / 2.0 * n)
    return zoom, x, y


def test_no_contact_field_leaks_in_any_listing_topic_or_payload(filed: Filed) -> None:
    env, url = filed.env, filed.env.database_url
    with psycopg.connect(url) as conn:
        stored = conn.execute(
            "SELECT email, first_name, last_name, phone, device_id, account_id"
            " FROM open311_contacts WHERE incident_id = %s",
            (filed.incident_id,),
        ).fetchone()
        payload = conn.execute(
            "SELECT payload::text FROM incidents WHERE incident_id = %s", (filed.incident_id,)
        ).fetchone()
    # Kept for the city, apart: the values were taken, so their absence below means something.
    assert stored == tuple(filed.contact[name] for name in filed.contact)
    assert payload is not None

    admin, supervisor = bearer(env.tokens["admin"]), bearer(env.tokens["sup_c"])
    z, x, y = _tile_address(filed.lon, filed.lat, 16)
    reads: list[tuple[str, dict[str, str]]] = [
        (f"{V2}/requests.json", {}),
        (f"{V2}/requests.json?service_request_id={filed.incident_id}", {}),
        (f"{V2}/requests/{filed.incident_id}.json", {}),
        ("/api/v1/incidents", admin),
        ("/api/v1/incidents", supervisor),
        (f"/api/v1/incidents/{filed.incident_id}", admin),
        ("/ogc/collections/incidents/items?limit=1000", admin),
        (f"/ogc/collections/incidents/items/{filed.incident_id}", admin),
        (f"/tiles/incidents/{z}/{x}/{y}.pbf", admin),
    ]
    texts: dict[str, bytes] = {}
    for path, headers in reads:
        response = env.client.get(path, headers=headers)
        assert response.status_code == 200, (path, response.text)
        texts[path] = response.content
    texts["incidents.payload"] = payload[0].encode()
    # Each read does show the request: it is the right one to look into.
    for where, content in texts.items():
        assert filed.incident_id.encode() in content, where
    # Every record on the topics (other tests of the module may have posted more).
    for topic in (filed.topics.incidents, filed.topics.assignments):
        records: list[Any] = read_topic(filed.bootstrap, topic)
        assert any(filed.incident_id.encode() in r.value for r in records), topic
        for record in records:
            headers_bytes = b"".join(v for _k, v in record.headers)
            texts[f"{topic}@{record.offset}"] = record.value + headers_bytes
    for where, content in texts.items():
        for name, text in filed.contact.items():
            assert text.encode() not in content, f"{name} leaks in {where}"
            assert json.dumps(text).encode() not in content, f"{name} leaks in {where}"


# --------------------------------------------------------------------------- refusals


@pytest.mark.parametrize(
    ("body", "content_type", "says"),
    [
        ("service_code=environment.garbage&lat=34.36", "form", "lat and long are required"),
        ("service_code=nope&lat=34.36&long=107.15", "form", "is not a service"),
        ("service_code=environment.garbage&lat=95&long=107.15", "form", "lat must be"),
        ("service_code=environment.garbage&lat=0&long=0", "form", "(0, 0)"),
        ("lat=34.36&long=107.15", "form", "service_code is required"),
        (
            "service_code=environment.garbage&lat=34.36&long=107.15&lat=34.37",
            "form",
            "more than once",
        ),
        (
            "service_code=environment.garbage&lat=34.36&long=107.15&email=nobody",
            "form",
            "email",
        ),
        (
            "service_code=environment.garbage&lat=34.36&long=107.15&description=%FF",
            "form",
            "cannot be read",
        ),
        ('{"service_code": "environment.garbage", "lat": "x", "long": 1}', "json", "number"),
        ('["not", "an", "object"]', "json", "JSON object"),
        ("{broken", "json", "not JSON"),
        ("service_code=environment.garbage", "text/plain", "must be"),
    ],
)
def test_a_malformed_request_gets_the_error_array_with_400_and_nothing_is_kept(
    filed: Filed, body: str, content_type: str, says: str
) -> None:
    media_type = {"form": "application/x-www-form-urlencoded", "json": "application/json"}
    produced = incidents_offset(filed.bootstrap, filed.topics)
    requests = count_rows(filed.env.database_url, "SELECT count(*) FROM open311_requests")
    # The valid key goes in the body, so that the refusal is the body's.
    if content_type == "json":
        document = json.loads(body) if body.startswith('{"') else None
        if isinstance(document, dict):
            document["api_key"] = filed.key
            body = json.dumps(document)
    else:
        body = f"api_key={filed.key}&{body}"
    response = filed.env.client.post(
        f"{V2}/requests.json",
        content=body.encode(),
        headers={"content-type": media_type.get(content_type, content_type)},
    )
    assert says in assert_error_array(response, 400)
    assert incidents_offset(filed.bootstrap, filed.topics) == produced
    assert count_rows(filed.env.database_url, "SELECT count(*) FROM open311_requests") == requests


def test_a_bad_api_key_is_refused_403_with_nothing_produced_or_kept(filed: Filed) -> None:
    url, client = filed.env.database_url, filed.env.client
    revoked = issue_key(url, "下线的应用")
    valid = {k: v for k, v in filed.posted.items() if k != "api_key"}
    accepted = client.post(f"{V2}/requests.json", data={**valid, "api_key": revoked})
    assert accepted.status_code == 201, accepted.text
    done = wangge(url, "open311", "keys", "revoke", "下线的应用")
    assert done.returncode == 0, done.stderr

    produced = incidents_offset(filed.bootstrap, filed.topics)
    requests = count_rows(url, "SELECT count(*) FROM open311_requests")
    for key in (None, "", "wg_not-an-open311-key", new_api_key(), revoked):
        data = valid if key is None else {**valid, "api_key": key}
        assert_error_array(client.post(f"{V2}/requests.json", data=data), 403)
        as_json = client.post(f"{V2}/requests.json", json={**valid, "api_key": key})
        assert_error_array(as_json, 403)
    assert incidents_offset(filed.bootstrap, filed.topics) == produced
    assert count_rows(url, "SELECT count(*) FROM open311_requests") == requests


def test_unknown_services_and_requests_are_404_arrays(filed: Filed) -> None:
    client = filed.env.client
    assert_error_array(client.get(f"{V2}/services/environment.json"), 404)
    assert_error_array(client.get(f"{V2}/requests/{uuid.uuid4()}.json"), 404)
    assert_error_array(client.get(f"{V2}/requests/12345.json"), 404)
    services = client.get(f"{V2}/services.json").json()
    assert len(services) == 45  # the 44 categories, then the cloud lockers' tasks
    assert services[0]["service_code"] == "environment.garbage"
    assert services[-1]["service_code"] == "locker.documents"
    definition = client.get(f"{V2}/services/public_facilities.street_light.json").json()
    assert definition == {"service_code": "public_facilities.street_light", "attributes": []}


def test_a_broker_away_is_a_503_array_and_keeps_nothing_then_the_client_is_rate_limited(
    filed: Filed,
) -> None:
    url = filed.env.database_url
    requests = count_rows(url, "SELECT count(*) FROM open311_requests")
    # Nothing listens on port 9; one post per 1,000 s for the key.
    config = ApiConfig(url, "127.0.0.1:9", auth=AuthConfig(write_rate_per_s=0.001, write_burst=1))
    with TestClient(create_app(config)) as client:
        away = client.post(f"{V2}/requests.json", data=filed.posted)
        assert_error_array(away, 503)
        assert int(away.headers["Retry-After"]) >= 1
        limited = client.post(f"{V2}/requests.json", data=filed.posted)
        assert_error_array(limited, 429)
        assert int(limited.headers["Retry-After"]) >= 1
    assert count_rows(url, "SELECT count(*) FROM open311_requests") == requests


# --------------------------------------------------------------------------- keys


def test_keys_add_prints_the_key_last_stores_only_its_hash_and_revoke_ends_it(
    database_factory: Callable[..., str],
) -> None:
    url = database_factory()
    added = wangge(url, "open311", "keys", "add", "city-app")
    assert added.returncode == 0, added.stderr
    key = added.stdout.strip().splitlines()[-1]
    assert key.startswith("wg311_")
    assert len(key) == 49
    with psycopg.connect(url) as conn:
        stored = conn.execute("SELECT name, key_hash FROM open311_clients").fetchall()
    assert [name for name, _ in stored] == ["city-app"]
    assert key not in stored[0][1]
    assert len(stored[0][1]) == 64

    again = wangge(url, "open311", "keys", "add", "city-app")
    assert again.returncode == 1
    assert "exists already" in again.stderr
    listed = wangge(url, "open311", "keys", "list")
    assert listed.returncode == 0
    assert "city-app" in listed.stdout
    assert key not in listed.stdout

    engine = create_db_engine(url)
    try:
        with engine.connect() as conn:
            assert open311_store.client_for_key(conn, key) is not None
        assert wangge(url, "open311", "keys", "revoke", "city-app").returncode == 0
        with engine.connect() as conn:
            assert open311_store.client_for_key(conn, key) is None
    finally:
        engine.dispose()
    unknown = wangge(url, "open311", "keys", "revoke", "nobody")
    assert unknown.returncode == 1
    assert "no Open311 client" in unknown.stderr


# --------------------------------------------------------------------------- statuses, filters


@pytest.fixture(scope="module")
def statuses_env(reference_database_factory: Callable[[], str]) -> Iterator[Env]:
    """An app without a broker on a fresh city (these tests never produce)."""
    with open_env(reference_database_factory()) as opened:
        yield opened


PHONE = "13987654321"


def _request_row(
    database_url: str, incident_id: str, *, code: str, at: datetime, client: str
) -> None:
    engine = create_db_engine(database_url)
    try:
        with engine.begin() as conn:
            client_id = conn.exec_driver_sql(
                "SELECT id FROM open311_clients WHERE name = %(n)s", {"n": client}
            ).scalar()
            if client_id is None:
                open311_store.add_client(conn, client)
                client_id = conn.exec_driver_sql(
                    "SELECT id FROM open311_clients WHERE name = %(n)s", {"n": client}
                ).scalar_one()
            request = service_request_input(
                {"service_code": code, "lat": "34.36", "long": "107.15", "phone": PHONE}
            )
            open311_store.insert_request(
                conn,
                client_id=client_id,
                incident_id=uuid.UUID(incident_id),
                request=request,
                requested_at=at,
            )
    finally:
        engine.dispose()


def test_each_status_reads_as_open_or_closed_and_the_filters_select(statuses_env: Env) -> None:
    env, city, url = statuses_env, statuses_env.city, statuses_env.database_url
    now = datetime.now(UTC)
    ids: dict[str, str] = {}
    for minutes, status in enumerate(Status):
        escalated = city.grid_a[:9] if status is Status.ESCALATED else None
        ids[status.value] = store_incident(
            url, city.grid_a, staff=None, status=status.value, escalated_to=escalated
        )
        code = "environment.garbage" if minutes % 2 else "public_facilities.street_light"
        _request_row(
            url, ids[status.value], code=code, at=now - timedelta(minutes=minutes), client="app"
        )
    ids["pending"] = str(uuid.uuid4())  # posted, not filed yet
    _request_row(url, ids["pending"], code="emergency.fire", at=now, client="app")
    ids["old"] = store_incident(url, city.grid_a, staff=None, status="closed")
    _request_row(url, ids["old"], code="emergency.fire", at=now - timedelta(days=100), client="app")

    def listed(**params: str) -> list[dict[str, Any]]:
        response = env.client.get(f"{V2}/requests.json", params=params)
        assert response.status_code == 200, response.text
        documents: list[dict[str, Any]] = response.json()
        return documents

    everything = listed()
    assert len(everything) == len(Status) + 1, "the last 90 days: the old one left out"
    by_id = {d["service_request_id"]: d for d in everything}
    for status in Status:
        document = by_id[ids[status.value]]
        state = PUBLIC_STATES[status]
        assert (document["status"], document["status_notes"]) == (state.status, state.notes)
    assert by_id[ids["pending"]]["status_notes"] == RECEIVED.notes
    street_name = _agency_of(url, city.community_c).rsplit(" ", 1)[0]
    assert by_id[ids["escalated"]]["agency_responsible"] == street_name
    assert by_id[ids["reported"]]["agency_responsible"] == _agency_of(url, city.community_c)
    # Newest first.
    times = [d["requested_datetime"] for d in everything]
    assert times == sorted(times, reverse=True)

    closed = {d["service_request_id"] for d in listed(status="closed")}
    assert closed == {ids["closed"], ids["cancelled"]}
    opened = {d["service_request_id"] for d in listed(status="open")}
    assert opened == {ids[s] for s in ("reported", "dispatched", "in_progress", "resolved")} | {
        ids["escalated"],
        ids["pending"],
    }
    assert {d["service_request_id"] for d in listed(status="open,closed")} == set(by_id)
    fire = listed(service_code="emergency.fire")
    assert [d["service_request_id"] for d in fire] == [ids["pending"]]
    old_window = listed(start_date=(now - timedelta(days=101)).isoformat())
    assert {d["service_request_id"] for d in old_window} == {ids["old"]}
    window = listed(
        start_date=(now - timedelta(minutes=2, seconds=30)).isoformat(),
        end_date=(now - timedelta(seconds=30)).isoformat(),
    )
    assert {d["service_request_id"] for d in window} == {ids["dispatched"], ids["in_progress"]}
    chosen = listed(service_request_id=f"{ids['old']},{ids['closed']}", status="open")
    assert {d["service_request_id"] for d in chosen} == {ids["old"], ids["closed"]}
    for document in everything:
        assert PHONE not in json.dumps(document), "the phone posted with each one"


def test_a_bad_query_is_a_400_array(statuses_env: Env) -> None:
    client = statuses_env.client
    assert_error_array(client.get(f"{V2}/requests.json", params={"status": "pending"}), 400)
    span = {"start_date": "2026-01-01T00:00:00Z", "end_date": "2026-06-01T00:00:00Z"}
    assert "90 days" in assert_error_array(client.get(f"{V2}/requests.json", params=span), 400)
    naive = client.get(f"{V2}/requests.json", params={"end_date": "2026-01-01T00:00:00"})
    assert_error_array(naive, 400)


def test_a_confirmed_duplicate_reads_as_its_original_stands_and_names_it(
    statuses_env: Env,
) -> None:
    env, grid = statuses_env, statuses_env.city.grid_a
    original = store_incident(env.database_url, grid, staff=env.city.worker_a, status="dispatched")
    repeat = store_incident(env.database_url, grid, staff=None)
    _request_row(
        env.database_url, repeat, code="environment.garbage", at=datetime.now(UTC), client="app"
    )
    with psycopg.connect(env.database_url) as conn:
        # Test setup only: the link the consumer makes at filing (geodata.duplicates).
        conn.execute(
            "UPDATE incidents SET duplicate_of = %s, duplicate_distance_m = 12"
            " WHERE incident_id = %s",
            (original, repeat),
        )

    def read() -> tuple[str, str]:
        response = env.client.get(f"{V2}/requests/{repeat}.json")
        assert response.status_code == 200, response.text
        [document] = response.json()
        return document["status"], document["status_notes"]

    def listed(status: str) -> set[str]:
        documents = env.client.get(f"{V2}/requests.json", params={"status": status}).json()
        return {d["service_request_id"] for d in documents}

    assert read() == ("open", "已立案，等待派遣")
    confirmed = env.patch("sup_c", repeat, {"action": "confirm_duplicate"})
    assert confirmed.status_code == 200, confirmed.text
    # Cancelled itself, it stays open while its original is, and names the one it joined.
    assert read() == ("open", f"重复上报，已并入请求 {original} 处置：已派遣网格员")
    assert repeat in listed("open")
    assert repeat not in listed("closed")
    with psycopg.connect(env.database_url) as conn:
        conn.execute("UPDATE incidents SET status = 'closed' WHERE incident_id = %s", (original,))
    assert read() == ("closed", f"重复上报，已并入请求 {original} 处置：已核查结案")
    assert repeat in listed("closed")


def test_the_openapi_document_describes_the_facade_with_its_error_array(
    statuses_env: Env,
) -> None:
    document = statuses_env.client.get("/openapi.json").json()
    paths = document["paths"]
    for path, method in [
        ("/open311/v2/services.json", "get"),
        ("/open311/v2/services/{service_code}.json", "get"),
        ("/open311/v2/requests.json", "post"),
        ("/open311/v2/requests.json", "get"),
        ("/open311/v2/requests/{service_request_id}.json", "get"),
    ]:
        operation = paths[path][method]
        errors = [s for s in operation["responses"] if s.startswith("4") and s != "422"]
        assert errors, path
        for status in errors:
            schema = operation["responses"][status]["content"]["application/json"]["schema"]
            assert schema["type"] == "array", (path, status)
    post = paths["/open311/v2/requests.json"]["post"]
    assert set(post["requestBody"]["content"]) == {
        "application/x-www-form-urlencoded",
        "application/json",
    }
    assert {"201", "400", "403", "429", "503"} <= set(post["responses"])
