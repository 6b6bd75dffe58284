"""The tracking apps' protocols end to end: the real API, broker, consumer and PostGIS.

Each request is written as its app sends it (the sources are cited in
tests/unit/test_trackers.py, which checks the decoders against the protocols' examples):
- Traccar Client 8 (traccar/traccar-client-android, ProtocolFormatter.kt and
  RequestManager.kt): a POST whose query carries id, timestamp, lat, lon, speed (knots),
  bearing, altitude, accuracy (0.0 for a GPS fix) and batt, with no body;
- the OsmAnd app (osmandapp/OsmAnd, LiveMonitoringHelper.java): a GET of its online
  tracking address with the placeholders filled, the time in milliseconds;
- Traccar Client 9 (traccar/traccar-client-sdk, HttpUploader.kt): a form POST;
- Traccar Client 9's JSON (https://www.traccar.org/osmand/, "JSON format");
- OwnTracks in HTTP mode (owntracks/booklet, docs/tech/http.md and json.md): a JSON POST
  with the X-Limit-U and X-Limit-D headers, answered `[]`.
"""

import json
import os
import re
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone
from typing import Any
from urllib.parse import urlsplit

import psycopg
import pytest
from fastapi.testclient import TestClient
from httpx import Client, Response

from geodata.contract import Topics
from geodata.db import devices_store
from geodata.db.engine import create_db_engine, unit_of_work
from geodata.events import CheckInAssignment, parse_assignment
from geodata.tracker_protocols import osmand_checkin, traccar_json_checkin
from geodata.trackers import TrackerKind, device_url
from grid_service.app import ApiConfig, create_app
from grid_service.auth import AuthConfig
from tests.integration.pipeline_support import (
    ConsumerProcess,
    produce,
    read_topic,
    running,
    wait_until,
)
from tests.integration.test_auth import City, bearer, make_accounts, pick_city

pytestmark = pytest.mark.integration

BAOJI = timezone(timedelta(hours=8))


@dataclass
class Pipeline:
    """A city with a worker, its devices and token, the API and a running consumer."""

    url: str
    bootstrap: str
    topics: Topics
    # A TestClient, typed as the httpx client it is (starlette types it loosely).
    client: Client
    city: City
    tokens: dict[str, str]
    lon: float
    lat: float
    osmand_secret: str
    osmand_id: str
    owntracks_secret: str
    owntracks_id: str

    def produced(self) -> int:
        """How many records the check-ins topic holds."""
        return len(read_topic(self.bootstrap, self.topics.checkins))


def _point_in(url: str, grid: str) -> tuple[float, float]:
    # Five decimals (about a metre), as the OsmAnd app's single-precision floats carry them.
    with psycopg.connect(url) as conn:
        row = conn.execute(
            "SELECT ST_X(p), ST_Y(p) FROM (SELECT ST_PointOnSurface(geom) AS p FROM grids"
            " WHERE code = %s AND valid_to IS NULL) s",
            (grid,),
        ).fetchone()
    assert row is not None
    return round(float(row[0]), 5), round(float(row[1]), 5)


@pytest.fixture(scope="module")
def pipeline(
    reference_database_factory: Callable[[], str],
    kafka_bootstrap: str,
    module_topic_factory: Callable[..., Topics],
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Pipeline]:
    """The reference city, worker A with an OsmAnd and an OwnTracks device, the API (no
    device or token cache, so a revocation counts at once) and a check-ins consumer."""
    url = reference_database_factory()
    engine = create_db_engine(url)
    try:
        city = pick_city(engine)
        with unit_of_work(engine) as session:
            osmand, osmand_secret = devices_store.register_device(
                session, city.worker_a, TrackerKind.OSMAND, "admin"
            )
            owntracks, owntracks_secret = devices_store.register_device(
                session, city.worker_a, TrackerKind.OWNTRACKS, "admin"
            )
    finally:
        engine.dispose()
    tokens = make_accounts(url, city)
    topics = module_topic_factory(partitions=1)
    lon, lat = _point_in(url, city.grid_a)
    config = ApiConfig(url, kafka_bootstrap, topics, auth=AuthConfig(token_cache_ttl_s=0))
    consumer = ConsumerProcess(
        url, kafka_bootstrap, topics, f"trackers-{uuid.uuid4().hex[:6]}",
        tmp_path_factory.mktemp("consumer"), names=("checkins",),
    )  # fmt: skip
    with TestClient(create_app(config)) as client, running(consumer):
        yield Pipeline(
            url, kafka_bootstrap, topics, client, city, tokens, lon, lat,
            osmand_secret, osmand.identifier, owntracks_secret, owntracks.identifier,
        )  # fmt: skip


def _path(secret: str, kind: TrackerKind) -> str:
    return urlsplit(device_url("http://testserver", kind, secret)).path


_ROW = (
    "SELECT worker_id, recorded_at, lon, lat, crs, accuracy_m, ST_AsEWKT(geom), grid_code,"
    " staff_id, in_assigned_grid, assignment_rule, flags, late FROM checkins WHERE event_id = %s"
)


def _stored(url: str, event_id: str) -> tuple[Any, ...] | None:
    with psycopg.connect(url) as conn:
        return conn.execute(_ROW, (event_id,)).fetchone()


def _assignment(pipeline: Pipeline, event_id: str) -> dict[str, Any]:
    """The check-in's assignment, as a comparable dict (times as instants)."""
    for record in read_topic(pipeline.bootstrap, pipeline.topics.assignments):
        assignment = parse_assignment(record.value)  # type: ignore[attr-defined]
        if isinstance(assignment, CheckInAssignment) and str(assignment.event_id) == event_id:
            fields = assignment.model_dump()
            return {k: v for k, v in fields.items() if k not in ("event_id", "assigned_at")}
    raise AssertionError(f"no assignment of {event_id}")


# --------------------------------------------------------------------------- the same check-in


@dataclass(frozen=True)
class AppRequest:
    """A fix as one app posts it, and the JSON check-in of the same fix."""

    name: str
    send: Callable[[Pipeline, datetime], Response]
    extras: dict[str, Any]
    accuracy_m: float | None


def _traccar_client_8(p: Pipeline, at: datetime) -> Response:
    query = (
        f"id={p.osmand_id}&timestamp={int(at.timestamp())}&lat={p.lat}&lon={p.lon}"
        "&speed=2.7215816&bearing=93.0&altitude=611.0&accuracy=0.0&batt=87.0"
    )
    return p.client.post(f"{_path(p.osmand_secret, TrackerKind.OSMAND)}?{query}")


def _osmand_app(p: Pipeline, at: datetime) -> Response:
    address = (
        f"{_path(p.osmand_secret, TrackerKind.OSMAND)}?id={p.osmand_id}&lat={{0}}&lon={{1}}"
        "&timestamp={2}&accuracy={3}&altitude={4}&bearing={6}"
    )
    millis = str(int(at.timestamp()) * 1000)
    return p.client.get(address.format(p.lat, p.lon, millis, "6.0", "611.0", "0.0", "93.0"))


def _traccar_client_9_form(p: Pipeline, at: datetime) -> Response:
    form = (
        f"id={p.osmand_id}&lat={p.lat}&lon={p.lon}&timestamp={int(at.timestamp())}"
        "&accuracy=8.0&altitude=611.0&speed=2.72&bearing=93.0&batt=87&charge=false"
    )
    headers = {"Content-Type": "application/x-www-form-urlencoded; charset=UTF-8"}
    return p.client.post(_path(p.osmand_secret, TrackerKind.OSMAND), content=form, headers=headers)


def _traccar_client_9_json(p: Pipeline, at: datetime) -> Response:
    stamp = at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.000Z")
    body = {
        "location": {
            "timestamp": stamp,
            "coords": {
                "latitude": p.lat, "longitude": p.lon, "accuracy": 5, "speed": 1.4,
                "heading": 93, "altitude": 611,
            },
            "is_moving": True, "odometer": 120, "event": "motionchange",
            "battery": {"level": 0.87, "is_charging": False},
            "activity": {"type": "walking"}, "extras": {},
        },
        "device_id": p.osmand_id,
    }  # fmt: skip
    return p.client.post(_path(p.osmand_secret, TrackerKind.OSMAND), json=body)


def _owntracks(p: Pipeline, at: datetime) -> Response:
    body = {
        "_type": "location", "acc": 5, "alt": 611, "batt": 87, "bs": 1, "cog": 93, "conn": "m",
        "lat": p.lat, "lon": p.lon, "m": 1, "t": "u", "tid": "42",
        "topic": f"owntracks/w/{p.owntracks_id}", "tst": int(at.timestamp()), "vac": 10, "vel": 5,
        "created_at": int(at.timestamp()) + 1,
    }  # fmt: skip
    headers = {"X-Limit-U": "w", "X-Limit-D": p.owntracks_id}
    return p.client.post(
        _path(p.owntracks_secret, TrackerKind.OWNTRACKS), json=body, headers=headers
    )


APPS = [
    AppRequest(
        "traccar-client-8", _traccar_client_8,
        {"speed_mps": 1.4, "bearing_deg": 93.0, "altitude_m": 611.0, "battery_pct": 87.0,
         "tracker": "osmand"},
        None,  # accuracy 0.0: Traccar Client's "unknown" for a GPS fix
    ),
    AppRequest(
        "osmand-app", _osmand_app,
        {"bearing_deg": 93.0, "altitude_m": 611.0, "tracker": "osmand"}, 6.0,
    ),
    AppRequest(
        "traccar-client-9-form", _traccar_client_9_form,
        {"speed_mps": 1.399, "bearing_deg": 93.0, "altitude_m": 611.0, "battery_pct": 87.0,
         "charging": False, "tracker": "osmand"},
        8.0,
    ),
    AppRequest(
        "traccar-client-9-json", _traccar_client_9_json,
        {"speed_mps": 1.4, "bearing_deg": 93.0, "altitude_m": 611.0, "battery_pct": 87.0,
         "charging": False, "tracker": "traccar-json"},
        5.0,
    ),
    AppRequest(
        "owntracks", _owntracks,
        {"speed_mps": 1.389, "bearing_deg": 93.0, "altitude_m": 611.0, "battery_pct": 87.0,
         "charging": False, "tracker": "owntracks"},
        5.0,
    ),
]  # fmt: skip


@pytest.mark.parametrize("app", APPS, ids=[a.name for a in APPS])
def test_an_apps_fix_is_stored_as_the_same_checkin_as_its_json_checkin(
    pipeline: Pipeline, app: AppRequest
) -> None:
    p = pipeline
    # Each app's fix at its own minute, so that the cases never meet in the speed check.
    at = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=40 - 5 * APPS.index(app))
    owntracks = app.send is _owntracks
    equivalent = {
        "event_id": str(uuid.uuid4()),
        "worker_id": p.city.worker_a,
        "lon": p.lon,
        "lat": p.lat,
        "recorded_at": at.astimezone(BAOJI).isoformat(),  # the same instant, as Baoji writes it
        **({"accuracy_m": app.accuracy_m} if app.accuracy_m is not None else {}),
        **app.extras,
        "tracker_device": p.owntracks_id if owntracks else p.osmand_id,
    }
    before = p.produced()

    answered = app.send(p, at)
    posted = p.client.post(
        "/api/v1/checkins", json=equivalent, headers=bearer(p.tokens["worker_a"])
    )

    assert answered.status_code == 200, answered.text
    assert answered.content == (b"[]" if owntracks else b"")
    assert posted.status_code == 202, posted.text
    assert p.produced() == before + 2
    wait_until(lambda: len(_events_at(p.url, at)) == 2, 60, f"{app.name}: both check-ins stored")
    (tracker_event,) = set(_events_at(p.url, at)) - {equivalent["event_id"]}
    stored = _stored(p.url, tracker_event)
    assert stored is not None
    assert stored == _stored(p.url, equivalent["event_id"])
    assert (stored[7], stored[10], stored[11]) == (p.city.grid_a, "contains", [])
    assert _assignment(p, tracker_event) == _assignment(p, equivalent["event_id"])


def _events_at(url: str, at: datetime) -> list[str]:
    with psycopg.connect(url) as conn:
        rows = conn.execute(
            "SELECT event_id::text FROM checkins WHERE recorded_at = %s", (at,)
        ).fetchall()
    return [str(row[0]) for row in rows]


# --------------------------------------------------------------------------- refusals


def _osmand_get(**params: str | int) -> Callable[[Pipeline], Response]:
    def send(p: Pipeline) -> Response:
        recent = int((datetime.now(UTC) - timedelta(minutes=1)).timestamp())
        fix: dict[str, str | int | float] = {"id": p.osmand_id, "lat": p.lat, "lon": p.lon}
        query = fix | {"timestamp": recent} | params
        return p.client.get(_path(p.osmand_secret, TrackerKind.OSMAND), params=query)

    return send


def _traccar_json(change: Callable[[dict[str, Any]], object]) -> Callable[[Pipeline], Response]:
    def send(p: Pipeline) -> Response:
        stamp = (datetime.now(UTC) - timedelta(minutes=1)).isoformat()
        body = {
            "location": {"timestamp": stamp, "coords": {"latitude": p.lat, "longitude": p.lon}},
            "device_id": p.osmand_id,
        }
        change(body)
        return p.client.post(_path(p.osmand_secret, TrackerKind.OSMAND), json=body)

    return send


def _owntracks_post(**fields: object) -> Callable[[Pipeline], Response]:
    def send(p: Pipeline) -> Response:
        recent = int((datetime.now(UTC) - timedelta(minutes=1)).timestamp())
        body = {"_type": "location", "lat": p.lat, "lon": p.lon, "tst": recent} | fields
        body = {k: v for k, v in body.items() if v is not None}
        headers = {"X-Limit-D": p.owntracks_id}
        return p.client.post(
            _path(p.owntracks_secret, TrackerKind.OWNTRACKS), json=body, headers=headers
        )

    return send


def _raw_post(kind: TrackerKind, body: bytes, content_type: str) -> Callable[[Pipeline], Response]:
    def send(p: Pipeline) -> Response:
        secret = p.osmand_secret if kind is TrackerKind.OSMAND else p.owntracks_secret
        headers = {"Content-Type": content_type, "X-Limit-D": p.owntracks_id}
        return p.client.post(_path(secret, kind), content=body, headers=headers)

    return send


_FUTURE = int((datetime.now(UTC) + timedelta(days=1)).timestamp())
REFUSED = {
    "osmand without timestamp": (_osmand_get(timestamp=""), 422, "missing_field"),
    "osmand latitude 91": (_osmand_get(lat="91"), 422, "coordinate_out_of_range"),
    "osmand null island": (_osmand_get(lat="0.0", lon="0.0"), 422, "coordinate_out_of_range"),
    "osmand local time": (_osmand_get(timestamp="2014-06-04 09:10:11"), 422, "invalid_field"),
    "osmand tomorrow": (_osmand_get(timestamp=_FUTURE), 422, "future_timestamp"),
    "osmand 1999": (_osmand_get(timestamp="946684799"), 422, "stale_timestamp"),
    "osmand speed as a word": (_osmand_get(speed="fast"), 422, "invalid_field"),
    "osmand another id": (_osmand_get(id="W99999-1"), 403, "device_mismatch"),
    "osmand form as text": (
        _raw_post(TrackerKind.OSMAND, b"id=x&lat=1", "text/plain"), 415, "unsupported_media_type"
    ),
    "traccar json broken": (
        _raw_post(TrackerKind.OSMAND, b'{"location": ', "application/json"), 422, "invalid_json"
    ),
    "traccar json latitude as text": (
        _traccar_json(lambda b: b["location"]["coords"].update(latitude="34.3")),
        422, "invalid_field",
    ),
    "traccar json batch": (
        _traccar_json(lambda b: b.update(location=[b["location"]])), 422, "invalid_field"
    ),
    "traccar json too large": (
        _traccar_json(lambda b: b["location"].update(extras={"x": "x" * 70000})),
        413, "payload_too_large",
    ),
    "owntracks without _type": (_owntracks_post(_type=None), 422, "missing_field"),
    "owntracks encrypted": (_owntracks_post(_type="encrypted", data="c2Vj"), 422, "invalid_field"),
    "owntracks latitude 91": (_owntracks_post(lat=91.0), 422, "coordinate_out_of_range"),
    "owntracks tst as text": (_owntracks_post(tst="1497508651"), 422, "invalid_field"),
    "owntracks as text": (
        _raw_post(TrackerKind.OWNTRACKS, b"{}", "text/plain"), 415, "unsupported_media_type"
    ),
}  # fmt: skip


@pytest.mark.parametrize("case", list(REFUSED))
def test_a_malformed_request_is_refused_with_a_clear_error_and_nothing_is_produced(
    pipeline: Pipeline, case: str
) -> None:
    send, status, code = REFUSED[case]
    before = pipeline.produced()

    answered = send(pipeline)

    assert (answered.status_code, answered.json()["code"]) == (status, code), answered.text
    assert answered.json()["detail"]
    assert pipeline.produced() == before


def test_what_the_checkin_rules_refuse_goes_to_the_dead_letters_with_the_same_code(
    pipeline: Pipeline,
) -> None:
    """The check-in a refused request makes, produced straight to Kafka (as any other
    system may), is dead-lettered by the consumer with the code the endpoint answered."""
    p = pipeline
    engine = create_db_engine(p.url)
    try:
        with unit_of_work(engine) as session:
            phone = devices_store.device_by_identifier(session, p.osmand_id)
    finally:
        engine.dispose()
    recent = int((datetime.now(UTC) - timedelta(minutes=1)).timestamp())
    base = {"id": p.osmand_id, "lat": str(p.lat), "lon": str(p.lon), "timestamp": str(recent)}
    stamp = (datetime.now(UTC) - timedelta(minutes=1)).isoformat()
    json_body = {
        "location": {"timestamp": stamp, "coords": {"latitude": "34.3", "longitude": p.lon}},
        "device_id": p.osmand_id,
    }
    queries = [base | {"lat": "91"}, base | {"lat": "0", "lon": "0"}]
    queries += [base | {"timestamp": str(_FUTURE)}, base | {"timestamp": "946684799"}]
    path = _path(p.osmand_secret, TrackerKind.OSMAND)
    answered = [p.client.get(path, params=q).json()["code"] for q in queries]
    answered.append(p.client.post(path, json=json_body).json()["code"])
    documents = [osmand_checkin(q, phone) for q in queries]
    documents.append(traccar_json_checkin(json_body, phone))

    produce(
        p.bootstrap,
        p.topics.checkins,
        [(phone.worker_id.encode(), json.dumps(d).encode()) for d in documents],
    )

    def reasons() -> dict[str, str]:
        found = {}
        for record in read_topic(p.bootstrap, p.topics.deadletter):
            value, headers = record.value, dict(record.headers)  # type: ignore[attr-defined]
            found[json.loads(value)["event_id"]] = headers["error.reason"].decode()
        return found

    wait_until(lambda: {d["event_id"] for d in documents} <= set(reasons()), 60, "dead letters")
    dead = reasons()
    assert [dead[d["event_id"]] for d in documents] == answered
    assert answered == [
        "coordinate_out_of_range", "coordinate_out_of_range", "future_timestamp",
        "stale_timestamp", "invalid_field",
    ]  # fmt: skip


# --------------------------------------------------------------------------- devices


def test_unknown_other_kind_and_revoked_devices_are_refused_and_nothing_is_produced(
    pipeline: Pipeline,
) -> None:
    p = pipeline
    engine = create_db_engine(p.url)
    try:
        with unit_of_work(engine) as session:
            revoked, revoked_secret = devices_store.register_device(
                session, p.city.worker_a, TrackerKind.OSMAND, None
            )
        with unit_of_work(engine) as session:
            devices_store.revoke_device(session, revoked.identifier)
    finally:
        engine.dispose()
    recent = int((datetime.now(UTC) - timedelta(minutes=1)).timestamp())
    fix = {"lat": p.lat, "lon": p.lon, "timestamp": recent}
    guessed = "wgd_" + "A" * 43
    before = p.produced()

    unknown = p.client.get(_path(guessed, TrackerKind.OSMAND), params=fix | {"id": p.osmand_id})
    malformed = p.client.get(f"/api/v1/trackers/osmand/{p.osmand_id}", params=fix)
    other_kind = p.client.post(
        _path(p.osmand_secret, TrackerKind.OWNTRACKS),
        json={"_type": "location", "lat": p.lat, "lon": p.lon, "tst": recent},
    )
    gone = p.client.get(
        _path(revoked_secret, TrackerKind.OSMAND), params=fix | {"id": revoked.identifier}
    )

    assert (unknown.status_code, unknown.json()["code"]) == (401, "unknown_device")
    assert (malformed.status_code, malformed.json()["code"]) == (401, "unknown_device")
    assert (other_kind.status_code, other_kind.json()["code"]) == (403, "device_mismatch")
    assert (gone.status_code, gone.json()["code"]) == (403, "device_revoked")
    assert p.produced() == before


def _wangge(url: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "WANGGE_DATABASE_URL": url, "COLUMNS": "200"}
    return subprocess.run(
        [sys.executable, "-m", "wangge", *args], env=env, capture_output=True, text=True,
        check=False,
    )  # fmt: skip


def test_devices_add_prints_the_url_and_the_identifier_last_and_revoke_stops_the_device(
    pipeline: Pipeline,
) -> None:
    p = pipeline
    worker = p.city.worker_b
    # Worker B's supervisor registers it; another district's may not.
    refused = _wangge(p.url, "devices", "add", worker, "--kind", "owntracks", "--by", "sup-x")
    added = _wangge(
        p.url, "devices", "add", worker, "--kind", "owntracks", "--by", "sup-y",
        "--url", "https://wangge.example.cn/",
    )  # fmt: skip

    assert refused.returncode == 1
    assert "has no grid in the area" in refused.stderr
    assert added.returncode == 0, added.stderr
    *_, url, identifier = added.stdout.strip().splitlines()
    assert re.fullmatch(
        r"https://wangge\.example\.cn/api/v1/trackers/owntracks/wgd_[A-Za-z0-9_-]{43}", url
    )
    assert re.fullmatch(rf"{worker}-[0-9]+", identifier)
    listed = _wangge(p.url, "devices", "list", "--worker", worker)
    assert identifier in listed.stdout
    assert "sup-y" in listed.stdout

    lon, lat = _point_in(p.url, _grid_of(p.url, worker))
    tst = int(time.time()) - 60
    fix = {"_type": "location", "lat": lat, "lon": lon, "tst": tst}
    path, headers = urlsplit(url).path, {"X-Limit-D": identifier}
    before = p.produced()
    taken = p.client.post(path, json=fix, headers=headers)
    revoked = _wangge(p.url, "devices", "revoke", identifier)
    refused_after = p.client.post(path, json=fix | {"tst": tst + 30}, headers=headers)

    assert (taken.status_code, taken.json()) == (200, [])
    assert revoked.returncode == 0, revoked.stderr
    assert (refused_after.status_code, refused_after.json()["code"]) == (403, "device_revoked")
    assert p.produced() == before + 1


def _grid_of(url: str, worker: str) -> str:
    with psycopg.connect(url) as conn:
        row = conn.execute(
            "SELECT min(grid_code) FROM worker_assignments WHERE worker_id = %s", (worker,)
        ).fetchone()
    assert row is not None
    return str(row[0])


def test_a_supervisor_registers_and_revokes_its_workers_devices_over_http(
    pipeline: Pipeline,
) -> None:
    p = pipeline
    devices = f"/api/v1/workers/{p.city.worker_a}/devices"

    def as_(caller: str) -> dict[str, str]:
        return bearer(p.tokens[caller])

    registered = p.client.post(devices, json={"kind": "osmand"}, headers=as_("sup_x"))
    outside = p.client.post(devices, json={"kind": "osmand"}, headers=as_("sup_y"))
    by_worker = p.client.post(devices, json={"kind": "osmand"}, headers=as_("worker_a"))
    no_kind = p.client.post(devices, json={"kind": "gpx"}, headers=as_("admin"))

    assert registered.status_code == 201, registered.text
    assert (outside.status_code, outside.json()["code"]) == (403, "outside_area")
    assert (by_worker.status_code, by_worker.json()["code"]) == (403, "forbidden")
    assert no_kind.status_code == 422
    device = registered.json()
    assert device["registered_by"] == "sup-x"
    assert device["osmand_app_url"].startswith(f"{device['url']}?id={device['identifier']}&")
    path = urlsplit(device["url"]).path
    recent = int(time.time()) - 60
    fix = {"id": device["identifier"], "lat": p.lat, "lon": p.lon, "timestamp": recent}
    assert p.client.get(path, params=fix).status_code == 200

    own = p.client.get(devices, headers=as_("worker_a"))
    other = p.client.get(devices, headers=as_("worker_b"))
    assert device["identifier"] in [d["identifier"] for d in own.json()]
    assert "url" not in own.json()[0]
    assert (other.status_code, other.json()["code"]) == (403, "worker_mismatch")

    one = f"{devices}/{device['identifier']}"
    assert p.client.delete(one, headers=as_("sup_y")).status_code == 403
    revoked = p.client.delete(one, headers=as_("sup_x"))
    assert revoked.status_code == 200
    assert revoked.json()["revoked_at"] is not None
    again = p.client.get(path, params=fix | {"timestamp": recent + 30})
    assert (again.status_code, again.json()["code"]) == (403, "device_revoked")
