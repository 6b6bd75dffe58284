"""The gateway through broker outages, on a private Tansu: paused, then restarted empty.

Each test runs the real app on uvicorn over a fresh copy of the reference city, against
a broker of its own, so that pausing or killing it disturbs no other test. While the
broker is away every post is 503 with Retry-After and /healthz says so; once it is back
the gateway takes posts again without a restart, and it never makes a topic itself.
"""

import contextlib
import os
import signal
import socket
import subprocess
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import psycopg
import pytest
import uvicorn
from kafka.admin import KafkaAdminClient

from geodata.contract import Topics
from geodata.db.engine import libpq_url
from geodata.db.heartbeats import record_heartbeat
from geodata.events import CHECKIN_EXAMPLE
from grid_service.app import ApiConfig, create_app
from grid_service.health import HealthConfig, stage_groups
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


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _listening(port: int) -> bool:
    with (
        contextlib.suppress(OSError),
        socket.create_connection(("127.0.0.1", port), timeout=0.5),
    ):
        return True
    return False


class PrivateTansu:
    """A Tansu broker of this test's own, started as `wangge services start` starts one."""

    def __init__(self) -> None:
        self.port = _free_port()
        self.bootstrap = f"127.0.0.1:{self.port}"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        """Start it (in memory: it holds no topic) and wait until it listens."""
        url = f"tcp://{self.bootstrap}"
        self.process = subprocess.Popen(
            [
                str(services.tansu_binary()),
                "broker",
                *("--listener-url", url, "--advertised-listener-url", url),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            stdin=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 20
        while not _listening(self.port):
            assert self.process.poll() is None, "the private Tansu exited"
            assert time.monotonic() < deadline, "the private Tansu did not listen"
            time.sleep(0.05)

    def signal(self, signum: int) -> None:
        """SIGSTOP (answers nothing, holds every connection) or SIGCONT."""
        assert self.process is not None
        self.process.send_signal(signum)

    def kill(self) -> None:
        """Kill it, paused or not; its topics and records are gone with it."""
        if self.process is not None and self.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.process.pid, signal.SIGCONT)
            self.process.kill()
            self.process.wait(timeout=10)

    def topic_partitions(self) -> dict[str, int]:
        """Every topic on it and its partition count (a request for all: makes none)."""
        admin = KafkaAdminClient(bootstrap_servers=self.bootstrap, request_timeout_ms=5000)
        try:
            return {t["name"]: len(t["partitions"]) for t in admin.describe_topics()}
        finally:
            admin.close()


@pytest.fixture
def broker() -> Iterator[PrivateTansu]:
    """A running private broker, always killed at the end."""
    tansu = PrivateTansu()
    try:
        tansu.start()
        yield tansu
    finally:
        tansu.kill()


@contextlib.contextmanager
def serving(config: ApiConfig) -> Iterator[str]:
    """The real app on uvicorn (in a thread), its base URL while the block runs."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    server = uvicorn.Server(uvicorn.Config(create_app(config), log_level="warning"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 30
        while not server.started:
            assert thread.is_alive(), "uvicorn exited"
            assert time.monotonic() < deadline, "uvicorn did not start"
            time.sleep(0.05)
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    finally:
        server.should_exit = True
        thread.join(timeout=30)
        sock.close()


class City:
    """The API over a reference city with a worker's token, talking to a private broker."""

    def __init__(self, base: str, token: str, database_url: str, group: str) -> None:
        self.base = base
        self.http = httpx.Client(base_url=base, headers={"Authorization": f"Bearer {token}"})
        self.database_url = database_url
        self.group = group

    def post_checkin(self) -> httpx.Response:
        """W00042's check-in of a minute ago, fresh event_id."""
        recorded = datetime.now(UTC) - timedelta(minutes=1)
        body = CHECKIN_EXAMPLE | {
            "event_id": str(uuid.uuid4()),
            "recorded_at": recorded.isoformat(),
        }
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


def wait_for(predicate: Callable[[], bool], timeout_s: float, what: str) -> None:
    """Poll `predicate` until it holds, or fail saying `what` never happened."""
    deadline = time.monotonic() + timeout_s
    while not predicate():
        assert time.monotonic() < deadline, f"not within {timeout_s} s: {what}"
        time.sleep(0.2)


def _part(city: City, name: str) -> dict[str, Any]:
    part: dict[str, Any] = city.health().json()[name]
    return part


@pytest.fixture
def city(
    broker: PrivateTansu, reference_database_factory: Callable[[], str]
) -> Iterator[tuple[City, Topics]]:
    """The API on the private broker, its topics made as the consumers make them."""
    url = reference_database_factory()
    token = add_user(url, "w42", "worker", None, "W00042")
    namespace = f"o{uuid.uuid4().hex[:8]}."
    topics = Topics.under(namespace)
    services.ensure_topics(broker.bootstrap, PARTITIONS, topics)
    group = f"{namespace}wangge-consumers"
    config = ApiConfig(
        url,
        broker.bootstrap,
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
    city: tuple[City, Topics], broker: PrivateTansu
) -> None:
    town, _topics = city
    assert town.post_checkin().status_code == 202
    wait_for(lambda: _ready(town), 20, "/healthz 200 before the pause")

    broker.signal(signal.SIGSTOP)
    paused = time.monotonic()
    try:
        assert _refused_with_retry_after(town.post_checkin())
        # Known away now: the next posts are refused by the breaker, not after a wait.
        assert _refused_with_retry_after(town.post_checkin())
        assert _part(town, "producer")["state"] == "away"
        wait_for(lambda: not _part(town, "broker")["ok"], 10, "/healthz sees the broker away")
        answer = town.health()
        assert answer.status_code == 503
        assert answer.json()["status"] == "degraded"
        assert answer.json()["database"]["ok"] is True
        # As long as the outage of the finding: past every timeout of the records sent.
        time.sleep(max(0.0, PAUSE_S - (time.monotonic() - paused)))
    finally:
        broker.signal(signal.SIGCONT)

    # Back: the breaker's probe closes it, and the very next post is stored.
    wait_for(lambda: _part(town, "producer")["ok"], 30, "the producer is back")
    assert town.post_checkin().status_code == 202
    wait_for(lambda: _ready(town), 20, "/healthz 200 after the pause")


def test_after_a_broker_restart_the_gateway_makes_no_topic_and_takes_posts_once_they_are_back(
    city: tuple[City, Topics], broker: PrivateTansu
) -> None:
    town, topics = city
    assert town.post_checkin().status_code == 202

    broker.kill()
    broker.start()  # in memory: every topic is gone
    wait_for(
        lambda: _part(town, "broker")["topics"][topics.checkins]["partitions"] is None,
        15,
        "/healthz sees the topics missing",
    )

    assert _refused_with_retry_after(town.post_checkin())
    time.sleep(2)  # the breaker's probe and /healthz's probes run meanwhile
    assert _refused_with_retry_after(town.post_checkin())
    assert not set(topics.all()) & set(broker.topic_partitions())  # none made by the API
    assert not _part(town, "broker")["ok"]

    # The consumers make them again, with the configured partition count.
    services.ensure_topics(broker.bootstrap, PARTITIONS, topics)
    wait_for(lambda: town.post_checkin().status_code == 202, 30, "a post is stored again")
    assert {broker.topic_partitions()[name] for name in topics.all()} == {PARTITIONS}
    wait_for(lambda: _ready(town), 20, "/healthz 200 after the restart")
