"""The gateway through broker outages, on a private Tansu: paused, then restarted empty.

Each test runs the real app on uvicorn over a fresh copy of the reference city, against
a broker of its own, so that pausing or killing it disturbs no other test. While the
broker is away every post is 503 with Retry-After and /healthz says so; once it is back
the gateway takes posts again without a restart, and it never makes a topic itself.
"""

import time
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import Any

import httpx
import psycopg
import pytest

from geodata.contract import Topics
from geodata.db.engine import libpq_url
from geodata.db.heartbeats import record_heartbeat
from geodata.events import CHECKIN_EXAMPLE
from grid_service.app import ApiConfig
from grid_service.health import HealthConfig, stage_groups
from tests.integration.fault_support import PrivateBroker
from tests.integration.live_support import serving
from tests.integration.pipeline_support import wait_until
from tests.integration.test_auth import checkin
from wangge import services
from wangge.users_cli import add_user

pytestmark = pytest.mark.integration

PARTITIONS = 6
POST_TIMEOUT_S = 20.0
"""Generous bound on one post: the gateway's own ack timeout is well under it."""

PAUSE_S = 20.0
"""How long the broker stays paused: longer than a record's delivery timeout."""

HEALTH_TIMEOUT_S = 3.0
"""Generous bound on /healthz, which answers from its cache (the old one took 20 s+)."""


class City:
    """The API over a reference city with a worker's token, talking to a private broker."""

    def __init__(self, base: str, token: str, database_url: str, group: str) -> None:
        self.base = base
        self.http = httpx.Client(base_url=base, headers={"Authorization": f"Bearer {token}"})
        self.database_url = database_url
        self.group = group

    def post_checkin(self) -> httpx.Response:
        """W00042's check-in of a minute ago, fresh event_id."""
        body = checkin(str(CHECKIN_EXAMPLE["worker_id"]))
        return self.http.post("/api/v1/checkins", json=body, timeout=POST_TIMEOUT_S)

    def health(self) -> httpx.Response:
        """/healthz, within its bound (httpx raises past it)."""
        return httpx.get(f"{self.base}/healthz", timeout=HEALTH_TIMEOUT_S)

    def beat(self) -> None:
        """Both consumer stages beat now, as running consumers would."""
        with psycopg.connect(libpq_url(self.database_url)) as conn:
            for stage, group in stage_groups(self.group).items():
                record_heartbeat(
                    conn,
                    group_id=group,
                    stage=stage,
                    member="test:1",
                    topics=[],
                    lag=0,
                    at=datetime.now(UTC),
                )


def _part(city: City, name: str) -> dict[str, Any]:
    part: dict[str, Any] = city.health().json()[name]
    return part


@pytest.fixture
def city(
    private_broker: PrivateBroker, reference_database_factory: Callable[[], str]
) -> Iterator[tuple[City, Topics]]:
    """The API on the private broker, its topics made as the consumers make them."""
    url = reference_database_factory()
    token = add_user(url, "w42", "worker", None, "W00042")
    namespace = f"o{uuid.uuid4().hex[:8]}."
    topics = Topics.under(namespace)
    services.ensure_topics(private_broker.bootstrap, PARTITIONS, topics)
    group = f"{namespace}wangge-consumers"
    config = ApiConfig(
        url,
        private_broker.bootstrap,
        topics,
        topic_partitions=PARTITIONS,
        consumer_group=group,
        health=HealthConfig(probe_interval_s=0.5, probe_timeout_s=1.0),
    )
    with serving(config) as base:
        town = City(base, token, url, group)
        try:
            yield town, topics
        finally:
            town.http.close()


def _ready(city: City) -> bool:
    city.beat()
    return city.health().status_code == 200


def _refused_with_retry_after(response: httpx.Response) -> bool:
    return (
        response.status_code == 503
        and response.json()["code"] == "broker_unavailable"
        and int(response.headers["Retry-After"]) >= 1
    )


def test_a_paused_broker_gets_503_with_retry_after_and_the_gateway_recovers_without_restart(
    city: tuple[City, Topics], private_broker: PrivateBroker
) -> None:
    town, _topics = city
    assert town.post_checkin().status_code == 202
    wait_until(lambda: _ready(town), 20, "/healthz 200 before the pause")

    private_broker.pause()
    paused = time.monotonic()
    try:
        assert _refused_with_retry_after(town.post_checkin())
        # Known away now: the next posts are refused by the breaker, not after a wait.
        assert _refused_with_retry_after(town.post_checkin())
        assert _part(town, "producer")["state"] == "away"
        wait_until(lambda: not _part(town, "broker")["ok"], 10, "/healthz sees the broker away")
        answer = town.health()
        assert answer.status_code == 503
        assert answer.json()["status"] == "degraded"
        assert answer.json()["database"]["ok"] is True
        # As long as the outage of the finding: past every timeout of the records sent.
        time.sleep(max(0.0, PAUSE_S - (time.monotonic() - paused)))
    finally:
        private_broker.resume()

    # Back: the breaker's probe closes it, and the very next post is stored.
    wait_until(lambda: _part(town, "producer")["ok"], 30, "the producer is back")
    assert town.post_checkin().status_code == 202
    wait_until(lambda: _ready(town), 20, "/healthz 200 after the pause")


def test_after_a_broker_restart_the_gateway_makes_no_topic_and_takes_posts_once_they_are_back(
    city: tuple[City, Topics], private_broker: PrivateBroker
) -> None:
    town, topics = city
    assert town.post_checkin().status_code == 202

    private_broker.kill()
    private_broker.start()  # in memory: every topic is gone
    wait_until(
        lambda: _part(town, "broker")["topics"][topics.checkins]["partitions"] is None,
        15,
        "/healthz sees the topics missing",
    )

    assert _refused_with_retry_after(town.post_checkin())
    time.sleep(2)  # the breaker's probe and /healthz's probes run meanwhile
    assert _refused_with_retry_after(town.post_checkin())
    assert not set(topics.all()) & set(private_broker.topic_partitions())  # none made by the API
    assert not _part(town, "broker")["ok"]

    # The consumers make them again, with the configured partition count.
    services.ensure_topics(private_broker.bootstrap, PARTITIONS, topics)
    wait_until(lambda: town.post_checkin().status_code == 202, 30, "a post is stored again")
    assert {private_broker.topic_partitions()[name] for name in topics.all()} == {PARTITIONS}
    wait_until(lambda: _ready(town), 20, "/healthz 200 after the restart")
