"""/healthz from cached probes and /livez, against the real PostGIS and broker.

Each test has its own database and topic namespace, and writes the consumers' heartbeats
itself, as running consumers would.
"""

import socket
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import psycopg
import pytest
from fastapi.testclient import TestClient
from kafka.admin import KafkaAdminClient

from geodata.contract import Topics
from geodata.db import migrate
from geodata.db.engine import libpq_url
from geodata.db.heartbeats import record_heartbeat
from grid_service.app import ApiConfig, create_app
from grid_service.health import HealthConfig

pytestmark = pytest.mark.integration

GROUP = "wangge-consumers"
FAST = HealthConfig(probe_interval_s=0.2, probe_timeout_s=1.0)
HEALTH_BOUND_S = 3.0
"""Generous bound on one /healthz: it reads a cache (the old one took 20 s and more)."""


def beat(
    database_url: str, stage: str, member: str, *, ago_s: float = 0.0, lag: int | None = 0
) -> None:
    """A heartbeat of `member` of `stage`, `ago_s` seconds ago."""
    group = GROUP if stage == "intake" else f"{GROUP}.compliance"
    with psycopg.connect(libpq_url(database_url)) as conn:
        record_heartbeat(
            conn,
            group_id=group,
            stage=stage,
            member=member,
            topics=["t"],
            lag=lag,
            at=datetime.now(UTC) - timedelta(seconds=ago_s),
        )


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def api(
    database_url: str, bootstrap: str, topics: Topics, health: HealthConfig = FAST
) -> TestClient:
    """The app with quick probes (enter it with `with`)."""
    config = ApiConfig(database_url, bootstrap, topics, consumer_group=GROUP, health=health)
    return TestClient(create_app(config))


def settled(client: TestClient, ready: Callable[[dict[str, Any]], bool]) -> dict[str, Any]:
    """/healthz's body once `ready` holds of it (the probes run in the background)."""
    deadline = time.monotonic() + 15
    body: dict[str, Any] = client.get("/healthz").json()
    while not ready(body):
        assert time.monotonic() < deadline, f"/healthz never settled: {body}"
        time.sleep(0.1)
        body = client.get("/healthz").json()
    return body


def probed(body: dict[str, Any]) -> bool:
    """Both probes have answered at least once since the app started."""
    return body["database"]["age_s"] is not None and body["broker"]["age_s"] is not None


@pytest.fixture
def city_url(reference_database_factory: Callable[[], str]) -> str:
    """A fresh copy of the reference city (grids loaded, schema at head)."""
    return reference_database_factory()


@pytest.fixture
def topics(topic_factory: Callable[..., Topics]) -> Topics:
    """This test's topics, made with the configured 6 partitions."""
    return topic_factory()


def test_healthz_is_200_when_every_part_is_ready_and_says_how_old_each_probe_is(
    city_url: str, kafka_bootstrap: str, topics: Topics
) -> None:
    beat(city_url, "intake", "host:1", lag=3)
    beat(city_url, "intake", "host:2", lag=4)
    beat(city_url, "compliance", "host:3", lag=None)

    with api(city_url, kafka_bootstrap, topics) as client:
        settled(client, lambda body: body["status"] == "ok")
        response = client.get("/healthz")

    body = response.json()
    assert response.status_code == 200
    assert body["database"]["ok"]
    assert body["database"]["grids"] == 1138
    assert body["database"]["revision"] == migrate.head_revision()
    assert body["broker"]["topics"][topics.checkins] == {"partitions": 6, "ok": True}
    assert set(body["broker"]["topics"]) == set(topics.all())
    assert body["producer"] == {"ok": True, "state": "idle"}
    for part in ("database", "broker"):
        assert 0 <= body[part]["age_s"] < FAST.stale_after_s
    intake = body["consumers"]["stages"]["intake"]
    assert (intake["group"], intake["alive"], intake["lag"]) == (GROUP, True, 7)
    assert sorted(m["member"] for m in intake["members"]) == ["host:1", "host:2"]
    compliance = body["consumers"]["stages"]["compliance"]
    assert (compliance["group"], compliance["alive"], compliance["lag"]) == (
        f"{GROUP}.compliance",
        True,
        None,
    )


def test_a_stage_silent_past_the_window_is_not_alive_and_healthz_is_503(
    city_url: str, kafka_bootstrap: str, topics: Topics
) -> None:
    beat(city_url, "intake", "host:1")
    beat(city_url, "compliance", "host:2", ago_s=60)

    with api(city_url, kafka_bootstrap, topics) as client:
        body = settled(client, probed)
        response = client.get("/healthz")

    assert response.status_code == 503
    body = response.json()
    assert body["status"] == "degraded"
    assert body["database"]["ok"]
    assert body["broker"]["ok"]
    assert body["producer"]["ok"]
    assert body["consumers"]["ok"] is False
    assert body["consumers"]["stages"]["intake"]["alive"] is True
    compliance = body["consumers"]["stages"]["compliance"]
    assert (compliance["alive"], compliance["members"], compliance["silent_members"]) == (
        False,
        [],
        1,
    )
    assert compliance["last_beat_age_s"] >= 59


def test_the_heartbeat_window_is_a_setting(
    city_url: str, kafka_bootstrap: str, topics: Topics
) -> None:
    beat(city_url, "intake", "host:1", ago_s=60)
    beat(city_url, "compliance", "host:2", ago_s=60)
    patient = HealthConfig(probe_interval_s=0.2, probe_timeout_s=1.0, heartbeat_window_s=120)

    with api(city_url, kafka_bootstrap, topics, patient) as client:
        body = settled(client, probed)

    assert body["consumers"]["window_s"] == 120
    assert body["consumers"]["ok"] is True


def test_no_heartbeat_at_all_leaves_both_stages_not_alive(
    city_url: str, kafka_bootstrap: str, topics: Topics
) -> None:
    with api(city_url, kafka_bootstrap, topics) as client:
        body = settled(client, probed)

    stages = body["consumers"]["stages"]
    assert [stages[s]["alive"] for s in ("intake", "compliance")] == [False, False]
    assert stages["intake"]["last_beat_age_s"] is None
    assert body["status"] == "degraded"


def test_topics_with_another_partition_count_are_not_ready(
    city_url: str, kafka_bootstrap: str, topic_factory: Callable[..., Topics]
) -> None:
    four = topic_factory(partitions=4)
    beat(city_url, "intake", "host:1")
    beat(city_url, "compliance", "host:2")

    with api(city_url, kafka_bootstrap, four) as client:
        body = settled(client, probed)

    assert body["broker"]["ok"] is False
    assert body["broker"]["partitions_expected"] == 6
    assert body["broker"]["topics"][four.checkins] == {"partitions": 4, "ok": False}
    assert body["status"] == "degraded"


def test_missing_topics_are_reported_and_never_created_by_the_probe(
    city_url: str, kafka_bootstrap: str
) -> None:
    absent = Topics.under(f"absent{time.time_ns()}.")

    with api(city_url, kafka_bootstrap, absent) as client:
        body = settled(client, probed)
        time.sleep(1)  # a few more probes

    assert body["broker"]["topics"][absent.incidents] == {"partitions": None, "ok": False}
    admin = KafkaAdminClient(bootstrap_servers=kafka_bootstrap)
    try:
        assert not set(absent.all()) & set(admin.list_topics())
    finally:
        admin.close()


def test_a_database_without_grids_is_not_ready(
    database_url: str, kafka_bootstrap: str, topics: Topics
) -> None:
    with api(database_url, kafka_bootstrap, topics) as client:
        body = settled(client, probed)

    assert body["database"]["ok"] is False
    assert (body["database"]["grids"], body["database"]["error"]) == (0, "no grids loaded")


def test_a_database_behind_the_head_revision_is_not_ready(
    database_factory: Callable[..., str], kafka_bootstrap: str, topics: Topics
) -> None:
    url = database_factory(migrated=False)
    migrate.upgrade(url, "0004")

    with api(url, kafka_bootstrap, topics) as client:
        body = settled(client, probed)

    assert body["database"]["ok"] is False
    assert body["database"]["revision"] == "0004"
    assert "wangge db upgrade" in body["database"]["error"]
    assert body["consumers"] == {
        "ok": False,
        "window_s": FAST.heartbeat_window_s,
        "error": "database not ready",
    }


@pytest.fixture
def nothing_up() -> Iterator[TestClient]:
    """The app with neither its database nor its broker reachable."""
    database = f"postgresql://postgres@127.0.0.1:{_closed_port()}/wangge"
    # A refused connection is told at once on a quiet machine; the longer timeout keeps a
    # loaded one (the suite's other half beside it) from reporting "no answer" first.
    patient = HealthConfig(probe_interval_s=0.2, probe_timeout_s=5.0)
    with api(database, f"127.0.0.1:{_closed_port()}", Topics(), patient) as client:
        yield client


def test_with_everything_away_livez_is_200_and_healthz_503_says_what_is_away(
    nothing_up: TestClient,
) -> None:
    assert nothing_up.get("/livez").json() == {"status": "alive"}
    assert nothing_up.get("/livez").status_code == 200

    body = settled(nothing_up, probed)
    response = nothing_up.get("/healthz")

    assert response.status_code == 503
    assert body["database"] == {
        "ok": False,
        "age_s": body["database"]["age_s"],
        "error": "database unreachable",
    }
    assert (body["broker"]["ok"], body["broker"]["error"]) == (False, "broker unreachable")
    assert "password" not in response.text
    assert "Traceback" not in response.text


@pytest.fixture
def silent_port() -> Iterator[int]:
    """A port that takes connections and never answers: a paused server, as seen by clients."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(64)
        yield int(sock.getsockname()[1])
    # Closing it resets the waiting connections, so the probes left behind end too.


def test_healthz_answers_at_once_while_its_probes_hang_and_says_so(silent_port: int) -> None:
    database = f"postgresql://postgres@127.0.0.1:{silent_port}/wangge"
    answers: list[httpx.Response] = []

    with api(database, f"127.0.0.1:{silent_port}", Topics()) as client:
        settled(client, probed)

        def ask() -> None:
            answers.append(client.get("/healthz"))

        asking = threading.Thread(target=ask, daemon=True)
        asking.start()
        asking.join(timeout=HEALTH_BOUND_S)
        assert not asking.is_alive(), f"/healthz did not answer within {HEALTH_BOUND_S} s"

    (response,) = answers
    body = response.json()
    assert response.status_code == 503
    assert body["database"]["ok"] is False
    assert body["database"]["error"].startswith("no answer for ")
    assert body["broker"]["ok"] is False


def test_probing_a_broker_away_leaves_no_client_thread_behind(database_url: str) -> None:
    def client_threads() -> int:
        return sum(t.name == "kafka-io-wangge-healthz" for t in threading.enumerate())

    before = client_threads()
    with api(database_url, f"127.0.0.1:{_closed_port()}", Topics()) as client:
        settled(client, probed)
        time.sleep(2)  # ten more failed probes of the broker
        # One may be probing right now; each failed one used to leave its thread running.
        assert client_threads() - before <= 1
